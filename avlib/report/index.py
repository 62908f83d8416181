"""The reproduction report: ``tables/paper_comparison`` per profile and the ``results/README.md`` index.

Both are built from what the runs left on disk, never typed: the rows each notebook recorded with
:meth:`avlib.report.results.ResultWriter.compare` (``results/<profile>/comparisons/``), the paper's numbers
and claims in :mod:`avlib.report.claims`, the provenance sidecar of every table, figure and media file, and
the run records of :mod:`avlib.report.runs` (status, wall time, history of invocations).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from avlib.files import write_text
from avlib.report.claims import CLAIMS, NUMBERS, PaperNumber, paper_entry
from avlib.report.results import (
    COMPARISONS,
    PROFILES,
    RESULTS_ROOT,
    SMOKE_BANNER,
    ResultWriter,
    escape_cell,
    is_result,
    markdown_table,
    provenance_line,
    read_comparisons,
)
from avlib.report.runs import RUNS, read_record

COMPARISON_TABLE = "paper_comparison"
REPORT = "report"  # the ``notebook`` of the files the report itself writes
INVOCATION = "invocation.json"
TIMINGS = "timings"
KEPT_INVOCATIONS = 50
INLINE_ROWS = 40  # longer tables are linked, not inlined
FOLDED_ROWS = 12  # longer inlined tables are folded (a click opens them), to keep the page short
SHOWN_MODULES = 3  # a run's reason names this many changed avlib modules, then counts the rest
#: the columns of ``tables/paper_comparison.md`` (the CSV keeps every column of :func:`comparison_frame`)
READER_COLUMNS = ("what", "paper", "ours", "ours 95 % CI", "seeds", "seed spread", "holds here", "source")

#: the source tags of :mod:`avlib.report.claims` (those of docs/paper.md, "How to read the tags"), as the page explains them
SOURCE_TAGS = {
    "PAPER-Q": "a sentence of the paper quoted word for word in a GitHub issue of the official repository "
               "(andrewowens/multisensory); counts as verified paper text",
    "CODE": "read in the official code",
    "ISSUE": "said by the maintainer or a user in a GitHub issue of the official repository",
    "2ND": "a secondary summary of the paper (for example emergentmind.com's page on arXiv 1804.03641); UNVERIFIED",
    "SUMMARY": "a claim of the project's source summary of the paper (docs/paper.md §12); the paper's tables could "
               "not be read, so UNVERIFIED against the PDF",
    "INF": "inferred by us from the official code (the derivation is in docs/paper.md); UNVERIFIED",
    "MEM": "recalled from the paper, never checked against its text; UNVERIFIED",
    "3P": "someone else's code or notes; not authoritative",
}
_TAG = re.compile(r"(?<![\w-])(" + "|".join(re.escape(tag) for tag in SOURCE_TAGS) + r")(?![\w-])")


def source_tags(source: str) -> list[str]:
    """The tags of :data:`SOURCE_TAGS` a source string names, in order, each once."""
    return list(dict.fromkeys(_TAG.findall(source)))
KINDS = ("tables", "figures", "media")


class UnknownComparison(KeyError):
    """A notebook recorded a row beside the paper that :mod:`avlib.report.claims` does not know."""


def recorded_rows(profile_dir: Path) -> list[dict[str, Any]]:
    """Every row the notebooks of one profile recorded, checked against :mod:`avlib.report.claims`."""
    rows = []
    for path in sorted((Path(profile_dir) / COMPARISONS).glob("*.json")):
        for row in read_comparisons(path):
            try:
                paper_entry(row["key"])
            except KeyError as error:
                raise UnknownComparison(f"{path.name}: notebook {row.get('notebook', path.stem)!r} recorded a row "
                                        f"beside the paper that avlib/report/claims.py does not know: {error}") from None
            rows.append(row)
    return rows


def _format(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}"


def _holds(row: dict[str, Any] | None, entry) -> str:
    if isinstance(entry, PaperNumber) and not entry.comparable:
        return "not comparable"
    if row is None:
        return "not measured"
    return row.get("verdict") or "not tested"


def _seeds(row: dict[str, Any] | None) -> str:
    """'0, 1, 2': the training seeds a row was measured over ('' where the row names none)."""
    return "" if row is None or not row.get("seeds") else ", ".join(str(seed) for seed in row["seeds"])


def _seed_spread(row: dict[str, Any] | None) -> str:
    """'min to max (sd x)' of a row's per-seed scores; 'one seed' for a single run; '' where none were recorded."""
    if row is None or not row.get("seed_scores"):
        return ""
    from avlib.stats import seed_spread

    spread = seed_spread(row["seed_scores"])
    if len(row["seed_scores"]) == 1:
        return "one seed"
    return f"{_format(spread['min'])} to {_format(spread['max'])} (sd {_format(spread['sd'])})"


