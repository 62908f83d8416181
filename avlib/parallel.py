"""Independent jobs (a row's training seeds) in spawned worker processes, each with its own fixed thread count.

A convolution step of the small networks does not use 2 threads fully, so two training seeds side by side in
two processes at 1 thread each can finish sooner than the same two one after the other at 2 threads. Each
job's bits still depend only on its own seed and its process's thread count, never on the scheduling
(docs/determinism.md): :func:`run_jobs` starts every worker with
:func:`avlib.determinism.child_environment` in its environment, so OpenMP and MKL take the count from the
start, before torch is imported in it (raising the count at run time breaks oneMKL, see
:mod:`avlib.determinism`). Workers are spawned, not forked: the parent has already started OpenMP threads.

Memory: a job's arguments are pickled to its worker. Decoded data kept in memory (lists of per-video frames
and audio) would so be copied into every worker; :func:`shared_copy` instead writes such lists once into
``.npy`` files (:class:`MappedArrays`), which each worker maps read-only (``np.load(mmap_mode="r")``): the
pages live once in the page cache, whatever the number of workers.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import queue
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avlib.determinism import child_environment, environment, note_worker_threads, thread_count
from avlib.files import atomic_path


@dataclass(frozen=True)
class Job:
    """One independent piece of work: ``function(*args, **kwargs)`` (a module-level function, picklable
    arguments), named for errors (e.g. ``"ucf101 with_audio, training seed 1"``)."""

    name: str
    function: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        return self.function(*self.args, **self.kwargs)


class JobError(RuntimeError):
    """A job failed (or its worker process died); the message names the job and carries the worker's traceback."""


