"""Search engines behind ``HammingIndex``: one interface (``IndexEngine``), a registry by name.

Built in: ``flat`` (exact scan), ``mih`` (multi-index hashing, exact), ``faiss-flat`` (exact) and
``faiss-ivf`` (approximate); ``milvus`` keeps the codes in a Milvus collection (server or Milvus Lite).

Engines are found, not listed: importing this package imports every module in it (``pkgutil``), and each
module registers its engines with ``@register_engine("name")``. Adding an engine is therefore one new file,
``engines/<name>.py``; it must import its optional dependencies (faiss, pymilvus) only when used, since
every index import loads it. ``list_engines()`` names them by ``IndexEngine.rank``, then registration.
"""

import importlib
import pkgutil

from .base import IndexEngine, SnapshotEngine, create_engine, engine_class, list_engines, register_engine


def _discover() -> None:
    """Import each engine module of this package once (registration happens at import)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_discover()

__all__ = ["IndexEngine", "SnapshotEngine", "create_engine", "engine_class", "list_engines", "register_engine"]
