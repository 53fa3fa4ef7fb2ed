"""The one check of search arguments. ``ImageIndex.search`` (so the CLI and scripts) runs it, and the HTTP
service runs it before a query waits in a micro-batch, so a bad request is refused alone and every entry
point refuses the same arguments with the same words. Limits a server adds (``max_k``, ``max_rerank``) only
narrow the ranges."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError

MODES = ("semantic", "category")
QUERY_KINDS = ("images", "codes", "ids")


def check_search_args(query: str, k=10, radius=None, mode: str = "semantic", rerank=None, *,
                      keeps_features: bool, has_category: bool, max_k: int | None = None,
                      max_rerank: int | None = None) -> None:
    """Raise ``InvalidInputError`` unless a ``query`` ("images", "codes" or "ids") with these settings can be
    searched in an index that keeps features (``keeps_features``) and category codes (``has_category``) as
    given."""
    if query not in QUERY_KINDS:
        raise InvalidInputError(f"query must be one of {', '.join(QUERY_KINDS)}, got {query!r}")
    if mode not in MODES:
        raise InvalidInputError(f"mode must be semantic or category, got {mode!r}")
    if radius is not None and (not _is_int(radius) or radius < 0):
        raise InvalidInputError(f"radius must be a non-negative integer, got {radius!r}")
    if radius is None:
        if max_k is not None and not (_is_int(k) and 1 <= k <= max_k):
            raise InvalidInputError(f"k must be 1 to {max_k}, got {k}")
        if not _is_int(k) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    if rerank is not None:
        if max_rerank is not None and not (_is_int(rerank) and 1 <= rerank <= max_rerank):
            raise InvalidInputError(f"rerank must be 1 to {max_rerank}, got {rerank}")
        if not _is_int(rerank) or rerank < 1:
            raise InvalidInputError(f"rerank must be a positive integer (candidates per result), got {rerank!r}")
        if mode != "semantic":
            raise InvalidInputError("rerank re-orders a semantic search; category mode does not take it")
        if not keeps_features:
            raise InvalidInputError("this index keeps no feature vectors to re-rank by: build it with features "
                                    "(deephash index build --features)")
        if query == "codes":
            raise InvalidInputError("rerank needs query images or ids of indexed images: a code has no features")
    if mode == "category":
        if not has_category:
            raise InvalidInputError("category mode needs an IAH index (this one holds no category-aware codes)")
        if radius is not None:
            raise InvalidInputError("category mode searches the k nearest per category; radius search is semantic only")
        if query == "codes":
            raise InvalidInputError("category mode takes query images or ids of indexed images, not codes")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
