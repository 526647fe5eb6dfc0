"""The package's structure: its modules import each other without cycles, and importing it leaves
the process environment alone.

The import graph (:func:`import_graph`) is read from the source with :mod:`ast`, nothing is imported.
Its nodes are the package's modules, a package being its ``__init__`` (``convexnn_pyomo.solvers``).
Every ``import`` / ``from ... import`` statement naming a ``convexnn_pyomo`` module counts, at module
level or inside a function, absolute or relative; each gives one edge per imported name:

* ``from P import n`` where ``P.n`` is a module (``from . import sweep``, ``from .. import baselines``)
  is an edge to ``P.n``; otherwise (``n`` a function, class, constant) to ``P`` itself, and when ``P``
  is a package that is an edge to the package: importing it runs its ``__init__``, which imports its
  children;
* ``import P.Q`` is an edge to ``P.Q``;
* **the one exception, re-exports**: a module reaching a name through a package it belongs to
  (``from .. import Network`` in ``convexnn_pyomo.solvers.base``, ``from . import X`` with ``X``
  re-exported by ``solvers/__init__``) does not depend on that package's ``__init__`` but on the
  sibling module the ``__init__`` took the name from (``from .network import Network``), so the edge
  goes to that sibling.  Otherwise every child importing anything through its parent would form a
  cycle with the parent's ``__init__`` that imports it, although no two real modules need each other.
  A name the ``__init__`` defines itself, and ``import convexnn_pyomo`` as a whole, stay edges to the
  ``__init__``.

A cycle in this graph is then two (or more) modules that need each other, whether the imports sit
at module level or are deferred into functions to dodge the import-order error: the test prints each
cycle with the import statements (file and line) that close it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import convexnn_pyomo

PACKAGE = "convexnn_pyomo"
ROOT = Path(convexnn_pyomo.__file__).resolve().parent


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}  ({self.path}:{self.line})"


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, a package named by its ``__init__``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((package, *parts))] = path
    return modules


def _is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def _imported_from(node: ast.ImportFrom, module: str, modules: dict[str, Path]) -> str:
    """The absolute name of the ``X`` in ``from X import ...`` written in ``module``."""
    if node.level == 0:
        return node.module or ""
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _raw_imports(module: str, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """Every import in ``module`` of a package module, as ``(target module, name or None, line)``:
    ``name`` is the imported name when it is not itself a module."""
    tree = ast.parse(modules[module].read_text(), filename=str(modules[module]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom):
            source = _imported_from(node, module, modules)
            if source not in modules:
                continue  # a third-party module, or __future__
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append((sub, None, node.lineno) if sub in modules else (source, alias.name, node.lineno))
    return found


def _reexport_source(package: str, name: str, modules: dict[str, Path], seen: frozenset = frozenset()) -> str:
    """The module ``package``'s ``__init__`` takes ``name`` from (``package`` when it defines it)."""
    for target, imported, _ in _raw_imports(package, modules):
        if imported == name and target.startswith(package + ".") and target not in seen:
            if _is_package(target, modules):  # re-exported in turn from a subpackage's child
                return _reexport_source(target, name, modules, seen | {package})
            return target
        if imported is None and target.rpartition(".")[2] == name and target.startswith(package + "."):
            return target
    return package


