"""Render every results table of the README and the docs from committed JSON; ``--check`` verifies them.

A generated region is an opening marker naming what to render, the rendered Markdown, and a
closing marker::

    <!-- generated:demo-table examples/figures/demo.json -->
    ...written by this script, never by hand...
    <!-- /generated -->

Kinds (paths are relative to the repository root):

* ``demo-table DEMO_JSON``: the demo's table (``flash-wrap demo`` writes ``demo.json``);
* ``benchmark BENCH_JSON``: a ``flash-wrap benchmark --out`` file, as the command prints it;
* ``eval-tables RESULTS_DIR...``: ``flash-wrap compare`` of eval folders (each with its ``results.json``),
  ending with the Flash-against-bare summary when there are several;
* ``eval-summary RESULTS_DIR...``: that summary table only;
* ``paper-table RESULTS_DIR...``: ``flash-wrap compare --table paper`` (the paper's Table 1 layout);
* ``gallery``: the gallery page's body, one section per ``examples/*.py`` (docstring, figure, code).

``python scripts/render_tables.py`` rewrites the regions of README.md and docs/**/*.md in place;
``--check`` changes nothing and exits 1, naming each stale region with a diff, when a region differs
from what this script renders (a table edited by hand, or JSON changed without re-rendering).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the documents whose regions are rendered by default
DOCUMENTS = ("README.md", "docs", "flash_wrap/assets")
#: a region: both markers each on a line of its own (a marker quoted inside a line is not one)
REGION = re.compile(r"^(<!-- generated:(?P<spec>[^>]*?) -->\n)(?P<body>.*?)^(<!-- /generated -->)$", re.S | re.M)
OPENING = re.compile(r"^<!-- generated:", re.M)


class RegionError(ValueError):
    """A region that cannot be rendered: unknown kind, missing file, unclosed marker."""


# -- kinds -------------------------------------------------------------------------------------------
def _json(path: str) -> dict:
    file = ROOT / path
    if not file.is_file():
        raise RegionError(f"{path} does not exist (commit the JSON the region renders, or fix the path)")
    return json.loads(file.read_text(encoding="utf-8"))


def _nfe(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _degradation(task_name: str, level: float, image_size: int) -> str:
    """The physical severity of a task at ``level`` in words (``σ 0.15 px``, ``30% missing``)."""
    from flash_wrap import get_task

    task = get_task(task_name)
    severity = task.operator(level, image_size).severity
    return task.describe(float(severity.reshape(-1)[0])) if severity is not None else "–"


def demo_table(path: str) -> str:
    """The demo's table from its ``demo.json``: per task and level the PSNR of the degraded input,
    D(ẑ), the bare solver and Flash, their LPIPS and NFE."""
    demo = _json(path)
    rows = demo["rows"]
    lines = [f"{demo['solver']} on {demo['grid']}, bare vs Flash; means over {demo['n_faces']} faces "
             f"({demo['image_size']}², σ_y = {demo['noise_std']:g}). PSNR in dB (higher is better), "
             "LPIPS lower is better, NFE = denoiser calls.", "",
             "| task | degradation | degraded | D(ẑ) | bare | Flash | LPIPS bare / Flash | NFE bare / Flash |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['task']} | {_degradation(row['task'], row['level'], demo['image_size'])} "
            f"| {row['degraded_psnr']:.2f} | {row['autoencoder_psnr']:.2f} | {row['baseline_psnr']:.2f} "
            f"| {row['flash_psnr']:.2f} | {row['baseline_lpips']:.3f} / {row['flash_lpips']:.3f} "
            f"| {_nfe(row['baseline_nfe'])} / {_nfe(row['flash_nfe'])} |")
    steps = [f"{task} {values['flash'].get('eta', '–'):g} / {values['baseline'].get('eta', '–'):g}"
             for task, values in demo.get("hyperparameters", {}).items() if "eta" in values.get("flash", {})]
    if steps:
        lines += ["", "Step sizes η, Flash / bare (each tuned on held-out images): " + "; ".join(steps) + "."]
    return "\n".join(lines)


def benchmark(path: str) -> str:
    """A ``flash-wrap benchmark`` JSON as the command prints it."""
    from flash_wrap.apps.benchmark import markdown

    return markdown(_json(path))


def _eval_results(folders: Sequence[str]) -> list[dict]:
    if not folders:
        raise RegionError("name at least one eval folder (holding results.json)")
    return [_json(f"{folder.rstrip('/')}/results.json") for folder in folders]


def eval_tables(*folders: str) -> str:
    """``flash-wrap compare`` of the folders."""
    from flash_wrap.apps.evaluation.compare import summary, table

    loaded = _eval_results(folders)
    overview = summary(loaded) if len(loaded) > 1 else None
    return "\n\n".join([table(r) for r in loaded] + ([overview] if overview else []))


def eval_summary(*folders: str) -> str:
    """The Flash-against-bare summary table of the folders."""
    from flash_wrap.apps.evaluation.compare import summary

    overview = summary(_eval_results(folders))
    if overview is None:
        raise RegionError(f"none of {', '.join(folders)} has a bare baseline to compare with")
    return overview


def paper_table(*folders: str) -> str:
    """``flash-wrap compare --table paper`` of the folders."""
    from flash_wrap.apps.evaluation.compare import paper_table as render

    return render(_eval_results(folders))


def _fence_indented(text: str) -> str:
    """``text`` (a docstring) with each indented block (4 spaces, after a blank line: a command line
    in a docstring) turned into a fenced ``bash`` block marked illustrative."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            block = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["<!-- illustrative -->", "```bash", *block, "```", ""]
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out).rstrip("\n")


