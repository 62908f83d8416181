"""Run records of the notebooks, and whether a notebook is up to date.

A notebook's **fingerprint** is a hash of everything its results depend on:

- its source (``notebooks/NN_*.py``);
- the ``avlib`` modules it imports, transitively (found by reading the ``import`` statements, so a
  change to ``avlib/tasks/ucf101.py`` re-runs the notebooks that import it and no other);
- its parameters (profile, seed, data root, device, and config overrides when there are any);
- its inputs: the pretrained checkpoint for a notebook that calls ``ensure_pretrained`` (notebooks
  02 onwards start from it), and, in the ``paper`` profile, the files under ``--data-root`` (names,
  sizes, modification times). The synthetic world needs no entry: it is generated from the hashed
  code, profile and seed;
- the environment: ``requirements.txt`` and the Python version.

After a successful run the runner writes ``results/<profile>/runs/<notebook>.json`` with the
fingerprint, the wall time, the outputs, the seconds of each code cell (for the progress estimate of the
next run), the commit, whether the checkout had local changes, the SHA-256 of each output (``hashes``), and
the **products**: what the notebook made outside ``results/`` (the synthetic world under ``data/``, the
pretrained checkpoint), which a fresh clone does not have. A notebook is skipped only when
its last record says it finished, the fingerprint is the same, its outputs are still there and its products
exist unchanged; a notebook that failed, or was interrupted (its record still says ``running``), always
runs again.
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from avlib import hashing
from avlib.files import write_text
from avlib.provenance import cpu_model

PACKAGE = "avlib"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CHECKOUT = PACKAGE_DIR.parent
RUNS = "runs"
#: parameters of the runner that change what a notebook computes
PARAMETERS = ("profile", "seed", "data_root", "device", "overrides")
#: parameters left out of the fingerprint when empty (so that runs recorded before they existed stay up to date)
OPTIONAL = ("overrides",)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, or ``'missing'``."""
    path = Path(path)
    return hashing.file_digest(path) if path.is_file() else "missing"


