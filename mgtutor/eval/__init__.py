"""mgtutor.eval: the challenge's F1, detection-mAP, turning per-query outputs into detections, and the
evaluation pipeline (:func:`~mgtutor.eval.pipeline.evaluate_split`) that every entry point calls."""

from mgtutor.eval.detection_map import DEFAULT_THRESHOLDS, MapResult, average_precision, detection_map
from mgtutor.eval.miga_f1 import (
    F1Result,
    SequenceCounts,
    correct_detections,
    credited_predictions,
    miga_f1,
    miga_f1_over_thresholds,
    miga_overlap,
)
from mgtutor.eval.postprocess import (
    Detection,
    Selection,
    WindowDetections,
    as_gestures,
    filter_detections,
    merge_windows,
    meta_to_frames,
    nms,
    query_detections,
    select_threshold,
    window_detections,
)
from mgtutor.eval.postprocess import apply_postprocessing
from mgtutor.eval.inference import load_model, predict_sequences
from mgtutor.eval.prediction_files import read_predictions, write_predictions
from mgtutor.eval.pipeline import Postprocessing, SplitEvaluation, choose_postprocessing, evaluate_predictions
from mgtutor.eval.pipeline import evaluate_folder, evaluate_split, make_evaluator, resolve_postprocessing
from mgtutor.eval.online import OnlineDetection, OnlineRecognizer, recognize_video

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Detection",
    "F1Result",
    "MapResult",
    "Selection",
    "SequenceCounts",
    "WindowDetections",
    "as_gestures",
    "average_precision",
    "correct_detections",
    "credited_predictions",
    "detection_map",
    "filter_detections",
    "merge_windows",
    "meta_to_frames",
    "miga_f1",
    "miga_f1_over_thresholds",
    "miga_overlap",
    "nms",
    "query_detections",
    "select_threshold",
    "window_detections",
    "apply_postprocessing", "load_model", "predict_sequences", "read_predictions", "write_predictions",
    "Postprocessing", "SplitEvaluation", "choose_postprocessing", "evaluate_predictions",
    "evaluate_folder", "evaluate_split", "make_evaluator", "resolve_postprocessing",
    "OnlineDetection", "OnlineRecognizer", "recognize_video",
]
