"""Citations of the paper digest resolve, and the repository names no path outside itself (docs/paper.md §0)."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGEST = ROOT / "docs/paper.md"
#: where code, notebooks and prose cite the digest
CITING = ("avlib", "notebooks", "tests", "bench", "docs", "README.md")

NUMBER = r"\d+(?:\.\d+)?"
#: "docs/paper.md §7.6, §7.8, §12", "docs/paper.md §2.1-2.4": every number after the first § of a citation
CITATION = re.compile(r"docs/paper\.md (§" + NUMBER + r"(?:(?:-|–|, | and )§?" + NUMBER + r")*)")
#: a cross-reference inside the digest itself, "§7.3"
SECTION_SIGN = re.compile(r"§(" + NUMBER + r")")
#: the digest cited without its folder, so the path does not resolve from the repository root
BARE = re.compile(r"(?<!docs/)\bpaper\.md")
#: built in pieces so that this file does not match itself
OUTSIDE = re.compile(re.escape("../" + "shared/") + "|" + r"(?<![\w.~-])/" + "work" + r"(?![\w-])")


def _text(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def _citing_files() -> list[Path]:
    files = []
    for name in CITING:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in candidates if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    return files


def headings(text: str) -> set[str]:
    """Section numbers of the digest: "## N." gives N, "### N.M" gives N.M."""
    found = set(re.findall(r"^## (\d+)\.", text, flags=re.MULTILINE))
    return found | set(re.findall(r"^### (\d+\.\d+)\b", text, flags=re.MULTILINE))


def cited_sections(text: str) -> list[str]:
    """Every section number cited as docs/paper.md §N[.M], ranges and lists included."""
    return [number for group in CITATION.findall(text) for number in re.findall(NUMBER, group)]


def unresolved(files: list[Path], sections: set[str]) -> list[str]:
    missing = []
    for path in files:
        text = _text(path)
        if text is None:
            continue
        numbers = cited_sections(text)
        if path == DIGEST:
            numbers += SECTION_SIGN.findall(text)
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        missing += [f"{name}: §{number}" for number in numbers if number not in sections]
    return missing


def test_digest_has_the_numbered_sections():
    sections = headings(DIGEST.read_text(encoding="utf-8"))
    assert {str(n) for n in range(13)} <= sections
    assert {"2.1", "2.7", "7.1", "7.10", "10.1", "10.9"} <= sections


def test_every_citation_names_an_existing_section():
    sections = headings(DIGEST.read_text(encoding="utf-8"))
    files = _citing_files()
    assert sum(len(cited_sections(_text(p) or "")) for p in files) > 40, "the code cites the digest"
    missing = unresolved(files, sections)
    assert not missing, missing


def test_a_bad_citation_is_caught(tmp_path):
    sections = headings(DIGEST.read_text(encoding="utf-8"))
    bad = tmp_path / "bad.py"
    sign = "§"  # kept apart so that this file's own citations stay valid
    bad.write_text(f'"""A port (docs/paper.md {sign}2.1, {sign}7.11); shapes in docs/paper.md {sign}2.1-2.9."""\n')
    assert [line.split(": ")[1] for line in unresolved([bad.resolve()], sections)] == ["§7.11", "§2.9"]


def test_no_citation_of_the_digest_without_its_folder():
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in _citing_files() if (text := _text(path)) is not None
                 for number, line in enumerate(text.splitlines(), 1) if BARE.search(line)]
    assert not offenders, offenders
    bare = "paper" + ".md"  # kept apart so that this file does not match itself
    assert BARE.search(f"as in {bare} 7.5") and BARE.search(f"(``../{'shared'}/{bare}`` section 3)")
    assert not BARE.search("as in docs/paper.md §7.5")


def test_no_tracked_file_names_a_path_outside_the_repository():
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listing.returncode != 0:
        pytest.skip("not a git checkout")
    tracked = [ROOT / name for name in listing.stdout.split("\0") if name]
    assert tracked
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
                 for path in tracked if path.is_file() and (text := _text(path)) is not None
                 for number, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, offenders
    assert OUTSIDE.search("see " + "/" + "work/shared/x") and OUTSIDE.search("``../" + "shared/paper``")
    assert not OUTSIDE.search("bench/" + "work/x") and not OUTSIDE.search("frame/" + "work/x")


def test_the_architecture_module_map_matches_the_code():
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`(avlib/[\w/]+(?:\.py|/))`", text))
    for path in named:
        assert (root / path).exists(), f"docs/architecture.md names {path}, which does not exist"
    folders = {path for path in named if path.endswith("/")}
    modules = {path.relative_to(root).as_posix() for path in (root / "avlib").rglob("*.py") if path.name != "__init__.py"}
    unmapped = sorted(module for module in modules
                      if module not in named and not any(module.startswith(folder) for folder in folders))
    assert unmapped == [], f"modules missing from docs/architecture.md's map: {unmapped}"