def comparison_frame(profile_dir: Path, profile: str) -> pd.DataFrame:
    """One row per number and claim of :mod:`avlib.report.claims` (more where several notebooks measured it)."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in recorded_rows(profile_dir):
        by_key[row["key"]].append(row)
    lines = []
    for entry in (*NUMBERS, *CLAIMS):
        is_number = isinstance(entry, PaperNumber)
        paper = f"{entry.value:g} {entry.unit}" if is_number else entry.direction
        direction = entry.direction if is_number else ""  # a claim's "paper" column is its direction
        for row in by_key.get(entry.key) or [None]:
            ours = "" if row is None else (_format(row["ours"]) if isinstance(row["ours"], (int, float)) else
                                           (row["ours"] or ""))
            interval = "" if row is None or row["low"] is None else f"{_format(row['low'])} to {_format(row['high'])}"
            note = (row["note"] if row is not None else
                    "other data and protocol" if is_number and not entry.comparable else
                    f"no notebook recorded this row in the {profile} profile")
            lines.append({
                "row": entry.key, "what": entry.what if is_number else entry.claim,
                "paper": paper, "paper's data": entry.dataset if is_number else "",
                "source": entry.source, "status": entry.status,
                "ours": ours, "ours 95 % CI": interval, "n": "" if row is None or row["n"] is None else str(row["n"]),
                "seeds": _seeds(row), "seed spread": _seed_spread(row),
                "measured as": "" if row is None else row["measure"],
                "profile": profile if row is not None else "", "notebook": "" if row is None else row["notebook"],
                "paper's direction": direction,
                "holds here": _holds(row, entry) if (not is_number or entry.direction or not entry.comparable) else "",
                "note": note,
            })
    return pd.DataFrame(lines)


def notebook_comparison(writer: ResultWriter) -> pd.DataFrame:
    """The rows of ``paper_comparison`` that one notebook recorded so far, to show in the notebook itself."""
    frame = comparison_frame(writer.directory, writer.profile)
    return frame[frame["notebook"] == writer.notebook].reset_index(drop=True)


def write_comparison(results_root: Path, profile: str, seed: int = 0) -> dict[str, Path] | None:
    """``tables/paper_comparison.{csv,md}`` of a profile; rewritten only when a row changed (its
    provenance then says which run changed it). None if the profile has no results."""
    profile_dir = Path(results_root) / profile
    if not profile_dir.is_dir():
        return None
    frame = comparison_frame(profile_dir, profile)
    csv_path = profile_dir / "tables" / f"{COMPARISON_TABLE}.csv"
    md_path = csv_path.with_suffix(".md")
    if csv_path.exists() and csv_path.read_text() == frame.to_csv(index=False) and md_path.exists() and \
            markdown_table(reader_frame(frame)) in md_path.read_text():
        return {"csv": csv_path, "md": md_path}
    writer = ResultWriter(profile=profile, seed=seed, device="see each notebook", notebook=REPORT, root=results_root)
    return writer.table(frame, COMPARISON_TABLE, float_format="%s", markdown=reader_frame(frame), caption=(
        "Every number and claim of the paper (or of the project's source summary, docs/paper.md §12) with its "
        "source and verification status (`avlib/report/claims.py`), beside what the notebooks of this profile recorded "
        "under the same row name. *holds here*: the verdict on the paper's direction in this run, from the 95 % "
        "interval of the paired difference (`avlib.report.claims.verdict`): *holds* when it lies wholly on the "
        "paper's side of 0, *opposite* when wholly on the other side, else *not resolved*; our values are on "
        "other data at another scale, so only directions compare. The table shows the columns a reader needs; "
        "`paper_comparison.csv` has every column (the paper's data, n, how we measured, the notebook, the notes with "
        "the interval of each difference)."))


def reader_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The few columns of :func:`comparison_frame` a reader needs: the paper's value with its direction, ours with
    its interval, whether it holds, and the source tags with the verification status."""
    paper = [f"{value}; {direction}" if direction else value
             for value, direction in zip(frame["paper"], frame["paper's direction"])]
    source = [f"{', '.join(source_tags(text)) or text} ({status})" for text, status in zip(frame["source"], frame["status"])]
    return frame.assign(paper=paper, source=source)[list(READER_COLUMNS)]


