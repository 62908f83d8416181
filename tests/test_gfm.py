"""Every table the report writes (``results/README.md``, each profile's ``README.md`` and every ``tables/*.md``) parses
as GitHub-flavoured Markdown with each row holding exactly its header's columns; the page's top lines and contents."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from markdown_it import MarkdownIt

from avlib.report import claims, index
from avlib.report.results import ResultWriter, escape_cell, markdown_table

_PIPE = re.compile(r"(?<!\\)\|")


def _raw_cells(line: str) -> int:
    """How many cells a table line holds by GFM's rule: split on unescaped pipes, the outer ones optional."""
    text = line.strip()
    text = text[1:] if text.startswith("|") else text
    text = text[:-1] if text.endswith("|") and not text.endswith("\\|") else text
    return len(_PIPE.split(text))


def gfm_tables(text: str) -> list[dict]:
    """The tables a GFM parser (markdown-it-py with tables) finds in ``text``: header cells, body rows (the
    parsed text of each cell) and, for each row, the cell count of its source line."""
    lines = text.splitlines()
    tables, current, row = [], None, None
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        if token.type == "table_open":
            current = {"header": [], "rows": [], "raw": [], "line": token.map[0] + 1, "lines": range(*token.map)}
            tables.append(current)
        elif token.type == "tr_open":
            row = []
            current["raw"].append(_raw_cells(lines[token.map[0]]))
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            if current["header"]:
                current["rows"].append(row)
            else:
                current["header"] = row
            row = None
    return tables


def assert_sound_tables(text: str, name: str) -> list[dict]:
    """Every line that starts with ``|`` is part of a table the parser found (a header whose cell count differs
    from its delimiter row's is raw text), and each row has exactly its header's columns in its source (the parser
    itself pads short rows and drops extra cells, so the source line is counted too)."""
    tables = gfm_tables(text)
    covered = {number for table in tables for number in table["lines"]}
    stray = [number + 1 for number, line in enumerate(text.splitlines()) if line.startswith("|") and number not in covered]
    assert not stray, f"{name}: lines {stray} look like table rows but are not part of any table"
    for table in tables:
        width = len(table["header"])
        assert table["raw"] == [width] * len(table["raw"]), (
            f"{name}: the table at line {table['line']} (header {table['header']}) has rows of {table['raw']} cells")
        assert all(len(row) == width for row in table["rows"])
    return tables


NASTY = pd.DataFrame({
    "method": ["random weights |CAM|", "two\nlines", "plain"],
    "residual ||on+off-mix|| / ||mix||": [0.1182, 0.197, 3.0],
    "n": [60, 61, 62],
})


def test_every_cell_and_header_is_escaped_and_reads_back():
    tables = assert_sound_tables(markdown_table(NASTY), "markdown_table")
    assert len(tables) == 1
    (table,) = tables
    assert table["header"] == ["method", "residual ||on+off-mix|| / ||mix||", "n"]
    assert [row[0] for row in table["rows"]] == ["random weights |CAM|", "two<br>lines", "plain"]
    assert [row[1:] for row in table["rows"]] == [["0.1182", "60"], ["0.197", "61"], ["3", "62"]]
    assert escape_cell("a|b\r\nc\nd") == "a\\|b<br>c<br>d"


def test_the_check_catches_an_unescaped_table():
    with pytest.raises(AssertionError, match="not part of any table"):  # the header's pipes: no table at all
        assert_sound_tables(NASTY.to_markdown(index=False), "unescaped")
    with pytest.raises(AssertionError, match="rows of"):  # a cell's pipe: its row has one cell too many
        assert_sound_tables(NASTY[["method", "n"]].iloc[[0, 2]].to_markdown(index=False), "unescaped")


def _results(root: Path, profile: str) -> None:
    """Two notebooks' tables (cells with pipes and line breaks), a figure, and rows beside the paper."""
    for notebook, key, difference in (("02_cam", "cam_non_speech", (0.5, 1.0)), ("04_separation", "same_gender", (-1.0, -0.5))):
        writer = ResultWriter(profile=profile, seed=0, device="cpu", notebook=notebook, root=root)
        writer.table(NASTY, f"{notebook}_scores", caption="pipes | in the caption too")
        writer.table(pd.DataFrame({"x": range(20), "y|z": [f"{i}|{i}" for i in range(20)]}), f"{notebook}_long")
        fig, axis = plt.subplots()
        axis.plot([0, 1])
        writer.figure(fig, f"{notebook}_figure", caption="a figure")
        plt.close(fig)
        writer.compare(key, 1.5, low=0.5, high=2.5, n=60, against={"random weights |CAM|": difference},
                       measure="pointing accuracy | %", note="a note\nover two lines", seeds=[0, 1, 2])
    writer.compare("alignment_accuracy", 86.25, low=81.3, high=90.0, n=160, against={"chance (50 %)": (31.3, 40.0)},
                   measure="held-out alignment accuracy %", seeds=[0, 1, 2])


