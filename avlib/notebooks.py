"""Run the numbered notebooks headless: jupytext ``.py`` -> ``.ipynb`` -> papermill.

``python -m avlib.notebooks --profile synth`` (what ``./reproduce.sh`` calls) converts each
``notebooks/NN_*.py``, executes it with its parameters (``profile``, ``seed``, ``data_root``,
``device``, ``results_root``, and ``overrides``: config keys from ``--set "key=value ..."``) and writes the executed notebook to
``results/<profile>/notebooks/NN_*.ipynb``, never over the source. The first failure stops the
run, names the notebook and the cell, and leaves every finished notebook's results in place.

Runs are incremental (:mod:`avlib.report.runs`): a notebook whose source, imported ``avlib`` code, parameters
and inputs are unchanged since its last successful run is skipped; ``--force`` runs it anyway. Each
executed notebook is also exported to HTML beside it, and every invocation ends by rebuilding
``results/<profile>/tables/paper_comparison`` and the ``results/README.md`` index (:mod:`avlib.report.index`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from avlib.config import PROFILES as PROFILE_DATA
from avlib.config import parse_assignments, resolve
from avlib.determinism import child_environment, environment
from avlib.files import atomic_path, write_text
from avlib.report.results import COMPARISONS, INTERACTIVE, PROFILES, REHEARSAL_ENV, RESULTS_ROOT

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
#: seconds a kernel may take to start: papermill's 60 s is too short on a busy 2-core machine
KERNEL_START_TIMEOUT = 300


class NotebookFailed(RuntimeError):
    """A notebook raised: which notebook, which cell, what error."""

    def __init__(self, notebook: str, cell: int | None, error: str, partial: Path | None, source: str = ""):
        where = f"cell {cell}" + (f" ({source!r})" if source else "") if cell is not None else "start-up"
        hint = f"; the partly executed notebook is {partial}" if partial else ""
        super().__init__(f"notebook {notebook} failed in {where}: {error}{hint}")
        self.notebook, self.cell, self.error, self.partial = notebook, cell, error, partial


@dataclass
class NotebookRun:
    name: str
    output: Path
    seconds: float


def discover(only: str | None = None, directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The ``NN_*.py`` notebooks in order; ``only`` keeps those whose number is listed ("01" or "00,03")."""
    notebooks = sorted(path for path in directory.glob("[0-9][0-9]_*.py"))
    if only:
        wanted = {part.strip().zfill(2) for part in only.split(",") if part.strip()}
        notebooks = [path for path in notebooks if path.name[:2] in wanted]
        missing = wanted - {path.name[:2] for path in notebooks}
        if missing:
            raise SystemExit(f"no notebook numbered {', '.join(sorted(missing))} in {directory}")
    return notebooks