def claim_lines(table: Path) -> list[str]:
    """One line per claim of the paper (every row with a direction to check) from a ``paper_comparison.csv``:
    what, the paper's value and direction, ours with its 95 % interval, the verdict and the interval that decided it."""
    frame = pd.read_csv(table, keep_default_na=False, dtype=str)
    lines = []
    for row in frame.to_dict("records"):
        direction = row["paper's direction"] or (row["paper"] if not row["paper's data"] else "")
        if not direction or row["holds here"] in ("", "not comparable"):
            continue
        paper = f"{row['paper']}, {direction}" if row["paper's direction"] else direction
        number = re.fullmatch(r"[-+.\deE]+", row["ours"]) is not None
        if not row["ours"]:
            ours = "Not measured here."
        elif number:
            ours = f"Ours {row['ours']}" + (f" (95 % CI {row['ours 95 % CI']})" if row["ours 95 % CI"] else "")
            ours += f", {row['measured as']}" if row["measured as"] else ""
            seeds = row.get("seeds", "")
            ours += (f"; seeds {seeds}" + (f", spread {row['seed spread']}" if row.get("seed spread") else "") + "."
                     if seeds else ".")
        else:
            ours = f"Ours: {row['ours']}" + (f" ({row['measured as']})." if row["measured as"] else ".")
        decided = ""
        if row["note"].startswith(f"{row['holds here']}: 95 % interval of the difference "):
            decided = " 95 % CI of the difference " + row["note"].split("95 % interval of the difference ", 1)[1].split(
                "; the paper's side")[0] + "."
        tags = ", ".join(source_tags(row["source"]))
        lines.append(f"- **{row['holds here']}**: {row['what']}. Paper ({tags}, {row['status']}): {paper}. {ours}{decided}")
    return lines


# -- the index ------------------------------------------------------------------------------------

def sidecars(profile_dir: Path) -> list[dict[str, Any]]:
    """The provenance of every table, figure and media file, with the files each one covers."""
    found = []
    for kind in KINDS:
        for sidecar in sorted((profile_dir / kind).glob("*.provenance.json")):
            record = json.loads(sidecar.read_text())
            data = sidecar.with_name(record.get("file", sidecar.name.replace(".provenance.json", "")))
            files = [data] + ([data.with_suffix(".md")] if record.get("kind") == "table" else [])
            found.append({**record, "_sidecar": sidecar, "_files": files, "_name": data.stem if kind != "media" else data.name})
    return found


def _link(path: Path, base: Path, label: str | None = None) -> str:
    return f"[{label or path.name}]({path.relative_to(base).as_posix()})"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _table_rows(path: Path) -> int:
    try:
        return len(pd.read_csv(path))
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return 0


def history_path(results_root: Path, profile: str) -> Path:
    """``results/timings/<profile>.jsonl``: outside the profile's folder, so that the time budget of a profile
    whose results are never committed (smoke) is kept with the index."""
    return Path(results_root) / TIMINGS / f"{profile}.jsonl"


def read_history(results_root: Path, profile: str) -> list[dict[str, Any]]:
    path = history_path(results_root, profile)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_history(results_root: Path, profile: str, invocation: dict[str, Any]) -> None:
    """Keep a short history of invocations: the time budget reads the last full and the last no-change run."""
    summary = {name: invocation[name] for name in ("started", "wall_time_s", "machine", "counts", "arguments", "commit")}
    lines = [json.dumps(entry, sort_keys=True) for entry in read_history(results_root, profile)[-(KEPT_INVOCATIONS - 1):]]
    write_text(history_path(results_root, profile), "\n".join(lines + [json.dumps(summary, sort_keys=True)]) + "\n")


