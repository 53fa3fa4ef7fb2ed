"""Hamming-space index: exact k-NN and radius search over packed binary codes.

``HammingIndex`` owns codes, ids and metadata, persists them to a versioned, checksummed directory
(``storage``) and answers FAISS-shaped queries through an engine (``engines``: one ``IndexEngine``
interface, a registry by name, so a new engine plugs in without touching the index). ``auto`` picks
the scan for small indexes and multi-index hashing for large ones. Searches read an immutable
snapshot, so one index serves many searching threads while one thread writes. ``CategoryIndex``
(IAH) keeps one code per (image, category) and searches batches of queries, each within a category.
"""

from .category import CategoryIndex
from .engines import IndexEngine, create_engine, list_engines, register_engine
from .hamming_index import ENGINES, HammingIndex, index_from_codes

__all__ = ["ENGINES", "CategoryIndex", "HammingIndex", "IndexEngine", "create_engine", "index_from_codes",
           "list_engines", "register_engine"]