def import_graph(modules: dict[str, Path] | None = None, root: Path = ROOT) -> list[Edge]:
    """The edges of the import graph of the package at ``root``, by the rules of this file's docstring."""
    modules = package_modules() if modules is None else modules
    edges = set()
    for module, path in modules.items():
        for target, name, line in _raw_imports(module, modules):
            ancestor = module.startswith(target + ".")
            if ancestor and name is not None:
                target = _reexport_source(target, name, modules)
            if target != module:
                edges.add(Edge(module, target, str(path.relative_to(root.parent)), line))
    return sorted(edges, key=lambda e: (e.source, e.target, e.line))


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle through each strongly connected component of more than one module (Tarjan), as the
    list of edges that close it."""
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e)
        graph.setdefault(e.target, [])
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def strongconnect(v):  # recursion depth <= number of modules (~50)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in graph[v]:
            if e.target not in index:
                strongconnect(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in on_stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: set[str], graph: dict[str, list[Edge]]) -> list[Edge]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    start = min(component)
    previous: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for e in graph[v]:
                if e.target not in component:
                    continue
                if e.target == start:
                    path = [e]
                    while path[0].source != start:
                        path.insert(0, previous[path[0].source])
                    return path
                if e.target not in previous:
                    previous[e.target] = e
                    following.append(e.target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in its component")  # pragma: no cover


def describe(cycle: list[Edge]) -> str:
    modules = [e.source for e in cycle] + [cycle[0].source]
    return " -> ".join(m.removeprefix(PACKAGE + ".") for m in modules) + "\n" + "\n".join(f"    {e}" for e in cycle)


def test_the_import_graph_has_no_cycle():
    edges = import_graph()
    assert any(e.source == f"{PACKAGE}.network" for e in edges), "the graph reader found no import in network.py"
    cycles = find_cycles(edges)
    report = "\n".join(describe(c) for c in cycles)
    print(report)
    assert not cycles, f"import cycles between modules that need each other:\n{report}"


def test_the_graph_reader_on_a_made_up_package(tmp_path):
    """The rules of the module docstring on a small package: re-exports through a parent are not
    cycles, a deferred import inside a function is, and so is one through another package."""
    files = {
        "__init__.py": "from .a import A\nfrom .sub import helper\n",
        "a.py": "from . import b\nA = 1\n",
        "b.py": "from . import A  # A comes from a: a real cycle a <-> b\n",
        "c.py": "import pkg.sub.d\n",
        "sub/__init__.py": "from .d import helper\nfrom .e import E\n",
        "sub/d.py": "def helper():\n    from ..c import x  # deferred, still a cycle c <-> sub.d\n",
        "sub/e.py": "from . import helper  # re-exported by sub/__init__ from d: no cycle with sub\nE = 2\n",
        "f.py": "from .sub import E\n",
        "sub/g.py": "from ..f import y  # f imports the package sub, whose __init__ does not import g\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    root = tmp_path / "pkg"
    modules = package_modules(root, "pkg")
    assert set(modules) == {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.f", "pkg.sub", "pkg.sub.d", "pkg.sub.e", "pkg.sub.g"}
    edges = {(e.source, e.target) for e in import_graph(modules, root)}
    assert ("pkg.b", "pkg.a") in edges and ("pkg.sub.e", "pkg.sub.d") in edges and ("pkg.f", "pkg.sub") in edges
    assert ("pkg.sub.e", "pkg.sub") not in edges and ("pkg.b", "pkg") not in edges
    cycles = {frozenset(e.source for e in c) for c in find_cycles([Edge(s, t, "", 0) for s, t in edges])}
    assert cycles == {frozenset({"pkg.a", "pkg.b"}), frozenset({"pkg.c", "pkg.sub.d"})}


def test_importing_the_package_leaves_the_environment_alone():
    """``import convexnn_pyomo`` (and everything it imports: Pyomo, CasADi, the solver plugins) must
    not set or change environment variables: thread counts are the caller's business
    (:func:`convexnn_pyomo.threads.blas_threads`)."""
    code = (
        "import json, os\n"
        "before = dict(os.environ)\n"
        "import convexnn_pyomo\n"
        "after = dict(os.environ)\n"
        "print(json.dumps({k: [before.get(k), after.get(k)] for k in before.keys() | after.keys()"
        " if before.get(k) != after.get(k)}))\n"
    )
    # without the thread variables, which the package used to set (with setdefault): this process
    # may have them, and a setdefault under them would go unnoticed
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300, env=env)
    changed = json.loads(out.stdout.strip().splitlines()[-1])
    assert changed == {}, f"importing convexnn_pyomo changed os.environ ([before, after]): {changed}"


def test_importing_the_package_loads_no_data_frame_or_numba_stack():
    """Every MPI rank of a sharded round imports the package: pandas, scipy, numba and torch are
    imported where they are used (a history built, a conic solve, the structured round, a
    baseline), not by ``import convexnn_pyomo`` (pandas and scipy were 96 MB and 0.8 s of every
    process, ``benchmarks/process_memory.py``)."""
    heavy = ["pandas", "scipy", "numba", "torch", "sklearn", "matplotlib"]
    code = f"import sys, json, convexnn_pyomo\nprint(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_kernels_import_numba_without_pyomos_scipy_hook():
    """numba imports scipy; after Pyomo, Pyomo's deferred-import hook would add scipy.stats, sparse,
    spatial and integrate (58 MB, ``solvers/jit.py``).  The kernels' import leaves them
    out and puts Pyomo's callbacks back as they were, so Pyomo's own deferred ``scipy`` still loads
    them when Pyomo asks for it."""
    code = ("import sys, json, convexnn_pyomo\n"
            "from pyomo.common.dependencies import DeferredImportCallbackFinder as F\n"
            "hooks, held = list(sys.meta_path), F._callbacks.get('scipy')\n"
            "import convexnn_pyomo.solvers.schur_ipm\n"
            "before = [m in sys.modules for m in ('numba', 'scipy', 'scipy.stats', 'scipy.sparse')]\n"
            "kept = [sys.meta_path == hooks, held is not None and F._callbacks.get('scipy') is held]\n"
            "from pyomo.common.dependencies import scipy_available\n"
            "after = [bool(scipy_available), 'scipy.stats' in sys.modules, 'scipy.sparse' in sys.modules]\n"
            "print(json.dumps([before, kept, after]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    before, kept, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == [True, True, False, False]
    assert kept == [True, True]
    assert after == [True, True, True]
