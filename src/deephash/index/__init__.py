"""Hamming-space index: exact k-NN and radius search over packed binary codes.

``HammingIndex`` picks an engine (linear scan or multi-index hashing) and persists to a
versioned, checksummed directory; see ``hamming_index`` and ``storage``. ``CategoryIndex``
(IAH) keeps one code per (image, category) and searches within a category.
"""

from .category import CategoryIndex
from .hamming_index import ENGINES, HammingIndex, index_from_codes

__all__ = ["ENGINES", "CategoryIndex", "HammingIndex", "index_from_codes"]