def kernel_name() -> str:
    """The kernel that runs this interpreter: 'avlib' when set-up registered it, else ipykernel's own."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return "avlib" if "avlib" in specs else "python3"


def run_notebook(source: Path, *, profile: str, seed: int = 0, data_root: str = "", device: str = "auto",
                 results_root: Path = RESULTS_ROOT, timeout: int | None = None, checkpoint_root: str = "",
                 progress: Callable[[str], None] | bool | None = None, last_cells: list[float] | None = None,
                 overrides: dict[str, str] | None = None) -> NotebookRun:
    """Execute one jupytext notebook into ``results_root/<profile>/notebooks/<name>.ipynb``.

    ``checkpoint_root``, when given, is passed to the notebook (which otherwise uses the checkout's
    ``checkpoints/``); the tests use it to keep their checkpoints apart from the checkout's. ``progress``,
    when given, receives the progress lines (:mod:`avlib.report.progress`), with the time left estimated from
    ``last_cells`` (seconds per code cell of the last run), else from the executed notebook being replaced.
    ``overrides`` (dotted config keys -> literal strings, :func:`avlib.config.parse_assignments`) become the
    notebook's ``overrides`` parameter. On a rehearsal data root (:mod:`avlib.data.rehearsal`) the kernel runs
    with ``AVLIB_REHEARSAL=1``, so that its tables and figures are marked as a rehearsal's."""
    import jupytext
    import papermill

    from avlib.report.progress import Progress, cell_seconds, execute

    name = source.stem
    out_dir = Path(results_root) / profile / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name}.ipynb"
    failed = out_dir / f"{name}.failed.ipynb"
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": kernel_name(), "display_name": "avlib", "language": "python"}
    # Relative to the notebook's folder (its working directory), so that no machine's absolute
    # path is written into the executed notebook.
    parameters = dict(profile=profile, seed=seed, data_root=data_root, device=device,
                      results_root=os.path.relpath(Path(results_root).resolve(), source.parent.resolve()))
    if checkpoint_root:
        parameters["checkpoint_root"] = str(checkpoint_root)
    if overrides:
        parameters["overrides"] = dict(overrides)
    reporter = Progress(name, last_cells or cell_seconds(output), log=None if progress is True else progress) if progress else None
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=f"avlib-{name}-") as scratch:
        converted = Path(scratch) / f"{name}.ipynb"
        jupytext.write(notebook, converted)
        # a recorded run writes into results/<profile>/ even when started from ./reproduce.sh lab's terminal
        with atomic_path(output) as partial, \
                environment({**child_environment(), **rehearsal_environment(data_root), INTERACTIVE: ""}), \
                reporter or contextlib.nullcontext():
            try:
                execute(converted, partial, progress=reporter, parameters=parameters,
                        kernel_name=notebook.metadata["kernelspec"]["name"], cwd=str(source.parent), progress_bar=False,
                        execution_timeout=timeout, report_mode=False, start_timeout=KERNEL_START_TIMEOUT)
            except papermill.PapermillExecutionError as error:
                failed.write_bytes(partial.read_bytes())
                first_line = (error.source or "").strip().splitlines()[0][:80] if error.source else ""
                raise NotebookFailed(name, error.cell_index, f"{error.ename}: {error.evalue}", failed, first_line) from None
            except Exception as error:  # kernel death, timeout, bad notebook: still say which notebook
                if partial.exists() and partial.stat().st_size:
                    failed.write_bytes(partial.read_bytes())
                raise NotebookFailed(name, None, f"{type(error).__name__}: {error}", failed if failed.exists() else None) from None
    _scrub_paths(output, name)
    failed.unlink(missing_ok=True)
    return NotebookRun(name=name, output=output, seconds=time.time() - started)


def rehearsal_environment(data_root: str) -> dict[str, str]:
    """``{AVLIB_REHEARSAL: "1"}`` for a rehearsal data root (:func:`avlib.data.rehearsal.is_rehearsal_root`), else nothing."""
    from avlib.data.rehearsal import is_rehearsal_root

    return {REHEARSAL_ENV: "1"} if is_rehearsal_root(data_root) else {}


