"""The README and the docs site keep their word.

* The README is at most 12 KB, its quick-start commands are what ``.ci/run`` and the demo run, and
  its Python snippet runs as written.
* Every ``python``/``bash``/``sh``/``console`` block in the README, the docs and the documents the
  site renders from beside the code either runs here or is marked ``<!-- illustrative -->`` on the
  line before its fence (docs/development.md, "Code blocks").
* Every results table between ``<!-- generated:... -->`` markers equals what
  ``scripts/render_tables.py`` renders from committed JSON, and the check fails on a hand edit.
* The API reference names every public object; the gallery shows every example, and every example
  runs in its quick mode (here or in ``test_examples.py``).

The runnable Python blocks and the study scripts run in one fresh interpreter (``docs_runner.py``),
which pays for importing torch and loading the demo model once.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
FACES = ROOT / "flash_wrap" / "assets" / "faces"
MARKER = "<!-- illustrative -->"
#: spelled apart so that test_citations does not read these example names as repository files
MD = ".md"
#: fenced blocks of these languages are code: each runs here or is marked illustrative
CODE_LANGUAGES = {"python", "py", "bash", "sh", "shell", "console"}
#: shell commands quick and read-only enough to run in every test session
QUICK_COMMAND = re.compile(r"^flash-wrap(\s+solvers(\s+--details)?|(\s+[\w-]+)?\s+--help)$")
INCLUDE = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')

#: the study scripts have no --quick of their own: their quick mode is these arguments (shipped faces)
STUDY_QUICK_ARGS = {
    "evaluate_demo_model.py": ["--faces", str(FACES), "--limit", "1", "--skip-baseline", "--out", "eval-quick"],
    "severity_resolution_study.py": ["--faces", str(FACES), "--sizes", "64", "--draws", "2", "--limit", "2"],
    "severity_ranking_over_seeds.py": ["--faces", str(FACES), "--seeds", "3", "--limit", "3"],
}


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_tables = _load_script("render_tables")
docs_hooks = _load_script("docs_hooks")


# -- parsing ---------------------------------------------------------------------------------------
@dataclass
class Block:
    document: str
    line: int
    language: str
    code: str
    illustrative: bool


FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<info>[^`]*)$")


def code_blocks(text: str, document: str = "<text>") -> list[Block]:
    """The fenced blocks of Markdown ``text`` (also indented ones, inside admonitions), in order."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, ticks = opening["indent"], opening["ticks"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != ticks and not lines[end].strip().startswith(ticks + "`"):
            end += 1
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:end]]
        previous = lines[i - 1].strip() if i > 0 else ""
        language = (opening["info"].split() or [""])[0].lower()
        blocks.append(Block(document, i + 1, language, "\n".join(body) + "\n", previous == MARKER))
        i = end + 1
    return blocks


def documents() -> dict[str, str]:
    """Every Markdown document the README and the site are made of, by repository path."""
    paths = [README, *sorted(DOCS.rglob("*.md")), *(ROOT / s for s in docs_hooks.INCLUDED_PAGES.values())]
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in paths}


def all_blocks() -> list[Block]:
    return [b for name, text in documents().items() for b in code_blocks(text, name)]


def included_example(block: Block) -> str | None:
    """``examples/x.py`` for a block that only includes that file (the gallery's code blocks)."""
    match = INCLUDE.match(block.code.strip())
    return match["path"] if match else None


def quick_commands(block: Block) -> list[str] | None:
    """The commands of a shell block when every one of them is quick; ``None`` otherwise."""
    commands = [line.split("  #")[0].strip() for line in block.code.splitlines()]
    commands = [c for c in commands if c and not c.startswith("#")]
    return commands if commands and all(QUICK_COMMAND.match(c) for c in commands) else None


def runnable_python() -> dict[str, str]:
    """Per document, its unmarked Python blocks (not gallery includes) joined in order."""
    pages: dict[str, list[str]] = {}
    for b in all_blocks():
        if b.language in ("python", "py") and not b.illustrative and included_example(b) is None:
            pages.setdefault(b.document, []).append(b.code)
    return {name: "\n".join(codes) for name, codes in pages.items()}


def examples_run_by_test_examples() -> set[str]:
    source = (ROOT / "tests" / "test_examples.py").read_text(encoding="utf-8")
    return {name for name in re.findall(r'"(\w+\.py)"', source) if (EXAMPLES / name).is_file()}


def gallery_examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("[!_]*.py"))


# -- the parser itself -------------------------------------------------------------------------------
def test_the_block_parser_sees_markers_indented_fences_and_includes():
    text = ("intro\n\n" + MARKER + "\n```bash\nflash-wrap eval --data X\n```\n\n```python\nprint(1)\n```\n"
            '??? example "Code"\n    ```python\n    --8<-- "examples/a.py"\n    ```\n'
            "```bash\nflash-wrap solvers --details\nflash-wrap eval --help  # its options\n```\n")
    blocks = code_blocks(text)
    assert [(b.language, b.illustrative) for b in blocks] == [("bash", True), ("python", False), ("python", False),
                                                              ("bash", False)]
    assert blocks[1].code == "print(1)\n" and included_example(blocks[2]) == "examples/a.py"
    assert quick_commands(blocks[3]) == ["flash-wrap solvers --details", "flash-wrap eval --help"]
    assert quick_commands(blocks[0]) is None


