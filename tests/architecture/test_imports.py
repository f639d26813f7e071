"""The house stays as built: import directions between packages, and no import cycles.

``runtime/`` is cut into subpackages stacked in :data:`LAYERS` (lowest first); a module
imports only from its own subpackage and those below it (so ``intake`` never imports
``service``). ``runtime.config`` is the foundation every layer reads; it composes the
pure ``settings`` modules of the subpackages and nothing else of runtime. ``detectors``
and ``strategies`` never import ``runtime`` nor each other. Nothing outside
``runtime.cli`` imports it: the CLI is reached only through its entry point
(``driftloop = runtime.cli.main:main`` in pyproject.toml). Relative imports are resolved,
and imports inside functions count, so neither hides an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = [
    "store", "intake", "monitoring", "promotion", "handoff", "training", "replay", "review",
    "service",
]
"""runtime's subpackages, lowest first; the daemon sits above them and the CLI on top."""
TOP = {"config": -1, "daemon": len(LAYERS), "cli": len(LAYERS) + 1}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


FIRST_PARTY = ("runtime", "detectors", "strategies")


def _modules() -> dict[str, Path]:
    found = {}
    for package in FIRST_PARTY:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, lazy: bool = True) -> set[str]:
    """Every import of a first-party module in ``path``, relative ones resolved to their
    absolute name (``lazy``: those inside functions too)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree) if lazy else tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(path, node.level, node.module)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] in FIRST_PARTY}


def _absolute(path: Path, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``path``."""
    if level == 0:
        return module or ""
    package = path.relative_to(ROOT).parent.parts
    parts = list(package[: len(package) - (level - 1)])
    return ".".join([*parts, module] if module else parts)


MODULES = _modules()
GRAPH = {name: {n for n in _imports(path) if n in MODULES} for name, path in MODULES.items()}


def _rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2:
        return -2  # the runtime package itself
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else TOP[parts[1]]


def test_every_runtime_subpackage_has_a_layer() -> None:
    subpackages = {p.name for p in (ROOT / "runtime").iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(LAYERS) | {"cli"}


def test_top_level_of_runtime_holds_only_config_and_daemon() -> None:
    files = sorted(p.name for p in (ROOT / "runtime").glob("*.py"))
    assert files == ["__init__.py", "config.py", "daemon.py"]


def test_readme_tree_lists_every_subpackage() -> None:
    """README.md's "Where things are" has a line for each runtime subpackage (and only
    those that exist), so the map a newcomer reads is the tree."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Where things are", 1)[1].split("```")[1]
    listed = {line.split()[0].rstrip("/") for line in block.splitlines()
              if line.startswith("  ") and line.split()[0].endswith("/")}
    subpackages = {p.name for p in (ROOT / "runtime").iterdir() if (p / "__init__.py").is_file()}
    assert listed == subpackages


def test_every_subpackage_says_what_lives_there() -> None:
    for package in [*LAYERS, "cli"]:
        doc = ast.get_docstring(ast.parse((ROOT / "runtime" / package / "__init__.py").read_text()))
        assert doc and len(doc) > 40, package


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("runtime.")))
def test_runtime_imports_point_down(module: str) -> None:
    own = _rank(module)
    for target in GRAPH[module]:
        if target.startswith(("detectors", "strategies")) or target == "runtime":
            continue
        if module == "runtime.config":
            assert target.endswith(".settings") or target == "runtime.promotion.metrics", (
                f"runtime.config imports {target}: it may compose settings modules only"
            )
            continue
        if target == "runtime.config":
            continue
        assert _rank(target) <= own, f"{module} imports {target}, a layer above it"
        assert not target.startswith("runtime.cli") or module.startswith("runtime.cli"), (
            f"{module} imports the CLI"
        )


@pytest.mark.parametrize("package", ["detectors", "strategies"])
def test_engines_never_import_runtime_nor_each_other(package: str) -> None:
    other = {"detectors": "strategies", "strategies": "detectors"}[package]
    for module, targets in GRAPH.items():
        if module.split(".")[0] != package:
            continue
        for target in targets:
            assert not target.startswith(("runtime", other)), f"{module} imports {target}"


def test_intake_never_imports_the_service() -> None:
    """Sources and ingest know nothing of the HTTP server: the service hands rows in."""
    for module, targets in GRAPH.items():
        if module.startswith("runtime.intake"):
            bad = {t for t in targets if t.startswith("runtime.service")}
            assert not bad, f"{module} imports {sorted(bad)}"


def _cli_importers(paths: dict[str, Path]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, path in paths.items()
        if not name.startswith("runtime.cli")
        for target in _imports(path)
        if target == "runtime.cli" or target.startswith("runtime.cli.")
    )


def test_nothing_imports_the_cli() -> None:
    """The CLI is the top: no module of runtime, detectors, strategies or bench/ imports
    it (its entry point is pyproject.toml's, which the test checks names it)."""
    benches = {f"bench.{p.stem}": p for p in (ROOT / "bench").glob("*.py")}
    assert _cli_importers({**MODULES, **benches}) == []
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'driftloop = "runtime.cli.main:main"' in pyproject


def test_the_import_checks_see_relative_and_lazy_imports() -> None:
    """The graph resolves ``from .x import y`` and counts imports inside functions."""
    here = ROOT / "runtime" / "intake" / "ingest.py"
    assert _absolute(here, 1, "sources") == "runtime.intake.sources"
    assert _absolute(here, 2, "store.db") == "runtime.store.db"
    assert _absolute(here, 1, None) == "runtime.intake"
    assert "runtime.cli.progress" in GRAPH["runtime.cli.loop"]  # imported in a function


def test_settings_modules_import_no_engine_of_runtime() -> None:
    """What runtime.config composes is pure pydantic: no torch, numpy, broker client."""
    for module, targets in GRAPH.items():
        if module.startswith("runtime.") and module.endswith(".settings"):
            assert targets <= {"runtime.promotion.metrics"}, (module, targets)


def test_no_import_cycles() -> None:
    """Module-level cycles, lazy imports counted (they hide the same knot)."""
    graph = {m: {t for t in ts if t != m and t not in _packages_of(m)} for m, ts in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def _packages_of(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


RIVER_ALLOWED = {"detectors.river_adapter", "runtime.intake.demo_stream"}


def test_river_is_imported_in_two_places() -> None:
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            if any(n.split(".")[0] == "river" for n in names):
                assert module in RIVER_ALLOWED, f"{module} imports river"


def test_ingest_path_never_loads_the_demo_generator() -> None:
    """Everything ingest loads on import, transitively, without the demo's generator (a
    source kind is imported lazily, only when a config names it)."""
    eager = {m: {t for t in _imports(p, lazy=False) if t in MODULES} for m, p in MODULES.items()}
    seen: set[str] = set()
    todo = ["runtime.intake.ingest", "runtime.intake.sources", "runtime.intake.directory_source"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(eager[module])
    assert "runtime.intake.demo_stream" not in seen
