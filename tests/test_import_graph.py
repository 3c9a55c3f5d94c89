"""The import graph of ``flash_wrap``: no cycles, layers that point one way, plugins on the public API.

Built from the source (``ast``), counting every runtime import, including imports inside
functions (a lazy import that hides a cycle is still a cycle); imports under
``if TYPE_CHECKING:`` are for annotations only and are not counted.

The layers, bottom to top (each may import only the ones below it; :data:`FORBIDDEN` spells out
the rules this file checks):

- ``models`` (autoencoder, denoiser, schedule, bundles), ``operators`` (forward models, tasks) and
  ``severity`` (the severity encoder): none of them imports another layer's solvers or Flash;
- core sampling (``start``, ``samplers``, ``grid``, ``state``, ``runner``, ``guidance``, and above
  them the slot scheduler ``scheduling``, which only ``solver`` and ``flash`` import), the
  plugin contract and registries (``hookspecs``, ``discovery``, ``registry``), ``solver`` and
  ``flash``; ``testing`` (the contract suite) beside them;
- the public helpers :data:`HELPERS` (metrics, image files, figures, reproducible degradations):
  what users and the examples need besides the solvers; nothing below them imports them;
- ``apps`` (the commands): nothing else imports it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import flash_wrap
import flash_wrap_plugins

PACKAGE_ROOT = Path(flash_wrap.__file__).resolve().parent
PLUGINS_ROOT = Path(flash_wrap_plugins.__file__).resolve().parent


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that one import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
    out = set()
    for name in names:
        # the deepest known module the name refers to (``from .x import y`` may import module x.y)
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                out.add(candidate)
                break
    return out


def _graph(root: Path, package: str, known: set[str] | None = None) -> dict[str, set[str]]:
    files = {_module_name(p, root, package): p for p in root.rglob("*.py")}
    known = set(files) | (known or set())
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        deps: set[str] = set()
        for node in _runtime_imports(tree):
            deps |= _targets(node, module, path.name == "__init__.py", known)
        graph[module] = deps - {module}
    return graph


GRAPH = _graph(PACKAGE_ROOT, "flash_wrap")
CORE = {m for m in GRAPH if not m.startswith("flash_wrap.apps") and m != "flash_wrap.__main__"}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read_from_the_source():
    # guards the checks below against an empty or misparsed graph
    assert {"flash_wrap.flash", "flash_wrap.solver", "flash_wrap.apps.cli", "flash_wrap.models.bundle"} <= set(GRAPH)
    assert "flash_wrap.runner" in GRAPH["flash_wrap.solver"]
    assert "flash_wrap.solver" not in GRAPH["flash_wrap.runner"]  # only under TYPE_CHECKING there


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_flash_wrap_has_no_import_cycle():
    assert _find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(_find_cycle(GRAPH) or [])}"


def test_the_core_does_not_import_the_applications():
    offenders = {m: sorted(d for d in deps if d.startswith("flash_wrap.apps")) for m, deps in GRAPH.items() if m in CORE}
    assert {m: d for m, d in offenders.items() if d} == {}


#: the public helpers: above the solvers and Flash, below the applications
HELPERS = ("flash_wrap.metrics", "flash_wrap.perceptual", "flash_wrap.images", "flash_wrap.figures", "flash_wrap.degradation")

#: layer -> modules it must not import (the layer table in this file's docstring)
FORBIDDEN = {
    **{helper: ("flash_wrap.apps",) for helper in HELPERS},
    "flash_wrap.models": ("flash_wrap.solver", "flash_wrap.runner", "flash_wrap.flash", "flash_wrap.operators",
                          "flash_wrap.scheduling",
                          "flash_wrap.registry", "flash_wrap.discovery", "flash_wrap.guidance", "flash_wrap.testing",
                          # tuned values' keys, validation and precedence belong to flash_wrap.tuning
                          "flash_wrap.grid", "flash_wrap.tuning"),
    "flash_wrap.operators": ("flash_wrap.models", "flash_wrap.solver", "flash_wrap.flash", "flash_wrap.runner",
                             "flash_wrap.severity", "flash_wrap.testing", "flash_wrap.scheduling"),
    "flash_wrap.severity": ("flash_wrap.models", "flash_wrap.solver", "flash_wrap.flash", "flash_wrap.operators",
                            "flash_wrap.scheduling"),
    # the slot scheduler sits on the runner: what it steps through (runner, state, rng, operators,
    # result) must not know it, and it reaches the solver and Flash only through their objects
    **{below: ("flash_wrap.scheduling",) for below in (
        "flash_wrap.runner", "flash_wrap.state", "flash_wrap.rng", "flash_wrap.result", "flash_wrap.start",
        "flash_wrap.samplers", "flash_wrap.grid", "flash_wrap.guidance")},
    "flash_wrap.scheduling": ("flash_wrap.solver", "flash_wrap.flash", "flash_wrap.apps", "flash_wrap.testing"),
    "flash_wrap.hookspecs": ("flash_wrap.",),
    "flash_wrap.discovery": ("flash_wrap.solver", "flash_wrap.registry", "flash_wrap.models"),
    "flash_wrap.testing": ("flash_wrap.apps",),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_point_one_way(layer):
    modules = [m for m in GRAPH if m == layer or m.startswith(layer + ".")]
    assert modules, f"no module in layer {layer}"
    bad = {
        m: sorted(d for d in GRAPH[m] if any(d == f or d.startswith(f) for f in FORBIDDEN[layer]) and d != "flash_wrap.hookspecs")
        for m in modules
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_only_the_applications_and_the_helpers_themselves_import_the_helpers():
    assert set(HELPERS) <= set(GRAPH)
    users = {
        m: sorted(d for d in deps if d in HELPERS)
        for m, deps in GRAPH.items()
        if m not in HELPERS and not m.startswith("flash_wrap.apps") and m != "flash_wrap.__main__"
    }
    assert {m: d for m, d in users.items() if d} == {}


def test_built_in_plugins_use_only_the_public_api():
    known = set(GRAPH) | {_module_name(p, PLUGINS_ROOT, "flash_wrap_plugins") for p in PLUGINS_ROOT.rglob("*.py")}
    plugins = _graph(PLUGINS_ROOT, "flash_wrap_plugins", known)
    assert {"flash_wrap_plugins.latent_dps", "flash_wrap_plugins.psld", "flash_wrap_plugins.resample"} <= set(plugins)
    for module, deps in plugins.items():
        private = sorted(d for d in deps if any(part.startswith("_") for part in d.split(".")[1:]))
        siblings = sorted(d for d in deps if d.startswith("flash_wrap_plugins"))
        apps = sorted(d for d in deps if d.startswith("flash_wrap.apps"))
        assert (private, siblings, apps) == ([], [], []), module


def test_help_imports_neither_torch_nor_diffusers():
    import subprocess

    code = (
        "import sys\n"
        "from flash_wrap.apps.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'accelerate') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
