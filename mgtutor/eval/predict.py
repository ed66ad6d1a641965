"""The names this module held before it was split by concept, each served from where it now lives.

- :mod:`mgtutor.eval.inference`: ``load_model``, ``last_layer``, ``prediction_windows``, ``predict_sequences``;
- :mod:`mgtutor.eval.prediction_files`: ``write_predictions``, ``read_predictions``, ``prediction_info``,
  ``check_prediction_folder``;
- :mod:`mgtutor.eval.postprocess`: ``apply_postprocessing``, ``postprocessing_settings``;
- :mod:`mgtutor.eval.pipeline`: ``evaluate_split`` and everything else (``choose_postprocessing``,
  ``ground_truth``, ``evaluate_predictions``, ``format_figures``, ``make_evaluator``, ``class_names``).

New code imports from those modules; ``from mgtutor.eval.predict import X`` keeps working.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "mgtutor.eval.inference": ("Predictions", "last_layer", "load_model", "predict_sequences", "prediction_windows"),
    "mgtutor.eval.prediction_files": ("PREDICTIONS_JSON", "check_prediction_folder", "prediction_info", "read_predictions", "write_predictions"),
    "mgtutor.eval.postprocess": ("apply_postprocessing", "postprocessing_settings"),
    "mgtutor.eval.pipeline": (
        "Postprocessing", "choose_postprocessing", "class_names", "evaluate_predictions", "evaluate_split",
        "format_figures", "ground_truth", "make_evaluator", "resolve_postprocessing",
    ),
}  # fmt: skip
_HOME = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
