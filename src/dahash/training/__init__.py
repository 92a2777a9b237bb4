"""Training: optimiser with per-layer multipliers, schedule and the resumable loop."""

from dahash.training.optim import log_spaced_lr, make_sgd, parameter_groups, set_lr
from dahash.training.trainer import load_model, train_model

__all__ = ["load_model", "log_spaced_lr", "make_sgd", "parameter_groups", "set_lr", "train_model"]
