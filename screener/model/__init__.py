"""Barrier models: the BarrierModel interface, shipped checkpoints and their scores."""

from screener.model.base import BarrierModel, available_models, load_model
from screener.model.metrics import bootstrap_accuracy_ci, score

__all__ = ["BarrierModel", "available_models", "load_model", "score", "bootstrap_accuracy_ci"]
