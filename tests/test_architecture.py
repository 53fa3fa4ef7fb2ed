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
