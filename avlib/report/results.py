"""Tables and figures with provenance, written atomically under ``results/<profile>/``.

Every file gets a sidecar ``<name>.provenance.json`` saying what made it: profile, seed, git
commit (and whether the checkout had local changes), versions of python, torch, decord, av and
numpy, torch's CPU thread count (CPU results depend on it, see :mod:`avlib.determinism`) and the other settings
that decide bit-exactness (``determinism``: inter-op threads, OMP/MKL variables, ``PYTHONHASHSEED``, torch's
deterministic flags), the device,
the date and the wall time since the run began. Markdown tables carry the
same facts in a line under the table, and PNG figures in their metadata, so a copy that leaves
the folder still says where it came from.

A ``smoke`` run's numbers mean nothing: its tables say so in their first line. Nor do a dress rehearsal's
(the ``paper`` profile on the miniature data root of :mod:`avlib.data.rehearsal`, for a few steps): the runner
sets ``AVLIB_REHEARSAL=1`` for it, and its tables and figures say so the same way.

A notebook run by hand in ``./reproduce.sh lab`` (which sets ``AVLIB_INTERACTIVE=1``) writes into
``results/<profile>-interactive/`` instead (git-ignored), so it never replaces what a recorded headless
run made and the runner's view of what is up to date stays true.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import math
import numbers
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from avlib.config import PROFILES as PROFILE_DATA
from avlib.determinism import record as determinism_record
from avlib.files import atomic_path, write_text
from avlib.provenance import _git, git_commit

#: ``results/`` of this checkout, the default destination.
RESULTS_ROOT = Path(__file__).resolve().parents[2] / "results"
PROFILES = tuple(PROFILE_DATA)
#: where each notebook's rows beside the paper go: ``results/<profile>/comparisons/<notebook>.json``
COMPARISONS = "comparisons"
#: set (to 1) by ``./reproduce.sh lab``: results of notebooks run by hand go to ``<profile>-interactive/``
INTERACTIVE = "AVLIB_INTERACTIVE"
SMOKE_BANNER = "SMOKE RUN: these numbers only show that the code runs; they are not results."
REHEARSAL_BANNER = ("DRESS REHEARSAL: the paper profile on a miniature synthetic data root for a few steps; "
                    "these numbers only show that the paper's code path runs; they are not results.")
#: set to 1 by the notebook runner for a run on a rehearsal data root (avlib.data.rehearsal)
REHEARSAL_ENV = "AVLIB_REHEARSAL"
_VERSIONED = ("torch", "decord", "av", "numpy")


def interactive() -> bool:
    """Whether this process is a notebook run by hand (``./reproduce.sh lab``), not a recorded headless run."""
    return os.environ.get(INTERACTIVE, "") not in ("", "0")


def package_versions() -> dict[str, str]:
    """Versions of python and of the packages a number depends on ('absent' if not importable)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            versions[name] = "absent"
    return versions


def torch_threads() -> int | None:
    """Torch's intra-op thread count in this process (CPU sums depend on it); None when torch is not imported."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def source_dirty() -> bool | None:
    """Local changes to the code (everything outside ``results/``, which a run itself writes)."""
    status = _git("status", "--porcelain", "--", ".", ":(exclude)results")
    return None if status is None else bool(status)


def provenance_line(record: dict[str, Any]) -> str:
    """One line of a provenance record: profile, seed, commit, device, date, wall time and versions."""
    commit = record["git_commit"][:10] + (" (local changes)" if record["git_dirty"] else "")
    versions = ", ".join(f"{name} {version}" for name, version in record["versions"].items())
    if record.get("threads"):
        versions += f", {record['threads']} torch threads"
    return (f"profile `{record['profile']}`, seed {record['seed']}, commit {commit}, device {record['device']}, "
            f"{record['date']}, {record['wall_time_s']} s since the notebook began; {versions}")


def is_result(profile: str) -> bool:
    """Whether a profile's numbers are results (smoke's only show that the code runs)."""
    return bool(PROFILE_DATA[profile]["is_result"])


def rehearsal_run() -> bool:
    """Whether this process writes a dress rehearsal's results (``AVLIB_REHEARSAL=1``)."""
    return os.environ.get(REHEARSAL_ENV) == "1"


