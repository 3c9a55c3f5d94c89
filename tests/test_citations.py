"""Every cited section and every mentioned Markdown file exists in the repository.

Docstrings, comments and documents cite ``ALGORITHMS.md §N`` (the project's
``flash_wrap/ALGORITHMS.md``, shipped with the package), sometimes ``§N.M``, a range ``§3–4`` or a
list ``§2 and §11``, and name other Markdown files (``plugins/README.md §5–7``, a model card). A
citation of a section that has no heading ``## N.`` (``### N.M``) in the cited file, or a mention
of a file that is not in the repository, fails here with the file and line that made it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: where citations are looked for: the package, the plugins, the examples, the tests, the front page
SCANNED = ("flash_wrap", "plugins", "examples", "tests", "README.md")
SUFFIXES = (".py", ".md", ".toml")
SKIPPED_PARTS = {"__pycache__", ".venv", "build", "dist"}
#: the algorithm document a bare ``ALGORITHMS.md`` means
ALGORITHMS = ROOT / "flash_wrap" / "ALGORITHMS.md"
#: Markdown files the commands write (``flash-wrap demo``): named in docs, never in the repository
WRITTEN_BY_COMMANDS = {"demo.md"}

URL = re.compile(r"\w+://\S+")
MD_FILE = re.compile(r"(?<![\w./-])((?:\.\.?/)*\w[\w./-]*\.md)\b")
#: a Markdown file name followed (after closing backticks) by its section numbers
CITATION = re.compile(r"(\w[\w./-]*\.md)`{0,2}((?:\s*(?:§|,|and|or|–|-)\s*)+\d+(?:\.\d+)?"
                      r"(?:(?:\s*(?:§|,|and|or|–|-)\s*)+\d+(?:\.\d+)?)*)")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
RANGE = re.compile(r"(\d+)\s*[–-]\s*§?\s*(\d+)(?!\.\d)")
HEADING = re.compile(r"^(#{2,3})\s+(\d+(?:\.\d+)?)\.?\s", re.M)


def _scanned_files() -> list[Path]:
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else path.rglob("*")
        files += [p for p in candidates if p.is_file() and p.suffix in SUFFIXES
                  and not SKIPPED_PARTS & set(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)]
    return sorted(files)


def _resolve(name: str, cited_from: Path) -> Path | None:
    """The repository file that ``name`` means from ``cited_from``: relative to its folder, to the
    repository root or to the package, or (a bare file name) the one file with that name."""
    if name == "ALGORITHMS.md":
        return ALGORITHMS
    for base in (cited_from.parent, ROOT, ROOT / "flash_wrap"):
        candidate = (base / name).resolve()
        if candidate.is_file() and candidate.is_relative_to(ROOT):
            return candidate
    if "/" not in name:
        same_name = [p for p in _all_markdown() if p.name == name]
        if len(same_name) == 1:
            return same_name[0]
    return None


def _all_markdown() -> list[Path]:
    return [p for p in ROOT.rglob("*.md") if not SKIPPED_PARTS & set(p.relative_to(ROOT).parts)]


def sections(document: Path) -> set[str]:
    """The numbers of the headings ``## N.`` and ``### N.M`` of a Markdown document."""
    return {number for hashes, number in HEADING.findall(document.read_text())
            if (hashes == "##") == ("." not in number)}


def cited_sections(text: str) -> list[tuple[str, str]]:
    """``(file name, section number)`` for each section that ``text`` cites; a range ``§3–5`` cites
    3, 4 and 5."""
    found = []
    for match in CITATION.finditer(URL.sub("", text)):
        name, numbers = match.group(1), match.group(2)
        cited = set(NUMBER.findall(numbers))
        for low, high in RANGE.findall(numbers):
            cited |= {str(n) for n in range(int(low), int(high) + 1)}
        found += [(name, n) for n in sorted(cited)]
    return found


def _problems(path: Path, text: str) -> list[str]:
    """What is wrong with the citations in ``text``, the content of ``path``: one line each."""
    where = path.relative_to(ROOT)
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = URL.sub("", line)
        for name in MD_FILE.findall(line):
            if Path(name).name not in WRITTEN_BY_COMMANDS and _resolve(name, path) is None:
                problems.append(f"{where}:{lineno}: mentions {name}, which is not in the repository")
        for name, number in cited_sections(line):
            document = _resolve(name, path)
            if document is not None and number not in sections(document):
                problems.append(f"{where}:{lineno}: cites {name} §{number}, but "
                                f"{document.relative_to(ROOT)} has no heading for section {number}")
        if path == ALGORITHMS:  # its own cross-references: "(§3–4)", "see §5"
            problems += [f"{where}:{lineno}: refers to §{n}, which has no heading here"
                         for _, n in cited_sections(line.replace("§", "ALGORITHMS.md §"))
                         if n not in sections(ALGORITHMS)]
    return problems


#: spelled apart so that this file's own examples are not citations
MD = ".md"


def test_the_scan_covers_the_code_and_the_documents():
    files = {p.relative_to(ROOT).as_posix() for p in _scanned_files()}
    assert {"README" + MD, "flash_wrap/ALGORITHMS" + MD, "flash_wrap/start.py", "plugins/README" + MD,
            "examples/_common.py", "tests/test_citations.py"} <= files
    assert {str(n) for n in range(1, 13)} <= sections(ALGORITHMS)


def test_citation_forms_are_read():
    a = "ALGORITHMS" + MD
    assert cited_sections(f"({a} §3-4): the rule") == [(a, "3"), (a, "4")]
    assert cited_sections(f"{a} §3–§4 and") == [(a, "3"), (a, "4")]
    assert cited_sections(f"{a} §2 and §11 [C x]") == [(a, "11"), (a, "2")]
    assert cited_sections(f"`flash_wrap/{a}` §5): norms") == [(f"flash_wrap/{a}", "5")]
    assert cited_sections(f"``plugins/README{MD}`` §5–7 states") == [(f"plugins/README{MD}", n) for n in "567"]
    assert cited_sections(f"see {a} §4.2, then") == [(a, "4.2")]
    assert cited_sections(f"[P §4] and {a} alone") == []


def test_a_missing_section_or_file_is_reported():
    probe = ROOT / "tests" / "probe.py"  # need not exist: it only places the text for relative names
    text = (f'"""ALGORITHMS{MD} §99 and §3; see DESIGN{MD}, plugins/README{MD} §77, '
            f'../flash_wrap/ALGORITHMS{MD} §12 and demo{MD}."""')
    problems = _problems(probe, text)
    assert len(problems) == 3, problems
    assert f"DESIGN{MD}, which is not in the repository" in problems[0]
    assert f"cites ALGORITHMS{MD} §99" in problems[1] and "§77" in problems[2]


def test_sections_are_numbered_headings(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("# Title\n## 1. One\ntext §9\n### 1.2 Sub\n## 10. Ten\n## §3 old style\n")
    assert sections(doc) == {"1", "1.2", "10"}


def test_every_citation_resolves():
    problems = [line for path in _scanned_files() for line in _problems(path, path.read_text(errors="replace"))]
    assert problems == [], "\n".join(problems)