def _time_budget(results_root: Path, profiles: list[str]) -> list[str]:
    lines = ["## Time budget", "",
             "Measured by the runs themselves (`results/timings/<profile>.jsonl`), never typed. *Every notebook ran*: the last "
             "invocation that ran all notebooks (from a fresh clone, or with `--force`); *nothing changed*: the last "
             "invocation in which every notebook was skipped as up to date.", "",
             "| profile | run | wall time | notebooks | machine | date | commit |", "|---|---|---|---|---|---|---|"]
    for profile in profiles:
        history = read_history(results_root, profile)
        full = [entry for entry in history if entry["counts"].get("ran", 0) and entry["counts"]["ran"] == entry["counts"].get("selected")
                and not entry["arguments"].get("only")]
        unchanged = [entry for entry in history if entry["counts"].get("skipped", 0)
                     and entry["counts"]["skipped"] == entry["counts"].get("selected") and not entry["arguments"].get("only")]
        for label, chosen in (("every notebook ran", full), ("nothing changed", unchanged)):
            if chosen:
                entry = chosen[-1]
                cells = (f"`{profile}`", label, _duration(entry["wall_time_s"]), str(entry["counts"]["selected"]),
                         entry["machine"], entry["started"], entry["commit"][:10])
                lines.append("| " + " | ".join(escape_cell(cell) for cell in cells) + " |")
            else:
                lines.append(f"| `{profile}` | {label} | not measured yet | | | | |")
    return lines + [""]


def _short_reason(reason: str) -> str:
    """A run's reason with its list of changed avlib modules cut to the first few and a count."""
    def shorten(match: re.Match) -> str:
        modules = match.group(1).split(", ")
        if len(modules) <= SHOWN_MODULES:
            return match.group(0)
        return f"avlib changed: {', '.join(modules[:SHOWN_MODULES])} and {len(modules) - SHOWN_MODULES} more modules"
    return re.sub(r"avlib changed: ((?:avlib[\w.]*)(?:, avlib[\w.]*)*)", shorten, reason)


