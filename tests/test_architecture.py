"""The import graph of ``pyorder`` (with its HTTP server, ``pyorder.server``) and ``sandbox``
stays acyclic and layered.

Every module is parsed with ``ast`` (nothing is imported), and every import it holds counts:
at the top, inside functions (lazy imports) and under ``if TYPE_CHECKING:`` alike, since a
cycle hidden from the interpreter is still one for a reader. ``from a.b import c`` is an edge
to ``a.b.c`` when that is a module of ours, else to ``a.b``. A package's ``__init__`` is not
implied by importing one of its modules (as import-linter does not either): the edges are the
ones written down.

Our own checker rather than ``import-linter``: the rules are three short assertions, and the
failure lists every cycle with its modules in order, which is what one needs to fix it.
"""

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pyorder", "sandbox")
KERNEL = "pyorder.kernel"
SERVER = "pyorder.server"

Graph = dict[str, set[str]]


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of our packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        # A compiled module counts by its stub (``pyorder/_core.pyi``).
        for path in sorted([*(ROOT / package).rglob("*.py"), *(ROOT / package).rglob("*.pyi")]):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(
    node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]
) -> Iterator[str]:
    """The dotted names an import statement names (submodules as ``a.b.c``)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            keep = len(base) - node.level + (1 if is_package else 0)
            prefix = ".".join(base[:keep])
            target = f"{prefix}.{node.module}" if node.module else prefix
        else:
            target = node.module or ""
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            yield submodule if submodule in modules else target


@functools.cache
def import_graph() -> Graph:
    """Module -> the modules of ours it imports (parsed once per run; read, never changed)."""
    modules = _modules()
    graph: Graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            for target in _imported(node, name, is_package, modules):
                if target in modules and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        # Recursion is deep enough for our few hundred modules.
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
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path(graph: Graph, component: list[str]) -> list[str]:
    """One cycle through the component's first module, for the failure message."""
    members, start = set(component), component[0]
    seen: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(seen[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in seen:
                    seen[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_parser_sees_the_known_edges() -> None:
    graph = import_graph()
    assert "pyorder.kernel.signing" in graph["sandbox.webhooks"]
    assert "pyorder.orders.service" in graph["pyorder.payments.service"]
    assert "pyorder.storage.postgres" in graph["pyorder.platform"]  # a lazy import counts


def test_cycles_are_found_and_named() -> None:
    graph: Graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert _path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    found = [" -> ".join(_path(graph, c)) for c in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_kernel_imports_nothing_of_the_domain() -> None:
    graph = import_graph()
    wrong = {
        (module, target)
        for module, targets in graph.items()
        if _within(module, KERNEL)
        for target in targets
        if not _within(target, KERNEL)
    }
    assert not wrong, f"the kernel imports outside itself: {sorted(wrong)}"


def test_the_domain_imports_neither_the_server_nor_the_sandboxes() -> None:
    """The HTTP server is one way in, built on the domain: the domain never reaches back up."""
    graph = import_graph()
    wrong = {
        (module, target)
        for module, targets in graph.items()
        if _within(module, "pyorder") and not _within(module, SERVER)
        for target in targets
        if _within(target, SERVER) or _within(target, "sandbox")
    }
    assert not wrong, f"the domain imports the server or the sandboxes: {sorted(wrong)}"


def test_the_server_imports_no_sandbox() -> None:
    graph = import_graph()
    wrong = {
        (module, target)
        for module, targets in graph.items()
        if _within(module, SERVER)
        for target in targets
        if _within(target, "sandbox")
    }
    assert not wrong, f"the server imports a sandbox: {sorted(wrong)}"


def test_the_sandboxes_use_only_the_kernel_of_the_product() -> None:
    """The sandboxes stand in for outside providers: of pyorder they share only the kernel
    (the webhook signing scheme)."""
    graph = import_graph()
    wrong = {
        (module, target)
        for module, targets in graph.items()
        if _within(module, "sandbox")
        for target in targets
        if _within(target, "pyorder") and not _within(target, KERNEL)
    }
    assert not wrong, f"a sandbox imports the product: {sorted(wrong)}"
