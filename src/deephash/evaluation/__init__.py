"""Evaluation of Hamming ranking: mAP, precision, NDCG, ... each deterministic and tie-aware."""

from .suite import evaluate, mean_average_precision

__all__ = ["evaluate", "mean_average_precision"]