def profile_section(results_root: Path, profile: str, base: Path | None = None) -> list[str]:
    """The index of one profile: its notebooks' status, the comparison table, then every file by notebook.

    Links are relative to ``base`` (the folder of the README that holds the section; default ``results_root``).
    """
    results_root = Path(results_root)
    profile_dir = results_root / profile
    base = Path(base) if base is not None else results_root
    invocation = read_record(profile_dir / RUNS / INVOCATION) or {}
    records = {path.stem: read_record(path) or {} for path in sorted((profile_dir / RUNS).glob("*.json"))
               if path.name != INVOCATION}
    executed = {path.stem.removesuffix(".failed"): path for path in sorted((profile_dir / "notebooks").glob("*.ipynb"))}
    written = sidecars(profile_dir)
    by_notebook: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in written:
        by_notebook[record.get("notebook") or "(unknown notebook)"].append(record)
    notebooks = sorted(set(records) | {name for name in by_notebook if name != REPORT} | set(executed))
    actions = invocation.get("notebooks", {})

    lines = [f"## `{profile}` profile", ""]
    if not is_result(profile):
        lines += ["> **Never committed; its numbers only show that the code runs.**", ""]
    if invocation:
        args = invocation.get("arguments", {})
        lines += [f"Last `./reproduce.sh`: {invocation['started']}, commit {invocation['commit'][:10]}, seed "
                  f"{args.get('seed')}, device `{args.get('device')}`" + (f", only {args['only']}" if args.get("only") else "")
                  + (", `--force`" if args.get("force") else "")
                  + f"; {_duration(invocation.get('wall_time_s'))} in all on {invocation.get('machine')}.", ""]
    lines += ["| notebook | status | why | wall time | device | executed notebook |", "|---|---|---|---|---|---|"]
    for name in notebooks:
        record, action = records.get(name, {}), actions.get(name, {})
        last = {"running": "interrupted"}.get(record.get("status"), record.get("status", "no record"))
        status = action.get("action") or (f"not selected by the last run (before: {last})" if actions else last)
        if status == "skipped":
            status = "skipped as up to date"
        wall = record.get("wall_time_s")
        when = (f"{_duration(wall)}" + (f" (last run {record.get('started')})" if not action.get("action", "").startswith("ran") else "")
                if wall is not None else "")
        devices = sorted({entry.get("device", "") for entry in by_notebook.get(name, [])} - {""})
        links = []
        notebook_dir = profile_dir / "notebooks"
        for suffix in (".ipynb", ".html", ".failed.ipynb"):
            if (notebook_dir / f"{name}{suffix}").exists():
                links.append(_link(notebook_dir / f"{name}{suffix}", base, suffix.lstrip(".")))
        reason = _short_reason(action.get("reason", "") if action else record.get("reason", ""))
        if record.get("error"):
            reason += f"; {record['error']}"
        cells = (name, status, reason, when, ", ".join(devices), " · ".join(links))
        lines.append("| " + " | ".join(escape_cell(cell) for cell in cells) + " |")
    lines.append("")

    comparison = profile_dir / "tables" / f"{COMPARISON_TABLE}.md"
    if comparison.exists():
        lines += ["### Ours beside the paper", "", comparison.read_text().strip(), "",
                  _link(comparison.with_suffix(".csv"), base) + " · " + _link(comparison, base), ""]

    for name in notebooks + sorted(set(by_notebook) - set(notebooks) - {REPORT}):
        entries = by_notebook.get(name, [])
        if not entries:
            continue
        started = records.get(name, {}).get("started", "")
        lines += [f"### {name}", ""]
        for entry in sorted(entries, key=lambda item: (KINDS.index(item["_sidecar"].parent.name), item["_name"])):
            earlier = (" *(written by an earlier run of this notebook and kept)*"
                       if started and entry.get("date", "") < started[:len(entry.get("date", ""))] else "")
            files = " · ".join(_link(path, base) for path in entry["_files"] if path.exists())
            missing = [path.name for path in entry["_files"] if not path.exists()]
            if missing:
                files += f" (missing: {', '.join(missing)})"
            kind = entry.get("kind", "")
            lines += [f"#### {kind.capitalize()} `{entry['_name']}`{earlier}", ""]
            if kind == "table":
                csv_path, md_path = entry["_files"]
                rows = _table_rows(csv_path)
                if md_path.exists() and rows <= INLINE_ROWS:
                    table = md_path.read_text().strip()
                    if rows > FOLDED_ROWS:
                        table = f"<details><summary>{rows} rows (click to open)</summary>\n\n{table}\n\n</details>"
                    lines += [table, "", files, ""]
                else:
                    lines += [entry.get("caption", ""), "", f"{rows} rows, not inlined: {files}", "",
                              f"<sub>{provenance_line(entry)}</sub>", ""]
            elif kind == "figure":
                lines += [f"![{entry.get('caption') or entry['_name']}]({entry['_files'][0].relative_to(base).as_posix()})", "",
                          entry.get("caption", ""), "", files, "", f"<sub>{provenance_line(entry)}</sub>", ""]
            else:
                lines += [entry.get("caption", ""), "", files, "", f"<sub>{provenance_line(entry)}</sub>", ""]
    return lines


INTRO = """Regenerated by every `./reproduce.sh` (`avlib/report/index.py`); never edited by hand. Our values come from
a synthetic audio-visual world at toy scale, so only the directions of the paper's claims compare, not its numbers."""

ABOUT = """## About this page

Each table and figure has a `.provenance.json` beside it with the profile, seed, git commit, package versions,
device, date and wall time that made it; the line under each one below repeats it. `tables/paper_comparison` puts
every number and claim of the paper beside ours (`avlib/report/claims.py` holds the paper's side, with sources,
and the rule that says whether a claim holds).

- `synth/`: the default profile, the synthetic audio-visual world (toy scale, measured honestly).
- `smoke/`: never committed; its numbers only show that the code runs (its index is `smoke/README.md`).
- `paper/`: real datasets (`docs/datasets.md`); committed only from a real run.
- `bench/`: tables the benchmarks under `bench/` write with `--out`, each naming the machine,
  its load and the commit it measured.
"""

VERDICT_LEGEND = ("*holds*: the 95 % interval of the paired difference (ours minus the baseline or chance the claim "
                  "names) lies wholly on the paper's side of 0; *opposite*: wholly on the other side; *not resolved*: it "
                  "touches 0; *not tested*: shown, not scored; *not measured*: no notebook measures it. Where a claim "
                  "compares training regimes, each row is trained with several seeds and the interval counts the seeds' "
                  "spread as well as the test examples' (fewer than 3 seeds: not resolved). Sources: see "
                  "[where the paper's side comes from](#where-the-papers-side-comes-from).")