def tree_digest(root: Path) -> str:
    """A hash of every file's relative path, size and modification time under ``root`` (contents are not read:
    a real dataset is hundreds of GB), or ``'missing'``."""
    root = Path(root)
    if not root.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for folder, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(files):
            path = Path(folder, name)
            stat = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _parse(text: str, where: Path) -> ast.Module:
    try:
        return ast.parse(text, filename=str(where))
    except SyntaxError:
        # IPython magics and shell escapes in a notebook cell are not Python; drop them.
        kept = [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
        return ast.parse("\n".join(kept), filename=str(where))


def module_path(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of ``avlib.x.y`` (``avlib/x/y.py`` or ``avlib/x/y/__init__.py``), None if there is none."""
    parts = module.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.Module, current: str | None = None, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The ``avlib`` modules a parsed file imports anywhere (also inside functions), with their parent packages.

    ``current`` is the module's own name, for relative imports (``from .x import y``).
    """
    found: set[str] = set()
    is_package = current is not None and module_path(current, package_dir) is not None and \
        module_path(current, package_dir).name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if current is None:
                    continue
                anchor = current.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            found.add(base)
            # ``from avlib import io`` and ``from avlib.data import world`` import submodules
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if module_path(f"{base}.{alias.name}", package_dir) is not None)
    with_parents = set()
    for module in found:
        parts = module.split(".")
        with_parents.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {module for module in with_parents if module_path(module, package_dir) is not None}


def avlib_closure(source: Path, package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every ``avlib`` module a notebook (or any Python file) imports, directly or through other modules."""
    pending = sorted(imported_modules(_parse(Path(source).read_text(), source), package_dir=package_dir))
    closure: dict[str, Path] = {}
    while pending:
        module = pending.pop()
        if module in closure:
            continue
        path = module_path(module, package_dir)
        closure[module] = path
        pending.extend(imported_modules(_parse(path.read_text(), path), module, package_dir) - closure.keys())
    return dict(sorted(closure.items()))


def _pretrained_checkpoint(parameters: dict[str, Any]) -> Path:
    from avlib.config import resolve

    return resolve(parameters["profile"], parameters.get("overrides") or None).pretrained_checkpoint(
        parameters.get("checkpoint_root") or None)


#: inputs a notebook reads when its source names one of the keys: how to find the file
INPUTS: dict[tuple[str, ...], tuple[str, Callable[[dict[str, Any]], Path]]] = {
    ("ensure_pretrained", "avlib.tasks.cam", "avlib.tasks.ucf101", "avlib.tasks.separation", "avlib.tasks.ablations"):
        ("pretrained checkpoint", _pretrained_checkpoint),
}


def _world_manifests(parameters: dict[str, Any]) -> list[Path]:
    from avlib.config import PROFILES
    from avlib.data.world import PARTS, default_world_root

    if not PROFILES[parameters["profile"]]["synthetic"]:
        return []
    root = default_world_root(parameters["profile"], int(parameters.get("seed", 0) or 0))
    return [root / part / "manifest.json" for part in PARTS]


#: products a notebook makes outside ``results/`` when its source calls one of the keys: label, how to find
#: the files, whether their content is compared (the world is generated again identically from the code, so
#: only its presence counts; a checkpoint written by another run, e.g. by hand, makes the notebook run again)
PRODUCTS: dict[tuple[str, ...], tuple[str, Callable[[dict[str, Any]], list[Path]], bool]] = {
    ("generate_world(",): ("synthetic world", _world_manifests, False),
    ("pretrain(",): ("pretrained checkpoint", lambda parameters: [_pretrained_checkpoint(parameters)], True),
}


def _shown(path: Path, checkout: Path = CHECKOUT) -> str:
    """A product's path relative to the checkout (no machine path in a record), or its last three parts."""
    path = Path(path).resolve()
    try:
        return path.relative_to(checkout.resolve()).as_posix()
    except ValueError:
        return ".../" + "/".join(path.parts[-3:])


def products(source: Path, parameters: dict[str, Any]) -> dict[str, dict[str, str]]:
    """What a notebook makes outside ``results/``: ``{path: {"label": .., "digest": sha256 | "present" | "missing"}}``."""
    text = Path(source).read_text()
    made: dict[str, dict[str, str]] = {}
    for keys, (label, locate, compare) in PRODUCTS.items():
        if any(key in text for key in keys):
            for path in locate(parameters):
                state = (file_digest(path) if compare else "present") if path.is_file() else "missing"
                made[_shown(path)] = {"label": label, "digest": state}
    return made


def product_problems(recorded: dict[str, dict[str, str]] | None, now: dict[str, dict[str, str]]) -> list[str]:
    """Products missing now, or changed since the recorded run (a record without products checks presence only)."""
    missing: dict[str, list[str]] = {}
    for path, entry in now.items():
        if entry["digest"] == "missing":
            missing.setdefault(entry["label"], []).append(path)
    problems = [f"{label} missing ({paths[0]}" + (f" and {len(paths) - 1} more)" if len(paths) > 1 else ")")
                for label, paths in missing.items()]
    for path, entry in (recorded or {}).items():
        current = now.get(path, {}).get("digest")
        if current not in (None, "missing") and entry.get("digest") not in (None, "present", current):
            problems.append(f"{entry['label']} changed since that run, made by another run or by hand ({path})")
    return problems


def input_digests(source: Path, parameters: dict[str, Any], data_digest: Callable[[], str] | None = None) -> dict[str, str]:
    """Hashes of the files a notebook reads besides its code: the checkpoints it starts from and the data root."""
    text = Path(source).read_text()
    digests = {label: file_digest(locate(parameters)) for keys, (label, locate) in INPUTS.items()
               if any(key in text for key in keys)}
    if parameters.get("data_root"):
        digests["data root"] = data_digest() if data_digest else tree_digest(Path(parameters["data_root"]))
    return digests


def missing_inputs(source: Path, parameters: dict[str, Any]) -> dict[str, str]:
    """The inputs a notebook reads that are not there yet (the notebook then makes them itself): ``{label: path}``."""
    text = Path(source).read_text()
    return {label: _shown(locate(parameters)) for keys, (label, locate) in INPUTS.items()
            if any(key in text for key in keys) and not locate(parameters).is_file()}


def maker(label: str, notebooks: list[Path]) -> Path | None:
    """The notebook whose source makes the product ``label`` (:data:`PRODUCTS`), None if none does."""
    for source in notebooks:
        text = Path(source).read_text()
        if any(made == label and any(key in text for key in keys) for keys, (made, _, _) in PRODUCTS.items()):
            return source
    return None


def environment_digest(checkout: Path = CHECKOUT) -> str:
    requirements = checkout / "requirements.txt"
    pins = requirements.read_bytes() if requirements.exists() else b""
    return _sha256(pins + platform.python_version().encode())


def fingerprint(source: Path, parameters: dict[str, Any], *, inputs: dict[str, str] | None = None,
                package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The components of a notebook's fingerprint, each a hash (no machine path is stored)."""
    source = Path(source)
    modules = avlib_closure(source, package_dir)
    return {
        "source": file_digest(source),
        "modules": {module: file_digest(path) for module, path in modules.items()},
        "parameters": {name: str(parameters.get(name, "")) if name != "data_root"
                       else _sha256(str(parameters.get(name, "")).encode()) for name in PARAMETERS
                       if name not in OPTIONAL or parameters.get(name)},
        "inputs": dict(inputs if inputs is not None else input_digests(source, parameters)),
        "environment": environment_digest(package_dir.parent),
    }


def digest(components: dict[str, Any]) -> str:
    return _sha256(json.dumps(components, sort_keys=True).encode())


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def decide(record: dict[str, Any] | None, components: dict[str, Any], *, force: bool = False,
           outputs_exist: Callable[[list[str]], list[str]] | None = None,
           products_now: dict[str, dict[str, str]] | None = None) -> Decision:
    """Whether a notebook must run, and why, from its last run record and its fingerprint now.

    ``outputs_exist`` takes the record's outputs and returns those that are missing; ``products_now`` is
    :func:`products` now (the world, checkpoints: made outside ``results/``, absent from a fresh clone).
    """
    if force:
        return Decision(True, "forced (--force)")
    if not record:
        return Decision(True, "no previous run")
    status = record.get("status")
    if status in ("running", "interrupted"):  # "running": killed before it could say so
        return Decision(True, "the previous run was interrupted")
    if status != "ran" or not record.get("fingerprint"):
        return Decision(True, f"the previous run {status or 'left no status'}")
    if record["fingerprint"] == digest(components):
        missing = outputs_exist(record.get("outputs", [])) if outputs_exist else []
        if missing:
            return Decision(True, f"outputs missing: {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        problems = product_problems(record.get("products"), products_now or {})
        if problems:
            return Decision(True, "products outside results/: " + "; ".join(problems))
        return Decision(False, "up to date")
    old = record.get("components", {})
    reasons = []
    if old.get("source") != components["source"]:
        reasons.append("notebook source changed")
    modules = _changed(old.get("modules", {}), components["modules"])
    if modules:
        reasons.append("avlib changed: " + ", ".join(modules))
    for part in ("parameters", "inputs"):
        changed = _changed(old.get(part, {}), components[part])
        if changed:
            reasons.append(f"{part} changed: " + ", ".join(changed))
    if old.get("environment") != components["environment"]:
        reasons.append("environment changed (requirements.txt or Python)")
    return Decision(True, "; ".join(reasons) or "fingerprint changed")


def made_by(profile_dir: Path, outputs: list[str]) -> dict[str, Any]:
    """What a run record says about the run that made its outputs: the commit, whether the checkout had local
    changes, and the SHA-256 of each output (relative to ``profile_dir``), so that a check can tell that the
    committed files are that run's (tests/test_committed_results.py)."""
    from avlib.provenance import git_commit
    from avlib.report.results import source_dirty

    return {"commit": git_commit(), "dirty": source_dirty(),
            "hashes": {output: file_digest(Path(profile_dir) / output) for output in outputs}}


def record_path(results_root: Path, profile: str, name: str) -> Path:
    return Path(results_root) / profile / RUNS / f"{name}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_record(path: Path, record: dict[str, Any]) -> None:
    write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def machine() -> str:
    """The machine in words: CPU model and count, memory, GPU if one is visible (for the time budget)."""
    cpu = cpu_model()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    words = f"{usable} CPU core(s) usable ({cpu})"
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        words += f", {pages * size / 2**30:.0f} GiB memory"
    except (ValueError, OSError, AttributeError):
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        words += f", GPU {torch.cuda.get_device_name(0)}"
    return words + f", {platform.system()} {platform.release()}"