def _scrub_paths(output: Path, name: str) -> None:
    """Replace papermill's record of the temporary input and output paths by the notebook's names."""
    notebook = json.loads(output.read_text())
    record = notebook.get("metadata", {}).get("papermill", {})
    record["input_path"] = f"notebooks/{name}.py"
    record["output_path"] = f"{output.parent.parent.name}/notebooks/{name}.ipynb"
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def export_html(executed: Path) -> Path:
    """The executed notebook as ``<name>.html`` beside it, for reading in a browser (nbconvert's lab template)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    return write_text(executed.with_suffix(".html"), body)


#: the real datasets of the ``paper`` profile: folder under ``--data-root``, files that must be there, the
#: notebooks (by number) that read it, and the section of docs/datasets.md with its layout
DATASETS = (
    ("AudioSet clips", "audioset", ("train", "test"), ("01", "02"), "docs/datasets.md (audioset/, Preparing the files)"),
    ("UCF-101", "ucf101", ("ucfTrainTestlist/classInd.txt",), ("03",), "docs/datasets.md (ucf101/)"),
    ("VoxCeleb", "voxceleb", ("speakers.csv", "clips.csv"), ("04", "05"), "docs/datasets.md (voxceleb/, Preparing the files)"),
)


def missing_data(data_root: str, notebooks: list[Path]) -> list[str]:
    """What the ``paper`` profile lacks under ``data_root`` for these notebooks, one line per dataset."""
    numbers = {path.name[:2] for path in notebooks}
    problems = []
    for title, folder, needed, readers, docs in DATASETS:
        users = sorted(numbers & set(readers))
        if not users:
            continue
        where = f"<data-root>/{folder}/" if not data_root else str(Path(data_root) / folder)
        absent = [name for name in needed if not data_root or not (Path(data_root) / folder / name).exists()]
        if absent:
            problems.append(f"{title} for notebook(s) {', '.join(users)}: expected {where} with "
                            f"{', '.join(absent)}; layout and ffmpeg preparation in {docs}")
    return problems


def _outputs(profile_dir: Path, name: str, since: str) -> list[str]:
    """Files the notebook wrote in this run (by its provenance sidecars), relative to the profile's folder."""
    from avlib.report.index import sidecars

    written = []
    for entry in sidecars(profile_dir):
        if entry.get("notebook") == name and entry.get("date", "") >= since[:len(entry.get("date", ""))]:
            written += [path.relative_to(profile_dir).as_posix() for path in entry["_files"] + [entry["_sidecar"]]]
    return written


def run_all(notebooks: list[Path], *, profile: str, seed: int = 0, data_root: str = "", device: str = "auto",
            results_root: Path = RESULTS_ROOT, force: bool = False, only: str | None = None,
            html: bool = True, log=print, progress: Callable[[str], None] | bool = True,
            overrides: dict[str, str] | None = None, checkpoint_root: str = "") -> int:
    """Run the notebooks that are not up to date, record each run, then rebuild the report. Returns the exit code.

    ``progress``: where the lines saying which cell is running go (True: the terminal, False: nowhere).
    ``overrides`` (config keys -> literal strings) go to every notebook and into its fingerprint;
    ``checkpoint_root`` (default: the checkout's ``checkpoints/``) to every notebook."""
    with environment(rehearsal_environment(data_root)):  # the report's tables too are marked as a rehearsal's
        return _run_all(notebooks, profile=profile, seed=seed, data_root=data_root, device=device, results_root=results_root,
                        force=force, only=only, html=html, log=log, progress=progress,
                        overrides=dict(sorted((overrides or {}).items())), checkpoint_root=checkpoint_root)