def claims_section(profile_dir: Path, profile: str) -> list[str]:
    """"The paper's claims" at the top of a page: one line per claim of the profile's ``paper_comparison.csv``."""
    table = Path(profile_dir) / "tables" / f"{COMPARISON_TABLE}.csv"
    if not table.exists():
        return []
    banner = [] if is_result(profile) else [f"> **{SMOKE_BANNER}**", ""]
    return [f"## The paper's claims, `{profile}` profile", "", *banner, VERDICT_LEGEND, "", *claim_lines(table), ""]


def tags_section() -> list[str]:
    """What each source tag of the paper's side means."""
    lines = ["## Where the paper's side comes from", "",
             "The *source* of each row of `paper_comparison` names where the paper's number or claim was read "
             "(docs/paper.md, \"How to read the tags\"); *UNVERIFIED* marks every one not checked against the paper's "
             "PDF, whose full text could not be read.", "", "| tag | where the number or claim comes from |", "|---|---|"]
    return lines + [f"| {tag} | {escape_cell(meaning)} |" for tag, meaning in SOURCE_TAGS.items()] + [""]


def github_anchor(heading: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens, ``-1``, ``-2``
    after repeats (``seen`` counts the anchors of the page so far)."""
    anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    count = seen.get(anchor, 0)
    seen[anchor] = count + 1
    return anchor if count == 0 else f"{anchor}-{count}"


def contents(lines: list[str]) -> list[str]:
    """A table of contents of the ``##`` and ``###`` headings of ``lines``, each ``###`` entry followed by the
    links to its ``####`` headings (the tables and figures of one notebook) on one line."""
    seen: dict[str, int] = {"results": 1, "contents": 1}
    toc = ["## Contents", ""]
    children: list[str] = []

    def flush():
        if children:
            toc[-1] += ": " + " · ".join(children)
            children.clear()

    for line in "\n".join(lines).splitlines():
        match = re.match(r"^(#{2,4}) (.+)$", line)
        if not match:
            continue
        level, title = len(match.group(1)), match.group(2)
        anchor = github_anchor(title, seen)
        if level == 4:  # "Table `name` *(a remark)*" -> "Table `name`"
            children.append(f"[{re.sub(r' [*][(].*[)][*]$', '', title)}](#{anchor})")
            continue
        flush()
        toc.append(("  " if level == 3 else "") + f"- [{title}](#{anchor})")
    flush()
    return toc + [""]


#: profiles whose results are never committed: indexed in their own folder, so the committed index links
#: no file that a clone lacks
UNCOMMITTED = tuple(profile for profile in PROFILES if not is_result(profile))


def build_index(results_root: Path = RESULTS_ROOT) -> str:
    """``results/README.md``: one line per claim of the paper, the contents, what the source tags mean, the time
    budget of every profile, then the committed profiles' sections."""
    results_root = Path(results_root)
    profiles = [profile for profile in PROFILES if (results_root / profile).is_dir()]
    timed = [profile for profile in PROFILES if profile in profiles or history_path(results_root, profile).exists()]
    committed = [profile for profile in profiles if profile not in UNCOMMITTED]
    body = [ABOUT, *tags_section(), *_time_budget(results_root, timed)]
    for profile in committed:
        body += profile_section(results_root, profile)
    claims = [line for profile in committed for line in claims_section(results_root / profile, profile)]
    lines = ["# Results", "", INTRO, "", *claims, *contents(body), *body]
    return "\n".join(lines).rstrip() + "\n"


def write_index(results_root: Path = RESULTS_ROOT) -> list[Path]:
    """Write ``results/README.md`` and, for a profile that is never committed, ``results/<profile>/README.md``."""
    results_root = Path(results_root)
    written = [write_text(results_root / "README.md", build_index(results_root))]
    for profile in UNCOMMITTED:
        if (results_root / profile).is_dir():
            body = [*tags_section(), *profile_section(results_root, profile, base=results_root / profile)]
            written.append(write_text(results_root / profile / "README.md", "\n".join(
                [f"# Results of the `{profile}` profile", "", "Regenerated by every `./reproduce.sh`; see "
                 "`../README.md` for the time budget.", "", *claims_section(results_root / profile, profile),
                 *contents(body), *body]).rstrip() + "\n"))
    return written


def index_links(readme: Path) -> list[str]:
    """The relative targets of every Markdown link and image in an index (for checking them); links within the
    page (``#anchor``, the contents) are left out."""
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", Path(readme).read_text()) if not target.startswith("#")]
