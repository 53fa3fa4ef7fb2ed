"""The retrieval layer: one object per searchable image collection (``ImageIndex``), opened from an index
folder by ``open_index`` or built from a trained model and a dataset, answering ``encode``, ``add``,
``remove`` and ``search`` (by images, codes or ids; semantic or IAH category mode) with result dataclasses.
The CLI and the HTTP service are thin shells over it.
"""

from .encoder import Encoded, Encoder
from .image_index import AddResult, ImageIndex, open_index, update_index
from .results import CategoryQuery, QueryResult, SearchResult

__all__ = ["AddResult", "CategoryQuery", "Encoded", "Encoder", "ImageIndex", "QueryResult", "SearchResult",
           "open_index", "update_index"]
