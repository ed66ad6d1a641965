"""mgtutor.train"""
from mgtutor.train.losses import SetCriterion, auxiliary_layers, dense_targets  # noqa: F401
from mgtutor.train.matching import hungarian_match, match_batch, matching_cost  # noqa: F401
from mgtutor.train.engine import NonFiniteLossError, Trainer, build_trainer, train  # noqa: F401