@dataclass
class ResultWriter:
    """Writes one notebook's tables, figures and media for one profile, with provenance.

    >>> out = ResultWriter(profile="synth", seed=0, device="cpu", notebook="00_data")
    >>> out.table(dataframe, "alignment")        # tables/alignment.{csv,md,provenance.json}
    >>> out.figure(fig, "frames")                # figures/frames.{png,provenance.json}
    >>> out.compare("alignment_accuracy", 61.2, low=58.0, high=64.3, n=900, against={"chance (50 %)": (8.0, 14.3)},
    ...             measure="held-out alignment accuracy, %")   # a row of tables/paper_comparison, verdict 'holds'
    """

    profile: str
    seed: int
    device: str = "cpu"
    notebook: str = ""
    root: Path | str = RESULTS_ROOT
    config: dict[str, Any] = field(default_factory=dict)  # the resolved experiment (avlib.config), stored verbatim
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    rehearsal: bool = field(default_factory=rehearsal_run)  # a dress rehearsal's: marked like smoke's

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; expected one of {PROFILES}")
        self.root = Path(self.root)

    @property
    def directory(self) -> Path:
        return self.root / (f"{self.profile}-interactive" if interactive() else self.profile)

    def provenance(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "seed": self.seed,
            "notebook": self.notebook,
            "git_commit": git_commit(),
            "git_dirty": source_dirty(),
            "versions": package_versions(),
            "threads": torch_threads(),
            "determinism": determinism_record(),
            "device": self.device,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - self.started, 1),
            "config": self.config,
            **({"rehearsal": True} if self.rehearsal else {}),
            **self.extra,
        }

    def provenance_line(self, record: dict[str, Any] | None = None) -> str:
        return provenance_line(record or self.provenance())

    def _sidecar(self, path: Path, kind: str, caption: str | None, **facts: Any) -> dict[str, Any]:
        record = {"file": path.name, "kind": kind, "caption": caption or "", **facts, **self.provenance()}
        write_text(path.with_name(path.stem + ".provenance.json"), json.dumps(record, indent=2, sort_keys=True) + "\n")
        return record

    def table(self, frame, name: str, caption: str | None = None, float_format: str = "%.4g",
              markdown=None) -> dict[str, Path]:
        """Write a pandas DataFrame as ``tables/<name>.csv`` and ``.md`` (with provenance under it).

        ``markdown``: another DataFrame for the ``.md`` to show instead (a reader's few columns, when the CSV keeps
        many more); every cell of the ``.md`` is escaped for GitHub-flavoured Markdown (:func:`markdown_table`).
        """
        directory = self.directory / "tables"
        csv_path, md_path = directory / f"{name}.csv", directory / f"{name}.md"
        with atomic_path(csv_path) as tmp:
            frame.to_csv(tmp, index=False, float_format=float_format)
        record = self._sidecar(csv_path, "table", caption)
        lines = []
        if self.rehearsal:
            lines += [f"> **{REHEARSAL_BANNER}**", ""]
        elif not is_result(self.profile):
            lines += [f"> **{SMOKE_BANNER}**", ""]
        if caption:
            lines += [caption, ""]
        lines += [markdown_table(frame if markdown is None else markdown), "", f"<sub>{self.provenance_line(record)}</sub>", ""]
        write_text(md_path, "\n".join(lines))
        return {"csv": csv_path, "md": md_path}

    def figure(self, fig, name: str, caption: str | None = None, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` with provenance in a sidecar and in the PNG.

        The sidecar also keeps the height of the figure's smallest text on the results page
        (:func:`avlib.plots.text_px_on_page`); a warning names a figure whose text is smaller than body text there.
        """
        from avlib.plots import BODY_TEXT_PX, PAGE_WIDTH_PX, text_px_on_page

        path = self.directory / "figures" / f"{name}.png"
        text_px = round(text_px_on_page(fig, dpi), 1)
        if text_px < BODY_TEXT_PX:
            warnings.warn(f"figure {name!r}: its smallest text is {text_px} px at {PAGE_WIDTH_PX} px wide, under the "
                          f"page's {BODY_TEXT_PX} px body text (avlib.plots.use_page_style)", stacklevel=2)
        record = self._sidecar(path, "figure", caption, text_px_on_page=text_px)
        title = f"{self.profile} profile" + (" (REHEARSAL: not a result)" if self.rehearsal
                                             else " (SMOKE: not a result)" if not is_result(self.profile) else "")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight",
                        metadata={"Title": title, "Description": self.provenance_line(record), "Software": "avlib"})
        return path

    def media(self, source: Path | str, name: str, caption: str | None = None) -> Path:
        """Copy a media file (audio, video) into ``media/<name>`` with a provenance sidecar."""
        path = self.directory / "media" / name
        with atomic_path(path) as tmp:
            tmp.write_bytes(Path(source).read_bytes())
        self._sidecar(path, "media", caption)
        return path

    def compare(self, key: str, ours: float | str | None, *, measure: str, low: float | None = None,
                high: float | None = None, n: int | None = None,
                against: Mapping[str, tuple[float, float]] | None = None, note: str = "",
                seeds: Sequence[int] | None = None, seed_scores: Sequence[float] | None = None) -> dict[str, Any]:
        """Record our measurement beside the paper's number or claim ``key`` (a key of :mod:`avlib.report.claims`).

        ``ours`` is a number (with its 95 % interval ``low``-``high`` over ``n`` examples) or, for a claim
        without a number, a sentence of what was measured; ``None`` says the row was not measured here
        (``note`` says why). ``against`` maps each reference the claim names (a baseline, chance) to the 95 %
        interval of the paired difference ours minus it; the verdict is :func:`~avlib.report.claims.verdict`
        of each interval in the claim's direction (its ``expected_sign``), combined over the references, and
        the row's note starts with it. Without ``against`` nothing is tested. ``note`` adds context and may not
        state a verdict itself. ``seeds`` names the training seeds behind ``ours`` (required with ``against``) and
        ``seed_scores`` each seed's score, in the same order, for the table's seed spread. Where the claim compares
        training regimes (its ``across_seeds``), the intervals in ``against`` must come from
        :func:`avlib.stats.seed_interval`, and in a result profile a row with fewer than
        :data:`~avlib.report.claims.MIN_SEEDS` seeds is 'not resolved' whatever its intervals say. The rows go to
        ``comparisons/<notebook>.json``, one per key (recording a key again replaces it), from which the report
        builds ``tables/paper_comparison``. An unknown key raises ``KeyError``.
        """
        from avlib.report.claims import MIN_SEEDS, NOT_RESOLVED, VERDICTS, combined_verdict, paper_entry, verdict

        entry = paper_entry(key)  # raises on a row the paper does not have
        if not self.notebook:
            raise ValueError("ResultWriter.compare needs the notebook's name (ResultWriter(notebook=...))")
        if note.lstrip().lower().startswith((*VERDICTS, "held")):
            raise ValueError(f"the note of {key!r} states a verdict ({note!r}); compare computes it from `against`")
        seeds = None if seeds is None else [int(seed) for seed in seeds]
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"{key!r}: the seeds {seeds} repeat a seed")
        if seed_scores is not None:
            seed_scores = [float(score) for score in seed_scores]
            if seeds is None or len(seed_scores) != len(seeds):
                raise ValueError(f"{key!r}: seed_scores needs one score per seed in `seeds`, got {len(seed_scores)} "
                                 f"for {seeds}")
        found = None
        if against:
            if entry.expected_sign == 0:
                raise ValueError(f"{key!r} has no direction to test (expected_sign 0); record it without `against`")
            if not seeds:
                raise ValueError(f"{key!r}: a verdict names the training seeds it was measured over (seeds=[...])")
            intervals = {name: (float(bounds[0]), float(bounds[1])) for name, bounds in against.items()}
            found = combined_verdict(verdict(lower, upper, entry.expected_sign) for lower, upper in intervals.values())
            too_few = entry.across_seeds and is_result(self.profile) and len(seeds) < MIN_SEEDS
            if too_few:
                found = NOT_RESOLVED
            note = _verdict_note(found, entry.expected_sign, intervals) + (
                f" (only {len(seeds)} training seed(s); a verdict between training regimes needs {MIN_SEEDS})"
                if too_few else "") + (f"; {note}" if note else "")
        number = isinstance(ours, numbers.Real) and not isinstance(ours, bool)
        row = {"key": key, "notebook": self.notebook, "profile": self.profile, "seed": self.seed,
               "ours": float(ours) if number else ours, "low": _number(low), "high": _number(high),
               "n": None if n is None else int(n), "measure": measure, "verdict": found, "note": note,
               "seeds": seeds, "seed_scores": seed_scores}
        path = self.directory / COMPARISONS / f"{self.notebook}.json"
        rows = [kept for kept in read_comparisons(path) if kept["key"] != key] + [row]
        write_text(path, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return row


def escape_cell(text: str) -> str:
    """A string as one GitHub-flavoured Markdown table cell: ``|`` escaped, line breaks as ``<br>``."""
    return str(text).replace("|", "\\|").replace("\r\n", "<br>").replace("\r", "<br>").replace("\n", "<br>")


def markdown_table(frame, floatfmt: str = ".4g") -> str:
    """A DataFrame as a GitHub-flavoured Markdown table whose every row has its header's columns: the text of
    every cell and column name goes through :func:`escape_cell`; numbers are formatted with ``floatfmt``."""
    import pandas as pd

    escaped = frame.rename(columns=lambda name: escape_cell(name) if isinstance(name, str) else name)
    for position in range(escaped.shape[1]):
        column = escaped.iloc[:, position]
        if not pd.api.types.is_numeric_dtype(column):
            escaped.isetitem(position, column.map(lambda value: escape_cell(value) if isinstance(value, str) else value))
    return escaped.to_markdown(index=False, floatfmt=floatfmt)


def _verdict_note(found: str, expected_sign: int, intervals: Mapping[str, tuple[float, float]]) -> str:
    """'<verdict>: 95 % interval of the difference to <reference> <low> to <high>, ...; the paper's side: above 0'."""
    parts = [f"to {name} " + ("not computed (too few examples)" if math.isnan(lower) or math.isnan(upper)
                              else f"{lower:+.3g} to {upper:+.3g}") for name, (lower, upper) in intervals.items()]
    side = "above" if expected_sign > 0 else "below"
    return f"{found}: 95 % interval of the difference " + ", ".join(parts) + f"; the paper's side: {side} 0"


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def read_comparisons(path: Path) -> list[dict[str, Any]]:
    """The rows a notebook recorded with :meth:`ResultWriter.compare` (none if it recorded none)."""
    return json.loads(path.read_text()) if path.exists() else []
