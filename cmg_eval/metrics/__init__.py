"""Metrics, one module per family: classification, localization, retrieval.

Metrics know no tasks: each function takes arrays and returns numbers (percent unless noted).
"""

from cmg_eval.metrics.classification import classification, confusion_matrix, per_class

__all__ = ["classification", "confusion_matrix", "per_class"]
