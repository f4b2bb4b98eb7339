"""Metrics, one module per family: classification, localization, retrieval, open-set classification.

Metrics know no tasks: each function takes arrays and returns numbers (percent unless noted).
"""

from cmg_eval.metrics.classification import classification, confusion_matrix, per_class
from cmg_eval.metrics.localization import clip_counts, localization, scores_from_counts
from cmg_eval.metrics.retrieval import chance_per_query, cosine_retrieval, per_query, summarize

__all__ = ["classification", "clip_counts", "confusion_matrix", "localization", "per_class", "scores_from_counts"]
__all__ += ["chance_per_query", "cosine_retrieval", "per_query", "summarize"]