def worker_threads(processes: int, threads: int | None = None) -> int:
    """Torch threads of each of ``processes`` workers: ``threads`` (default :func:`avlib.determinism.thread_count`)
    split evenly, at least 1."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    return max(1, (thread_count() if threads is None else threads) // processes)


def run_jobs(jobs: Iterable[Job], processes: int = 1, *, threads: int | None = None, spawn: bool = False) -> list[Any]:
    """Run ``jobs`` and return their results in the jobs' order.

    ``processes`` == 1 (and not ``spawn``): one after the other in this process, as a plain loop (no worker, this
    process's thread count; an exception propagates unchanged, with a note naming the job). ``processes`` > 1, or
    ``spawn`` (one fresh worker of ``threads`` threads, e.g. to time a count this process did not start with): in
    ``min(processes, len(jobs))`` spawned workers, each started with :func:`worker_threads` threads
    (``threads`` // ``processes``, the same count whatever the number of jobs, so a job's bits do not depend
    on how many others run); the count is noted for provenance (:func:`avlib.determinism.record`). A job
    that raises, or whose worker dies, raises :class:`JobError` naming it; the other workers are stopped.
    """
    jobs = list(jobs)
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if processes == 1 and not spawn:
        results = []
        for job in jobs:
            try:
                results.append(job())
            except BaseException as error:
                error.add_note(f"in job {job.name!r}")
                raise
        return results
    per_worker = worker_threads(processes, threads)
    note_worker_threads(processes, per_worker)
    if not jobs:
        return []
    return _in_workers(jobs, min(processes, len(jobs)), per_worker)


def _worker(tasks: Any, results: Any) -> None:
    """A worker's loop: take (index, job) until None; report ("start" | "done" | "error", index, payload)."""
    pid = os.getpid()
    while True:
        item = tasks.get()
        if item is None:
            return
        index, job = item
        results.put(("start", index, pid))
        try:
            value = job()
        except BaseException as error:  # reported to the parent, which raises naming the job
            results.put(("error", index, f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
            return
        results.put(("done", index, value))


def _in_workers(jobs: list[Job], count: int, threads: int) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    for item in enumerate(jobs):
        tasks.put(item)
    for _ in range(count):
        tasks.put(None)
    workers = [context.Process(target=_worker, args=(tasks, results), name=f"avlib-job-worker-{n}")
               for n in range(count)]
    with environment(child_environment(threads)):
        for worker in workers:
            worker.start()
    running: dict[int, int] = {}  # worker pid -> index of the job it runs
    values: dict[int, Any] = {}
    try:
        while len(values) < len(jobs):
            try:
                kind, index, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [worker for worker in workers if worker.exitcode is not None and worker.pid in running]
                if dead:
                    job = jobs[running[dead[0].pid]]
                    raise JobError(f"job {job.name!r}: its worker process ended with exit code {dead[0].exitcode} "
                                   "before it returned (killed, or out of memory?)") from None
                if all(worker.exitcode is not None for worker in workers) and results.empty():
                    missing = [jobs[index].name for index in range(len(jobs)) if index not in values]
                    raise JobError(f"every worker ended, jobs {missing} never returned") from None
                continue
            if kind == "start":
                running[payload] = index
            elif kind == "error":
                raise JobError(f"job {jobs[index].name!r} failed in a worker process: {payload}")
            else:
                values[index] = payload
                running = {pid: job for pid, job in running.items() if job != index}
    finally:
        unfinished = len(values) < len(jobs)
        for worker in workers:
            if worker.exitcode is None and unfinished:
                worker.terminate()
            worker.join(timeout=30)
        if unfinished:  # jobs left in the queue: do not wait at exit to hand them to workers that are gone
            tasks.cancel_join_thread()
            results.cancel_join_thread()
        tasks.close()
        results.close()
    return [values[index] for index in range(len(jobs))]


class MappedArrays(Sequence):
    """Arrays of one dtype stored end to end in one ``.npy`` file and read through a read-only memory map.

    Pickles as its path and shapes, so a worker process maps the file instead of receiving the data; item
    ``i`` is a read-only view of array ``i`` (shape as written).
    """

    def __init__(self, path: str | os.PathLike, shapes: Sequence[tuple[int, ...]]):
        self.path = Path(path)
        self.shapes = [tuple(int(size) for size in shape) for shape in shapes]
        sizes = [int(np.prod(shape)) for shape in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self._data: np.ndarray | None = None

    @classmethod
    def write(cls, arrays: Sequence[np.ndarray], path: str | os.PathLike) -> "MappedArrays":
        """Write ``arrays`` (one dtype) into ``path`` array by array (no concatenated copy in memory)."""
        path = Path(path)
        dtypes = {np.asarray(array).dtype for array in arrays}
        if len(dtypes) > 1:
            raise ValueError(f"{path}: arrays of one dtype only, got {sorted(str(dtype) for dtype in dtypes)}")
        shapes = [np.shape(array) for array in arrays]
        mapped = cls(path, shapes)
        dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        with atomic_path(path) as temporary:
            out = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=(int(mapped.offsets[-1]),))
            for index, array in enumerate(arrays):
                out[mapped.offsets[index]:mapped.offsets[index + 1]] = np.asarray(array).reshape(-1)
            out.flush()
            del out
        return mapped

    def _buffer(self) -> np.ndarray:
        if self._data is None:
            data = np.load(self.path, mmap_mode="r")
            if data.shape != (int(self.offsets[-1]),):
                raise ValueError(f"{self.path}: holds {data.shape[0]} values, its arrays need {int(self.offsets[-1])}")
            self._data = data
        return self._data

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"array {index} of {len(self)} in {self.path}")
        return self._buffer()[self.offsets[index]:self.offsets[index + 1]].reshape(self.shapes[index])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "shapes": self.shapes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["shapes"])


def shared_copy(source: Any, folder: str | os.PathLike, attributes: Sequence[str], prefix: str = "") -> Any:
    """A shallow copy of ``source`` whose list-of-arrays ``attributes`` (e.g. a decoded source's ``frames`` and
    ``audio``) are :class:`MappedArrays` written to ``folder/<prefix><attribute>.npy``: what a worker gets to read
    the same data without a copy. ``source`` itself is left as it is."""
    shared = copy.copy(source)
    for name in attributes:
        setattr(shared, name, MappedArrays.write(getattr(source, name), Path(folder) / f"{prefix}{name}.npy"))
    return shared
