"""Run the numbered notebooks headless: jupytext ``.py`` -> ``.ipynb`` -> papermill.

``python -m avlib.notebooks --profile synth`` (what ``./reproduce.sh`` calls) converts each
``notebooks/NN_*.py``, executes it with its parameters (``profile``, ``seed``, ``data_root``,
``device``, ``results_root``) and writes the executed notebook to
``results/<profile>/notebooks/NN_*.ipynb``, never over the source. The first failure stops the
run, names the notebook and the cell, and leaves every finished notebook's results in place.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from avlib.results import PROFILES, RESULTS_ROOT, atomic_path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


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
                 results_root: Path = RESULTS_ROOT, timeout: int | None = None) -> NotebookRun:
    """Execute one jupytext notebook into ``results_root/<profile>/notebooks/<name>.ipynb``."""
    import jupytext
    import papermill

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
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=f"avlib-{name}-") as scratch:
        converted = Path(scratch) / f"{name}.ipynb"
        jupytext.write(notebook, converted)
        with atomic_path(output) as partial:
            try:
                papermill.execute_notebook(
                    str(converted), str(partial), parameters=parameters, kernel_name=notebook.metadata["kernelspec"]["name"],
                    cwd=str(source.parent), progress_bar=False, execution_timeout=timeout, report_mode=False,
                )
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


def _scrub_paths(output: Path, name: str) -> None:
    """Replace papermill's record of the temporary input and output paths by the notebook's names."""
    notebook = json.loads(output.read_text())
    record = notebook.get("metadata", {}).get("papermill", {})
    record["input_path"] = f"notebooks/{name}.py"
    record["output_path"] = f"{output.parent.parent.name}/notebooks/{name}.ipynb"
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="synth", choices=PROFILES)
    parser.add_argument("--only", default=None, help="notebook numbers, e.g. 01 or 00,03")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-root", type=Path, default=RESULTS_ROOT)
    parser.add_argument("--force", action="store_true", help="re-run notebooks even if up to date")
    args = parser.parse_args(argv)

    notebooks = discover(args.only)
    print(f"== {len(notebooks)} notebook(s), profile {args.profile}, seed {args.seed}, device {args.device}")
    for source in notebooks:
        print(f"-- {source.name} ...", flush=True)
        try:
            run = run_notebook(source, profile=args.profile, seed=args.seed, data_root=args.data_root,
                               device=args.device, results_root=args.results_root)
        except NotebookFailed as failure:
            print(f"!! {failure}", file=sys.stderr)
            print("!! stopped; results of the notebooks that finished are kept", file=sys.stderr)
            return 1
        print(f"   done in {run.seconds:.1f} s -> {run.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
