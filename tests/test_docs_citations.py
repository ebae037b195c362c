"""Citations in the code and documents resolve inside the repository: every ``docs/...`` path exists, every
``docs/readings.md "Section", "Entry"`` names a heading of that document, and nothing cites a file that only
exists outside the repository (the papers' texts, their reading notes, an outside design document)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyfacex", "csrc", "scripts", "bench", "gpucheck", "tests", "configs", "docs", "cmake")
SUFFIXES = {".py", ".cpp", ".h", ".cu", ".md", ".yaml", ".yml", ".sh", ".txt", ".toml", ".cmake"}
TOP_LEVEL = ("README.md", "CONTRIBUTING.md", "Makefile", "pyproject.toml", "CMakeLists.txt")

# A path segment in capitals is a placeholder (docs/reproductions/PAPER.md), not a citation.
PLACEHOLDER = re.compile(r"/[A-Z_]+(?:[./]|$)")
# Tests that build a docs/ tree of their own in a temporary folder and name its files.
BUILDS_DOCS_TREES = {"tests/reproduce/test_publish_script.py"}
DOC_PATH = re.compile(r"(?<![\w/.-])(docs/[\w./-]*[\w/])")
SECTION_CITATION = re.compile(r'(docs/(?:readings|design)\.md) "([^"]+)"(?:, "([^"]+)")?')
# Files that are not in the repository: the papers' texts (cited by name instead: "LGAF eq. 6"), the notes
# docs/readings.md replaced and the design document docs/design.md replaced.
OUTSIDE = re.compile(r"NOTES\.md|DESIGN\.md|\.\./shared|(?<![\w/-])papers/|"
                     r"(?<![\w/-])(?:lfenet|lgaf|fanface|qaface|face-aggregation)\.md")


def _files():
    paths = [ROOT / name for name in TOP_LEVEL if (ROOT / name).is_file()]
    for folder in SOURCES:
        paths += [p for p in sorted((ROOT / folder).rglob("*")) if p.suffix in SUFFIXES and p.is_file()]
    return [p for p in paths if p.resolve() != Path(__file__).resolve()]


FILES = _files()


def _text(path: Path) -> str:
    """The file with wrapped comment lines joined and whitespace runs collapsed, so that a citation
    broken over two lines of a docstring or a comment reads as one."""
    text = path.read_text(encoding="utf-8", errors="replace")
    text = re.sub(r"\n[ \t]*(?:#|//|\*)?[ \t]*", " ", text)
    return re.sub(r"\s+", " ", text)


def _headings(document: Path) -> list[tuple[str, list[str]]]:
    """[(level-2 heading, [its level-3 headings])] of a markdown document, in order."""
    sections: list[tuple[str, list[str]]] = []
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif line.startswith("### ") and sections:
            sections[-1][1].append(line[4:].strip())
    return sections


def test_the_scan_sees_the_code_and_the_documents():
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert {"pyfacex/models/lgaf.py", "csrc/ops/sets.cpp", "README.md", "docs/readings.md", "docs/design.md"} <= names


def test_cited_docs_paths_exist():
    missing = []
    for path in FILES:
        if path.relative_to(ROOT).as_posix() in BUILDS_DOCS_TREES:
            continue
        cited = {m for m in DOC_PATH.findall(_text(path)) if not PLACEHOLDER.search(m)}
        missing += [f"{path.relative_to(ROOT)}: {m}" for m in sorted(cited) if not (ROOT / m).exists()]
    assert not missing, "cited but not in the repository:\n" + "\n".join(missing)


def test_cited_sections_exist():
    headings = {document: _headings(ROOT / document) for document in ("docs/readings.md", "docs/design.md")}
    wrong = []
    for path in FILES:
        for document, section, entry in SECTION_CITATION.findall(_text(path)):
            sections = [(h, subs) for h, subs in headings[document] if h.startswith(section)]
            if len(sections) != 1:
                wrong.append(f'{path.relative_to(ROOT)}: {document} "{section}": {len(sections)} sections start so')
            elif entry and not any(sub.startswith(entry) for sub in sections[0][1]):
                wrong.append(f'{path.relative_to(ROOT)}: {document} "{section}", "{entry}": no such entry')
    assert not wrong, "\n".join(wrong)


def test_nothing_cites_a_file_outside_the_repository():
    found = [f"{path.relative_to(ROOT)}: {m.group(0)}" for path in FILES
             for m in OUTSIDE.finditer(path.read_text(encoding="utf-8", errors="replace"))]
    assert not found, "cite docs/readings.md, docs/design.md or the paper by name (LGAF eq. 6) instead:\n" + \
        "\n".join(found)


def test_the_checks_catch_a_wrong_citation():
    sections = _headings(ROOT / "docs" / "readings.md")
    lgaf = [subs for h, subs in sections if h.startswith("LGAF")]
    assert len(lgaf) == 1 and any(s.startswith("Which branch is local") for s in lgaf[0])
    assert not any(s.startswith("No such entry") for s in lgaf[0])
    assert OUTSIDE.search("(see NOTES.md)") and OUTSIDE.search("(lgaf.md eq. 6)")
    assert not OUTSIDE.search("docs/reproductions/lgaf.md") and not OUTSIDE.search("(LGAF eq. 6)")
    assert DOC_PATH.findall('docs/readings.md "LGAF"') == ["docs/readings.md"]
