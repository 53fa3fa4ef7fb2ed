"""Search engines behind ``HammingIndex``: one interface (``IndexEngine``), a registry by name.

Built in: ``flat`` (exact scan), ``mih`` (multi-index hashing, exact), ``faiss-flat`` (exact) and
``faiss-ivf`` (approximate); ``milvus`` keeps the codes in a Milvus collection (server or Milvus Lite). Another engine (e.g. a remote collection) subclasses ``IndexEngine`` and
registers with ``@register_engine("name")``; HammingIndex then accepts ``engine="name"``.
"""

from .base import IndexEngine, SnapshotEngine, create_engine, engine_class, list_engines, register_engine
from .flat import FlatEngine  # registration order is the order list_engines() reports
from .mih import MIHEngine
from .faiss_binary import FaissFlatEngine, FaissIVFEngine
from .milvus import MilvusEngine  # imports pymilvus only when an index uses it

__all__ = ["FaissFlatEngine", "FaissIVFEngine", "FlatEngine", "IndexEngine", "MIHEngine", "MilvusEngine", "SnapshotEngine",
           "create_engine", "engine_class", "list_engines", "register_engine"]