def gallery() -> str:
    """One section per example script: its docstring (which says how to run it), its committed figure
    (``examples/figures/``, served under ``figures/``) and its code."""
    parts = []
    for script in sorted((ROOT / "examples").glob("[!_]*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
        title, _, rest = doc.partition("\n")
        title = title.strip().rstrip(".") or script.stem
        name = script.relative_to(ROOT).as_posix()
        section = [f"## {title}", "", f"`{name}`", ""]
        if rest.strip():
            section += [_fence_indented(rest.strip()), ""]
        figure = ROOT / "examples" / "figures" / f"{script.stem}.png"
        if figure.is_file():
            section += [f"![{title}](figures/{figure.name})", ""]
        section += ['??? example "Code"', "    ```python", f'    --8<-- "{name}"', "    ```", ""]
        parts.append("\n".join(section))
    return "\n".join(parts).rstrip("\n")


KINDS: dict[str, Callable[..., str]] = {
    "demo-table": demo_table, "benchmark": benchmark, "eval-tables": eval_tables,
    "eval-summary": eval_summary, "paper-table": paper_table, "gallery": gallery,
}


# -- documents ---------------------------------------------------------------------------------------
def render_region(spec: str) -> str:
    """The Markdown of the region whose opening marker reads ``generated:SPEC``."""
    kind, *args = spec.split()
    if kind not in KINDS:
        raise RegionError(f"unknown region kind {kind!r}; known: {', '.join(KINDS)}")
    try:
        return KINDS[kind](*args).rstrip("\n") + "\n"
    except TypeError as err:
        raise RegionError(f"region {spec!r}: wrong arguments ({err})") from None


def render_document(text: str, where: str = "<text>") -> str:
    """``text`` with every generated region re-rendered."""
    if len(OPENING.findall(text)) != len(REGION.findall(text)):
        raise RegionError(f"{where}: a '<!-- generated:... -->' marker has no '<!-- /generated -->' after it")

    def replace(match: re.Match[str]) -> str:
        try:
            body = render_region(match.group("spec"))
        except RegionError as err:
            raise RegionError(f"{where}: {err}") from None
        return match.group(1) + body + match.group(4)

    return REGION.sub(replace, text)


def documents(paths: Sequence[str | Path] = DOCUMENTS) -> list[Path]:
    """The Markdown files of ``paths`` (files, or folders searched recursively)."""
    found: list[Path] = []
    for entry in paths:
        path = Path(entry) if Path(entry).is_absolute() else ROOT / entry
        found += sorted(path.rglob("*.md")) if path.is_dir() else [path]
    return found


def stale(path: Path) -> str | None:
    """A diff of what :func:`render_document` would change in ``path``; ``None`` when it is current."""
    text = path.read_text(encoding="utf-8")
    rendered = render_document(text, str(path))
    if rendered == text:
        return None
    return "".join(difflib.unified_diff(text.splitlines(True), rendered.splitlines(True),
                                        f"{path} (as committed)", f"{path} (as rendered)"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=list(DOCUMENTS),
                        help="Markdown files or folders (default: README.md and docs/)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a region differs from its rendering")
    args = parser.parse_args(argv)
    try:
        files = documents(args.paths)
        if args.check:
            diffs = [d for d in map(stale, files) if d]
            for diff in diffs:
                print(diff)
            if diffs:
                print(f"{len(diffs)} document(s) have generated regions that differ from their JSON; "
                      "run python scripts/render_tables.py and commit the result", file=sys.stderr)
                return 1
            print(f"generated regions current in {len(files)} document(s)")
            return 0
        for path in files:
            text = path.read_text(encoding="utf-8")
            rendered = render_document(text, str(path))
            if rendered != text:
                path.write_text(rendered, encoding="utf-8")
                print(f"rendered {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return 0
    except RegionError as err:
        print(f"render_tables: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