# -- README ------------------------------------------------------------------------------------------
def test_readme_is_at_most_12_kb():
    assert README.stat().st_size <= 12 * 1024, f"README.md is {README.stat().st_size} bytes"


def test_readme_quick_start_commands_are_what_ci_and_the_demo_run():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    section = README.read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    demo, tests = [b.code.strip() for b in code_blocks(section) if b.language == "bash"][:2]
    torch_pin = re.search(r"pip install --quiet (torch==[\w.+]+)", ci)[1]
    for command in (demo, tests):
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
        assert f"pip install {torch_pin} && " in command  # the same pinned torch, installed first
    assert demo.endswith("pip install -e . && flash-wrap demo")
    assert tests.endswith('pip install -e ".[test]" && python -m pytest -q')
    assert 'pip install --quiet -e ".[test]"' in ci and re.search(r"^python -m pytest -q$", ci, re.M)
    # the demo command is the CLI's demo with its defaults
    from flash_wrap.apps.cli import main

    try:
        code = main(["demo", "--help"])
    except SystemExit as exit_:
        code = exit_.code
    assert code in (0, None)


# -- every code block runs or is marked --------------------------------------------------------------
def test_every_code_block_runs_here_or_is_marked_illustrative():
    run_elsewhere = examples_run_by_test_examples() | set(STUDY_QUICK_ARGS)
    problems = []
    for b in all_blocks():
        if b.language not in CODE_LANGUAGES or b.illustrative:
            continue
        if b.language in ("python", "py"):
            example = included_example(b)
            if example is not None and Path(example).name not in run_elsewhere:
                problems.append(f"{b.document}:{b.line}: includes {example}, which no test runs in quick mode")
        elif quick_commands(b) is None:
            problems.append(f"{b.document}:{b.line}: a {b.language} block that is neither quick (flash-wrap solvers, "
                            f"--help) nor marked; put {MARKER} on the line before its fence")
    assert problems == []


def test_the_quick_shell_blocks_run(capsys):
    from flash_wrap.apps.cli import main

    commands = {c for b in all_blocks() if b.language in CODE_LANGUAGES - {"python", "py"} and not b.illustrative
                for c in quick_commands(b) or []}
    assert "flash-wrap solvers" in commands
    for command in sorted(commands):
        try:
            code = main(shlex.split(command)[1:])
        except SystemExit as exit_:  # --help exits
            code = exit_.code
        assert code in (0, None), f"{command} exited with {code}:\n{capsys.readouterr()}"


@pytest.fixture(scope="module")
def docs_run(tmp_path_factory) -> dict:
    """Runs every runnable Python block (per document) and the study scripts' quick mode."""
    folder = tmp_path_factory.mktemp("docs-run")
    jobs = [{"name": name, "code": code} for name, code in runnable_python().items()]
    jobs += [{"name": script, "script": str(EXAMPLES / script), "argv": args}
             for script, args in STUDY_QUICK_ARGS.items()]
    (folder / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "docs_runner.py"), "jobs.json", "results.json"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((folder / "results.json").read_text())


@pytest.mark.parametrize("document", sorted(runnable_python()))
def test_the_python_blocks_of_each_document_run(document: str, docs_run: dict):
    result = docs_run[document]
    assert result["ok"], f"{document}'s Python blocks failed:\n{result['error']}\n{result['output']}"


def test_the_readme_snippet_runs_as_written_and_flash_restores(docs_run: dict):
    result = docs_run["README.md"]
    assert result["ok"], result["error"]
    printed = dict(line.split(":", 1) for line in result["output"].splitlines() if ":" in line)
    nfe = json.loads(printed["NFE"])
    degraded, flash = json.loads(printed["PSNR degraded"]), json.loads(printed["PSNR Flash"])
    assert 0 < nfe[0] <= nfe[1] < 100  # the stronger blur starts later, both far below the 100 steps
    assert all(f > d for f, d in zip(flash, degraded))


# -- gallery -------------------------------------------------------------------------------------------
def test_the_gallery_shows_every_example_with_its_code():
    page = (DOCS / "gallery.md").read_text(encoding="utf-8")
    shown = {Path(included_example(b)).name for b in code_blocks(page) if included_example(b)}
    assert shown == set(gallery_examples())
    for figure in (EXAMPLES / "figures").glob("*.png"):
        if (EXAMPLES / f"{figure.stem}.py").is_file():
            assert f"](figures/{figure.name})" in page


