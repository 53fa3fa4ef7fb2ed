"""Evaluation of Hamming ranking: mAP, precision, NDCG, ... each deterministic and tie-aware."""

from .category import evaluate_category
from .files import evaluate_codes_files
from .report import format_table, write_report
from .suite import evaluate, mean_average_precision

__all__ = ["evaluate", "evaluate_category", "evaluate_codes_files", "format_table", "mean_average_precision", "write_report"]
