"""The package layout holds: no import cycle, pipeline never imports tracker, tracker's
database and recording infrastructure never imports the feature extractor, no module
grows past the size a reader takes in at once, and every third-party import is a
declared dependency.

The import graph is read from the source (``ast``), counting function-level (lazy)
imports too, so a cycle hidden inside a function is still a cycle.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "tracker")
#: the size a module may reach (the layout issue: "no module over about 500 lines")
MAX_MODULE_LINES = 520
#: tracker rooms that must work without the feature extractor (and so TensorFlow)
INFRASTRUCTURE = ("tracker.db", "tracker.analysis", "tracker.figures", "tracker.record.spool",
                  "tracker.record.runs", "tracker.record.provenance")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module path named by an import statement in ``path`` (with its line)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for module, _ in _imports(name, path):
            # an import of a.b.c also runs a and a.b: depend on the deepest known module
            while module and module not in mods:
                module = module.rpartition(".")[0]
            if module and module != name and not name.startswith(module + "."):
                targets.add(module)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_pipeline_never_imports_tracker():
    bad = [f"{name} line {line}: {module}" for name, path in _modules().items()
           if name.startswith("pipeline") for module, line in _imports(name, path)
           if module == "tracker" or module.startswith("tracker.")]
    assert bad == []


def test_tracker_infrastructure_never_imports_the_feature_extractor():
    bad = [f"{name} line {line}: {module}" for name, path in _modules().items()
           if name.startswith(INFRASTRUCTURE) for module, line in _imports(name, path)
           if module.startswith("pipeline.features")]
    assert bad == []


def test_only_the_model_modules_import_tensorflow_or_keras():
    allowed = re.compile(r"^pipeline\.features\.")
    users = sorted({name for name, path in _modules().items() for module, _ in _imports(name, path)
                    if module.split(".")[0] in ("tensorflow", "keras")})
    assert users, "the feature extractor must import TensorFlow somewhere"
    assert [u for u in users if not allowed.match(u)] == []


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES} == {}


TF_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu"}


def _declared() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for spec in meta["dependencies"]:
        names.add(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-"))
    for extra in ("parquet", "jax", "torch"):  # optional: imported only when asked for
        for spec in meta["optional-dependencies"].get(extra, []):
            names.add(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower())
    return names


def test_every_third_party_import_is_a_declared_dependency():
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    declared = _declared()
    missing = {}
    for name, path in _modules().items():
        for module, line in _imports(name, path):
            top = module.split(".")[0]
            if not top or top in stdlib or top in PACKAGES or top == "__future__":
                continue
            providers = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
            # the declared `tensorflow` may be provided by an older tensorflow-cpu install
            tf_ok = top == "tensorflow" and "tensorflow" in declared and providers <= TF_DISTRIBUTIONS
            if not providers & declared and not tf_ok:
                missing.setdefault(top, f"{name} line {line}")
    assert missing == {}


def test_requires_python_matches_the_code():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", meta["requires-python"]).groups())
    uses_tomllib = any("tomllib" in {m.split(".")[0] for m, _ in _imports(n, p)}
                       for n, p in _modules().items())
    if uses_tomllib:
        assert floor >= (3, 11)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_package_says_what_it_holds(pkg):
    undocumented = [str(p.relative_to(ROOT)) for p in (ROOT / pkg).rglob("__init__.py")
                    if not ast.get_docstring(ast.parse(p.read_text()))]
    assert undocumented == []
