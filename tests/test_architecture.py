"""Rules of the package's structure that a reviewer would otherwise have to remember, checked on the source."""

import ast
from pathlib import Path

import deephash

SRC = Path(deephash.__file__).parent


def _image_index_privates(src: Path) -> set[str]:
    """The private members of ``ImageIndex``: its ``_methods`` and ``self._attributes``."""
    tree = ast.parse((src / "retrieval" / "image_index.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ImageIndex")
    names = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("_") and not node.name.startswith("__"):
            names.add(node.name)
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            names.add(node.attr)
    return names


def _image_index_leaks(src: Path) -> list[str]:
    """Places outside ``retrieval/`` that reach into an ``ImageIndex``: its semantic ``HammingIndex``
    (``.semantic``) or a private member (``x._encoder``, ``getattr(x, "_encoder")``). ``models/`` and
    ``methods/`` are exempt from the ``.semantic`` rule only: there it is the IAH network's output field.
    ``_manifest`` (which ``ImageIndex`` reads of its ``HammingIndex``) is ``index/``'s own."""
    own_privates = _image_index_privates(src)
    leaks = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        if rel.startswith("retrieval/"):
            continue
        network = rel.startswith(("models/", "methods/"))
        private = own_privates if rel.startswith("index/") else own_privates | {"_manifest"}
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Attribute):
                own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                if (node.attr == "semantic" and not network) or (node.attr in private and not own):
                    leaks.append(f"{rel}:{node.lineno}: .{node.attr}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant) and node.args[1].value in private | {"semantic"}):
                leaks.append(f"{rel}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return leaks


def test_nothing_outside_retrieval_reaches_into_an_image_index():
    """Callers use ``ImageIndex``'s public API (ids, get_codes, get_metadata, item, nbytes, model_name,
    check_search, ...), so its parts can change behind it."""
    assert _image_index_privates(SRC) >= {"_encoder", "_checkpoint_path"}
    assert _image_index_leaks(SRC) == []


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:``: such imports never run (they name types for readers and
    type checkers), so they cannot make an import cycle."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _import_cycles(src: Path) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module) among deephash's modules,
    counting every import statement that can run (also inside functions) and that importing
    ``a.b.c`` first runs the package ``a.b``."""
    modules = {}
    for path in src.rglob("*.py"):
        parts = ("deephash", *path.relative_to(src).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        deps = set()
        for target in targets:
            while target.startswith("deephash.") and target not in modules:  # e.g. a name from a module
                target = target.rpartition(".")[0]
            parts = target.split(".")
            deps.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))  # the packages on the way too
        edges[name] = {d for d in deps if d in modules and d != name and not name.startswith(d + ".")}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_the_import_graph_has_no_cycle():
    """Every package builds on the ones below it. In particular ``deephash.runs`` (checkpoints, config, the method
    contract and registry, trained runs) is the floor of both the training engine and the method plug-ins, and the
    registry finds the plug-ins by a package scan, so neither imports the other's way back."""
    assert _import_cycles(SRC) == []
