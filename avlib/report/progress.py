"""What a headless notebook run shows while it runs: the code cell (n/N), the step of the progress bar the
kernel displays (training steps, world generation) and the time left, estimated from the notebook's last run.

papermill executes a notebook through a kernel whose output goes into the notebook, so without this a long
run prints nothing. :func:`execute` runs papermill with an engine whose client reports each cell it starts
and each tqdm update (a widget in the kernel: its text ``"120/600 [01:10<04:40, 1.7it/s]"`` arrives as a
comm message) to a :class:`Progress`, which prints one line per cell and a line every ``interval`` seconds
during a long cell (on a terminal it redraws one line instead). The kernel's log level is raised to ERROR:
its only message at WARNING is that it talks to papermill over TCP on localhost without encryption.
"""

from __future__ import annotations

import html
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

#: a tqdm bar's counter and its bracket: "120/600 [01:10<04:40, 1.7it/s]"
_TQDM = re.compile(r"(\d+)/(\d+) \[[^\]]*\]")
#: a tqdm bar's description before its percentage: "stage1: 40%"
_LABEL = re.compile(r"([^\s:|][^:|]*):\s*\d+%")
#: arguments of the kernel process: no WARNING-level log (the unencrypted-TCP notice on every start)
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
#: seconds between two progress lines while one cell runs (on a terminal the line is redrawn every 5 s)
INTERVAL = 30.0


def duration(seconds: float) -> str:
    """``'42 s'``, ``'3 min 05 s'``, ``'1 h 02 min'``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def cell_seconds(executed: Path) -> list[float] | None:
    """Seconds of each code cell of an executed notebook (papermill's ``duration``), None if it has none."""
    import json

    try:
        cells = json.loads(Path(executed).read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None
    seconds = [cell.get("metadata", {}).get("papermill", {}).get("duration") for cell in cells if cell["cell_type"] == "code"]
    return [float(value or 0.0) for value in seconds] if seconds and any(value is not None for value in seconds) else None


class Progress:
    """Reports a running notebook: ``log(line)`` per code cell started, per tqdm update on a terminal, and
    every ``interval`` seconds otherwise.

    ``last`` is the seconds of each code cell in the notebook's last run (:func:`cell_seconds`), or None
    when there was none (then no estimate is shown). Use as a context manager around the execution.
    """

    def __init__(self, name: str, last: list[float] | None = None, *, log: Callable[[str], None] | None = None,
                 interval: float | None = None, terminal: bool | None = None):
        self.name, self.interval, self.given = name, INTERVAL if interval is None else interval, last
        self.total = 0
        self.last: list[float] | None = None
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.log = log or self._print
        self.cell = 0
        self.source = ""
        self.step = self.label = ""
        self.started = self.cell_started = time.monotonic()
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._shown = 0.0

    def _print(self, line: str) -> None:
        if self.terminal:
            sys.stdout.write("\r\033[K" + line)
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def begin(self, code_cells: int) -> None:
        """The notebook as executed has ``code_cells`` code cells; the last run's times count only if it had as many."""
        self.total = code_cells
        self.last = self.given if self.given is not None and len(self.given) == code_cells else None
        self.started = time.monotonic()

    def left(self, now: float | None = None) -> float | None:
        """Seconds left by the last run's cell times: the rest of the current cell (at least 0) and the cells after it."""
        if self.last is None or not self.cell:
            return None
        now = time.monotonic() if now is None else now
        current = max(0.0, self.last[self.cell - 1] - (now - self.cell_started))
        return current + sum(self.last[self.cell:])

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        parts = [f"   {self.name}: cell {self.cell}/{self.total}", f"{duration(now - self.started)} so far"]
        left = self.left(now)
        if left is not None:
            parts.append(f"about {duration(left)} left (by its last run, {duration(sum(self.last))})")
        if self.step:
            parts.append(f"progress {self.step}")
        if self.source:
            parts.append(self.source)
        return " · ".join(parts)

    def show(self) -> None:
        with self._lock:
            text = self.line()
            self.lines.append(text)
            self._shown = time.monotonic()
            self.log(text)

    def cell_start(self, source: str) -> None:
        """A code cell starts: its first line of code is shown (comments and blank lines skipped)."""
        self.cell += 1
        self.cell_started = time.monotonic()
        self.step = self.label = ""
        code = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
        self.source = (code[0][:60] + ("..." if len(code[0]) > 60 else "")) if code else ""
        self.show()

    def text(self, value: str) -> None:
        """Text the kernel displayed or printed: a tqdm counter in it becomes the step shown, after the bar's
        description (a widget sends them apart: "stage1: 40%", then "240/600 [..]", as HTML with figure spaces)."""
        value = " ".join(html.unescape(value).replace("\u2007", " ").split())
        found = list(_TQDM.finditer(value))
        if not found:
            label = _LABEL.match(value)
            if label:
                self.label = label.group(1)
            return
        before = _LABEL.search(value[:found[-1].start()].rsplit("\r", 1)[-1])
        label = before.group(1) if before else self.label
        self.step = (f"{label} " if label else "") + found[-1].group(0)
        if self.terminal and time.monotonic() - self._shown > 1.0:
            self.show()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.interval, 5.0) if self.terminal else self.interval):
            if self.cell and time.monotonic() - self._shown >= (5.0 if self.terminal else self.interval):
                self.show()

    def __enter__(self) -> "Progress":
        self._thread = threading.Thread(target=self._beat, name=f"progress-{self.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.terminal:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()


def _engine():
    """papermill's nbclient engine with a client that tells a :class:`Progress` what the kernel is doing."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine
    from papermill.utils import merge_kwargs, remove_args

    class Client(PapermillNotebookClient):
        progress: Progress | None = None

        def handle_comm_msg(self, outs, msg, cell_index):
            super().handle_comm_msg(outs, msg, cell_index)
            value = msg["content"].get("data", {}).get("state", {}).get("value")
            if self.progress is not None and isinstance(value, str):
                self.progress.text(value)

        def output(self, outs, msg, display_id, cell_index):
            if self.progress is not None and msg["msg_type"] == "stream":
                self.progress.text(msg["content"].get("text", ""))
            return super().output(outs, msg, display_id, cell_index)

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                     start_timeout=60, execution_timeout=None, progress: Progress | None = None, **kwargs):
            if progress is not None:
                progress.begin(sum(cell.cell_type == "code" for cell in nb_man.nb.cells))
                cell_start = nb_man.cell_start

                def started(cell, cell_index=None, **more):
                    cell_start(cell, cell_index, **more)
                    if cell.cell_type == "code":
                        progress.cell_start(cell.source)

                nb_man.cell_start = started
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout, kernel_name=kernel_name,
                                 log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            client = Client(nb_man, **final)
            client.progress = progress
            return client.execute()

    return Engine


ENGINE = "avlib-progress"


def execute(converted: Path, output: Path, *, progress: Progress | None, **papermill_arguments: Any) -> None:
    """``papermill.execute_notebook`` with the progress engine and the quiet kernel."""
    import papermill
    from papermill.engines import papermill_engines

    if ENGINE not in papermill_engines._engines:
        papermill_engines.register(ENGINE, _engine())
    papermill.execute_notebook(str(converted), str(output), engine_name=ENGINE, progress=progress,
                               extra_arguments=list(KERNEL_ARGUMENTS), **papermill_arguments)