@pytest.mark.parametrize("profile", ["synth", "smoke"])
def test_every_table_the_report_writes_parses_with_its_columns(tmp_path, profile):
    _results(tmp_path, profile)
    paths = index.write_comparison(tmp_path, profile)
    readmes = index.write_index(tmp_path)
    pages = readmes + sorted((tmp_path / profile / "tables").glob("*.md"))
    assert len(pages) >= 6 and paths["md"] in pages
    for page in pages:
        assert_sound_tables(page.read_text(), page.name)
    page = (tmp_path / profile / "README.md") if profile == "smoke" else tmp_path / "README.md"
    tables = gfm_tables(page.read_text())
    headers = [table["header"] for table in tables]
    assert ["method", "residual ||on+off-mix|| / ||mix||", "n"] in headers
    assert ["tag", "where the number or claim comes from"] in headers
    comparison = next(table for table in tables if table["header"] == list(index.READER_COLUMNS))
    by_what = {row[0]: row for row in comparison["rows"]}
    assert by_what["CAM on non-speech videos"][2:7] == ["1.5", "0.5 to 2.5", "0, 1, 2", "", "holds"]
    assert len(pd.read_csv(paths["csv"]).columns) > len(index.READER_COLUMNS)  # the CSV keeps every column


def test_page_opens_with_one_line_per_claim_then_contents_whose_links_resolve(tmp_path):
    _results(tmp_path, "synth")
    index.write_comparison(tmp_path, "synth")
    text = index.build_index(tmp_path)
    claims_at = text.index("## The paper's claims, `synth` profile")
    contents_at = text.index("## Contents")
    assert claims_at < contents_at < text.index("## Time budget") < text.index("### Ours beside the paper")
    top = [line for line in text[claims_at:contents_at].splitlines() if line.startswith("- **")]
    directed = [entry for entry in (*claims.NUMBERS, *claims.CLAIMS)
                if entry.direction and getattr(entry, "comparable", True)]
    assert len(top) == len(directed)
    line = next(line for line in top if "alignment (shift) task accuracy" in line)
    assert line.startswith("- **holds**:") and "59.9 %" in line and "Ours 86.25 (95 % CI 81.3 to 90)" in line
    assert "difference to chance (50 %) +31.3 to +40" in line and "(PAPER-Q, verified)" in line
    assert "; seeds 0, 1, 2." in line
    assert "- **not measured**: CAM on speech videos." in text
    seen: dict[str, int] = {}
    anchors = {index.github_anchor(heading, seen) for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}
    targets = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert {"table-02_cam_scores", "figure-04_separation_figure", "where-the-papers-side-comes-from"} <= targets
    assert targets <= anchors, targets - anchors
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert index.index_links(readme) and not any(link.startswith("#") for link in index.index_links(readme))


def test_github_anchor_follows_githubs_rule():
    seen: dict[str, int] = {}
    assert index.github_anchor("The paper's claims, `synth` profile", seen) == "the-papers-claims-synth-profile"
    assert index.github_anchor("Media `cam_overlay.mp4`", seen) == "media-cam_overlaymp4"
    assert [index.github_anchor("Same", seen) for _ in range(3)] == ["same", "same-1", "same-2"]


def test_every_source_of_the_paper_side_names_an_explained_tag():
    for entry in (*claims.NUMBERS, *claims.CLAIMS):
        assert index.source_tags(entry.source), f"{entry.key}: no known tag in {entry.source!r}"
    assert index.source_tags("MEM / 3P (paper section 3)") == ["MEM", "3P"]
    assert index.source_tags("PAPER-Q issue #35; SUMMARY; PAPER-Q") == ["PAPER-Q", "SUMMARY"]
    section = "\n".join(index.tags_section())
    assert all(f"| {tag} |" in section for tag in index.SOURCE_TAGS)


def test_comparison_markdown_is_rewritten_when_only_its_columns_change(tmp_path):
    _results(tmp_path, "synth")
    md_path = index.write_comparison(tmp_path, "synth")["md"]
    before = md_path.read_text()
    md_path.write_text(before.replace("| holds here ", "| verdict    "))  # a table of an older layout
    index.write_comparison(tmp_path, "synth")
    assert "| holds here " in md_path.read_text()


def test_long_reasons_name_a_few_modules_and_count_the_rest():
    reason = "notebook source changed; avlib changed: avlib, avlib.a, avlib.b.c, avlib.d, avlib.e; environment changed"
    assert index._short_reason(reason) == ("notebook source changed; avlib changed: avlib, avlib.a, avlib.b.c and 2 more "
                                           "modules; environment changed")
    assert index._short_reason("avlib changed: avlib.tasks.ucf101") == "avlib changed: avlib.tasks.ucf101"
