"""Whether a run that cannot be bit-exact (CUDA, another CPU family) agrees with a reference run.

The rule (``docs/determinism.md``, "On a GPU"): every number a notebook records beside the paper
(``results/<profile>/comparisons/*.json``, the rows of ``tables/paper_comparison``) lies inside the 95 %
interval the reference run gives for it (the seed interval where the row was trained over several seeds,
else the interval over examples), a number without an interval (a budget, a configuration fact) is equal,
and every verdict is the same. Run it on two result folders of one profile::

    python -m avlib.report.tolerance results/synth ../cuda-clone/results/synth

It prints one line per row and exits with 1 when any row disagrees.
"""

from __future__ import annotations

import argparse
import math
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avlib.report.index import recorded_rows
from avlib.report.results import COMPARISONS, escape_cell


@dataclass(frozen=True)
class RowCheck:
    """One comparison row of the reference run against the same row of the other run."""

    key: str
    reference: Any
    low: float | None
    high: float | None
    other: Any
    reference_verdict: str | None
    other_verdict: str | None
    problem: str  # "" when the row agrees

    @property
    def agrees(self) -> bool:
        return not self.problem


def comparison_rows(results: Path) -> dict[str, dict[str, Any]]:
    """Every row recorded in ``results/comparisons/*.json`` (:func:`~avlib.report.index.recorded_rows`), by key; a
    missing folder raises naming it."""
    folder = Path(results) / COMPARISONS
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no comparisons folder; is {results} a results/<profile> folder of a run?")
    return {row["key"]: row for row in recorded_rows(results)}


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_row(key: str, reference: dict[str, Any] | None, other: dict[str, Any] | None) -> RowCheck:
    """Apply the rule to one row (``None``: the run did not record it)."""
    ref, oth = reference or {}, other or {}
    ours, theirs, low, high = ref.get("ours"), oth.get("ours"), ref.get("low"), ref.get("high")
    ref_verdict, other_verdict = ref.get("verdict"), oth.get("verdict")
    if reference is None:
        problem = "not in the reference run"
    elif other is None:
        problem = "missing from the other run"
    elif ref.get("profile") != oth.get("profile"):
        problem = f"profile {oth.get('profile')!r}, the reference's is {ref.get('profile')!r}"
    elif ref_verdict != other_verdict:
        problem = f"verdict {other_verdict!r}, the reference's is {ref_verdict!r}"
    elif _finite(low) and _finite(high):
        problem = "" if _finite(theirs) and low <= theirs <= high else f"{theirs!r} outside [{low:.4g}, {high:.4g}]"
    elif ours != theirs:
        problem = f"{theirs!r}, the reference's is {ours!r} (no interval: must be equal)"
    else:
        problem = ""
    return RowCheck(key, ours, low, high, theirs, ref_verdict, other_verdict, problem)


def compare_runs(reference: Path, other: Path) -> list[RowCheck]:
    """Every comparison row of either run, checked by :func:`check_row`, in key order."""
    ref_rows, other_rows = comparison_rows(reference), comparison_rows(other)
    return [check_row(key, ref_rows.get(key), other_rows.get(key)) for key in sorted(ref_rows | other_rows)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if _finite(value) else escape_cell(str(value))


def report(checks: list[RowCheck]) -> str:
    """A markdown table of the checks and a last line that counts them."""
    lines = ["| row | reference | reference 95 % interval | other | verdicts | agrees |", "|---|---:|---|---:|---|---|"]
    for check in checks:
        interval = f"{check.low:.4g} to {check.high:.4g}" if _finite(check.low) and _finite(check.high) else ""
        verdicts = check.reference_verdict or "-"
        if check.other_verdict != check.reference_verdict:
            verdicts += f" / {check.other_verdict or '-'}"
        lines.append(f"| {check.key} | {_cell(check.reference)} | {interval} | {_cell(check.other)} | {verdicts} | "
                     f"{'yes' if check.agrees else 'no: ' + escape_cell(check.problem)} |")
    disagree = sum(not check.agrees for check in checks)
    lines.append("")
    lines.append(f"{len(checks) - disagree} of {len(checks)} rows agree" + (f"; {disagree} do not" if disagree else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.report.tolerance", description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="results/<profile> folder of the reference run (the CPU run)")
    parser.add_argument("other", type=Path, help="results/<profile> folder of the run to check (e.g. a CUDA run)")
    args = parser.parse_args(argv)
    try:
        checks = compare_runs(args.reference, args.other)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(checks))
    return 0 if all(check.agrees for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