def test_every_example_runs_in_its_quick_mode_somewhere():
    assert set(gallery_examples()) <= examples_run_by_test_examples() | set(STUDY_QUICK_ARGS)


@pytest.mark.parametrize("script", sorted(STUDY_QUICK_ARGS))
def test_the_study_examples_run_in_their_quick_mode(script: str, docs_run: dict):
    result = docs_run[script]
    assert result["ok"], f"{script} failed:\n{result['error']}\n{result['output']}"
    assert result["output"].strip()  # each prints its figures


# -- generated tables ----------------------------------------------------------------------------------
def test_the_generated_tables_are_current():
    assert render_tables.main(["--check"]) == 0


def test_the_check_fails_when_a_table_is_edited_by_hand(tmp_path: Path, capsys):
    text = README.read_text(encoding="utf-8")
    region = render_tables.REGION.search(text)
    assert region is not None and region["spec"].startswith("demo-table")
    copy = tmp_path / "README.md"
    copy.write_text(text)
    assert render_tables.main(["--check", str(copy)]) == 0
    # change one PSNR figure of the rendered table, as a hand edit would
    body = region["body"]
    number = re.search(r"\| (\d+\.\d\d) \|", body)
    edited = body[:number.start(1)] + f"{float(number[1]) + 0.01:.2f}" + body[number.end(1):]
    copy.write_text(text.replace(body, edited))
    capsys.readouterr()
    assert render_tables.main(["--check", str(copy)]) == 1
    assert number[1] in capsys.readouterr().out  # the diff shows the rendered value
    # rendering restores it
    assert render_tables.main([str(copy)]) == 0 and copy.read_text() == text


def test_regions_with_unknown_kinds_missing_json_or_no_end_are_errors(tmp_path: Path):
    for body, message in [("<!-- generated:nonsense -->\n<!-- /generated -->\n", "unknown region kind"),
                          ("<!-- generated:demo-table no/such.json -->\n<!-- /generated -->\n", "does not exist"),
                          ("<!-- generated:gallery -->\n| a |\n", "no '<!-- /generated -->'")]:
        with pytest.raises(render_tables.RegionError, match=message):
            render_tables.render_document(body)
        page = tmp_path / ("page" + MD)
        page.write_text(body)
        assert render_tables.main(["--check", str(page)]) == 2


def test_a_marker_quoted_inside_a_line_is_not_a_region():
    text = "write `<!-- generated:demo-table x.json -->` and `<!-- /generated -->` around it\n"
    assert render_tables.render_document(text) == text


def test_the_demo_table_has_lpips_and_every_row_of_the_json():
    demo = json.loads((EXAMPLES / "figures" / "demo.json").read_text())
    table = render_tables.demo_table("examples/figures/demo.json")
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert len(rows) == len(demo["rows"]) and "LPIPS" in table
    for line, row in zip(rows, demo["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row["task"] and cells[2:6] == [f"{row[k]:.2f}" for k in (
            "degraded_psnr", "autoencoder_psnr", "baseline_psnr", "flash_psnr")]
        assert cells[6] == f"{row['baseline_lpips']:.3f} / {row['flash_lpips']:.3f}"


# -- site ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["flash_wrap", "flash_wrap.operators", "flash_wrap.metrics", "flash_wrap.testing",
                                    "flash_wrap.models", "flash_wrap.images", "flash_wrap.degradation",
                                    "flash_wrap.figures", "flash_wrap.registry", "flash_wrap.perceptual",
                                    "flash_wrap.severity"])
def test_the_api_reference_names_every_public_object(module: str):
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.md"))
    referenced = set(re.findall(r"^::: ([\w.]+)$", pages, re.M))
    public = [n for n in importlib.import_module(module).__all__ if not n.startswith("__")]
    assert [n for n in public if f"{module}.{n}" not in referenced] == []


def test_every_page_is_in_the_navigation():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} | set(docs_hooks.INCLUDED_PAGES)
    assert {p for p in pages if f": {p}" not in config} == set()


def test_included_documents_link_to_their_pages_or_name_the_file():
    rewrite = docs_hooks.rewrite_links
    text = (f"[guide](../../../plugins/README{MD}#2-the-hooks) ![plot](eval_psnr_vs_nfe.png) "
            "[ex](../examples/third_party_solver/) [src](../flash_wrap/solver.py) [web](https://x.org/a.md)")
    assert rewrite(text, "flash_wrap/assets/demo/README.md", "model-cards/demo.md").split(" ")[:2] == [
        f"[guide](../plugin-guide{MD}#2-the-hooks)", "![plot](eval_psnr_vs_nfe.png)"]
    out = rewrite(text, "plugins/README.md", "plugin-guide" + MD)
    assert f"[ex](third-party-solver{MD})" in out and "src (`flash_wrap/solver.py`)" in out
    assert "[web](https://x.org/a.md)" in out