def _run_all(notebooks, *, profile, seed, data_root, device, results_root, force, only, html, log, progress, overrides,
             checkpoint_root):
    from avlib.report import runs
    from avlib.report.progress import cell_seconds

    results_root = Path(results_root)
    profile_dir = results_root / profile
    parameters = dict(profile=profile, seed=seed, data_root=data_root, device=device, overrides=overrides,
                      checkpoint_root=checkpoint_root)
    started, clock = runs.now(), time.time()
    data_digest = functools.cache(lambda: runs.tree_digest(Path(data_root)))  # walked once per invocation
    actions: dict[str, dict] = {}
    code = 0
    try:
        for source in notebooks:
            name = source.stem
            record_path = runs.record_path(results_root, profile, name)
            record = runs.read_record(record_path)
            components = runs.fingerprint(source, parameters,
                                          inputs=runs.input_digests(source, parameters, data_digest))
            decision = runs.decide(record, components, force=force, outputs_exist=lambda outputs: [
                output for output in outputs if not (profile_dir / output).exists()],
                products_now=runs.products(source, parameters))
            if not decision.run:
                log(f"-- {source.name}: skipped, up to date (last run {record.get('started')}, "
                    f"{record.get('wall_time_s', 0):.1f} s)")
                actions[name] = {"action": "skipped", "reason": decision.reason, "wall_time_s": 0.0}
                continue
            log(f"-- {source.name} ({decision.reason}) ...", flush=True)
            if not _inputs_explained(source, parameters, actions, only, results_root, profile, log):
                actions[name] = {"action": "failed", "reason": decision.reason}
                code = 1
                break
            begun, begun_clock = runs.now(), time.time()
            runs.write_record(record_path, {"notebook": name, "status": "running", "started": begun,
                                            "reason": decision.reason, "fingerprint": None, "components": components})
            (profile_dir / COMPARISONS / f"{name}.json").unlink(missing_ok=True)
            try:
                run = run_notebook(source, profile=profile, seed=seed, data_root=data_root, device=device,
                                   results_root=results_root, progress=progress,
                                   last_cells=(record or {}).get("cell_seconds"), overrides=overrides,
                                   checkpoint_root=checkpoint_root)
            except NotebookFailed as failure:
                runs.write_record(record_path, {"notebook": name, "status": "failed", "started": begun,
                                                "reason": decision.reason, "error": str(failure.error)[:300],
                                                "fingerprint": None, "components": components,
                                                "wall_time_s": round(time.time() - begun_clock, 1)})
                actions[name] = {"action": "failed", "reason": decision.reason}
                log(f"!! {failure}", file=sys.stderr)
                log("!! stopped; results of the notebooks that finished are kept", file=sys.stderr)
                code = 1
                break
            except BaseException:
                runs.write_record(record_path, {"notebook": name, "status": "interrupted", "started": begun,
                                                "reason": decision.reason, "fingerprint": None, "components": components})
                actions[name] = {"action": "interrupted", "reason": decision.reason}
                raise
            if html:
                export_html(run.output)
            # the inputs as the notebook left them (notebooks 02+ train the checkpoint they need if it is missing)
            components["inputs"] = runs.input_digests(source, parameters, data_digest)
            outputs = sorted(_outputs(profile_dir, name, begun) + [
                path.relative_to(profile_dir).as_posix() for path in (run.output, run.output.with_suffix(".html"),
                                                                      profile_dir / COMPARISONS / f"{name}.json")
                if path.exists()])
            runs.write_record(record_path, {"notebook": name, "status": "ran", "started": begun,
                                            "reason": decision.reason, "wall_time_s": round(run.seconds, 1),
                                            "fingerprint": runs.digest(components), "components": components,
                                            "outputs": outputs, "products": runs.products(source, parameters),
                                            "cell_seconds": cell_seconds(run.output), **runs.made_by(profile_dir, outputs)})
            actions[name] = {"action": "ran", "reason": decision.reason, "wall_time_s": round(run.seconds, 1)}
            log(f"   done in {run.seconds:.1f} s -> {run.output}")
    finally:
        _finish_report(results_root, profile, seed, device, data_root, force, only, notebooks, actions, started, clock, log,
                       overrides)
    return code


def _inputs_explained(source: Path, parameters: dict, actions: dict[str, dict], only: str | None, results_root: Path,
                      profile: str, log) -> bool:
    """Say in the log why an input the notebook reads (the pretrained checkpoint) is missing before it makes it
    itself; False when the notebook that makes it ran in this invocation and still left none (a bug)."""
    from avlib.report import runs

    for label, path in runs.missing_inputs(source, parameters).items():
        made_by = runs.maker(label, discover(directory=source.parent))
        if made_by is None:
            continue
        if actions.get(made_by.stem, {}).get("action") == "ran":
            log(f"!! {made_by.stem} ran in this run but left no {label} at {path}; {source.stem} is not run", file=sys.stderr)
            return False
        last = runs.read_record(runs.record_path(results_root, profile, made_by.stem)) or {}
        took = f" (its last run took {last['wall_time_s']:.0f} s)" if last.get("wall_time_s") else ""
        why = f"--only {only} left it out" if only else "it was not selected"
        log(f"   {label} missing ({path}): {made_by.stem} was not run in this invocation ({why}), "
            f"so {source.stem} makes it first, as {made_by.stem} would{took}")
    return True


