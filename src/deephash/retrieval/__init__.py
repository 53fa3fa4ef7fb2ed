"""The retrieval layer: one object per searchable image collection (``ImageIndex``), opened from an index
folder by ``open_index`` or built from a trained model and a dataset, answering ``encode``, ``add``,
``remove`` and ``search`` (by images, codes or ids; semantic or IAH category mode) with result dataclasses.
The CLI and the HTTP service are thin shells over it.
"""

from .image_index import AddResult, ImageIndex, open_index, update_index
from .results import CategoryQuery, QueryResult, SearchResult


def __getattr__(name):  # the encoder needs torch: imported on first use, so searching by codes never loads it
    if name in ("Encoder", "Encoded"):
        from . import encoder

        return getattr(encoder, name) if name == "Encoder" else encoder.Encoded
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AddResult", "CategoryQuery", "Encoded", "Encoder", "ImageIndex", "QueryResult", "SearchResult",
           "open_index", "update_index"]
