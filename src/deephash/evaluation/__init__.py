"""Evaluation of Hamming ranking: mAP, precision, NDCG, ... each deterministic and tie-aware."""

from .suite import mean_average_precision

__all__ = ["mean_average_precision"]