def _finish_report(results_root, profile, seed, device, data_root, force, only, notebooks, actions, started, clock, log,
                   overrides=None):
    from avlib.provenance import git_commit
    from avlib.report import index, runs

    profile_dir = Path(results_root) / profile
    if not profile_dir.is_dir():
        return
    for source in notebooks:
        actions.setdefault(source.stem, {"action": "not run (an earlier notebook stopped the run)", "reason": ""})
    counts = {"selected": len(notebooks)}
    for action in actions.values():
        counts[action["action"]] = counts.get(action["action"], 0) + 1
    invocation = {"started": started, "wall_time_s": round(time.time() - clock, 1), "machine": runs.machine(),
                  "commit": git_commit(), "counts": counts, "notebooks": actions,
                  "arguments": {"profile": profile, "seed": seed, "device": device, "data_root": bool(data_root),
                                "force": force, "only": only or "",
                                **({"overrides": " ".join(f"{key}={value}" for key, value in overrides.items())} if overrides else {})}}
    try:
        index.write_comparison(results_root, profile, seed)
    except index.UnknownComparison as error:
        log(f"!! {error}", file=sys.stderr)
        raise
    finally:
        runs.write_record(profile_dir / runs.RUNS / index.INVOCATION, invocation)
        index.append_history(results_root, profile, invocation)
        written = index.write_index(results_root)
        log(f"== {counts.get('ran', 0)} ran, {counts.get('skipped', 0)} skipped as up to date, "
            f"{counts.get('failed', 0)} failed" + (", 1 interrupted" if counts.get("interrupted") else "")
            + f" in {invocation['wall_time_s']:.1f} s; index: "
            + ", ".join(str(path) for path in written))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="synth", choices=PROFILES)
    parser.add_argument("--only", default=None, help="notebook numbers, e.g. 01 or 00,03")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-root", type=Path, default=RESULTS_ROOT)
    parser.add_argument("--force", action="store_true", help="re-run notebooks even if up to date")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar='"key=value ..."',
                        help="config overrides for every notebook, e.g. --set \"pretrain.eval_every=1 cam.eval_clips=2\" (avlib.config)")
    parser.add_argument("--checkpoint-root", default="", help="checkpoint root (default: the checkout's checkpoints/)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML export of the executed notebooks")
    args = parser.parse_args(argv)
    try:
        overrides = parse_assignments([item for text in args.overrides for item in text.split()])
        resolve(args.profile, overrides)  # an unknown key or a bad value stops here, before any notebook
    except ValueError as error:
        parser.error(f"--set: {error}")

    notebooks = discover(args.only)
    if not PROFILE_DATA[args.profile]["synthetic"]:
        problems = missing_data(args.data_root, notebooks)
        if problems:
            print("!! the paper profile reads real datasets " + (
                f"under {args.data_root}" if args.data_root else "and needs --data-root DIR") + "; missing:", file=sys.stderr)
            for problem in problems:
                print(f"   - {problem}", file=sys.stderr)
            print("!! nothing was run (the smoke and synth profiles need no data)", file=sys.stderr)
            return 2
    print(f"== {len(notebooks)} notebook(s), profile {args.profile}, seed {args.seed}, device {args.device}")
    return run_all(notebooks, profile=args.profile, seed=args.seed, data_root=args.data_root, device=args.device,
                   results_root=args.results_root, force=args.force, only=args.only, html=not args.no_html,
                   log=_log, overrides=overrides, checkpoint_root=args.checkpoint_root)


def _log(*parts, file=None, flush=False) -> None:
    print(*parts, file=file or sys.stdout, flush=flush)


if __name__ == "__main__":
    sys.exit(main())
