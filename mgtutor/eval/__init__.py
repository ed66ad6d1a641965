"""mgtutor.eval: the challenge's F1, detection-mAP, and turning per-query outputs into detections."""

from mgtutor.eval.detection_map import DEFAULT_THRESHOLDS, MapResult, average_precision, detection_map
from mgtutor.eval.miga_f1 import F1Result, SequenceCounts, correct_detections, miga_f1, miga_overlap

__all__ = [
    "DEFAULT_THRESHOLDS",
    "F1Result",
    "MapResult",
    "SequenceCounts",
    "average_precision",
    "correct_detections",
    "detection_map",
    "miga_f1",
    "miga_overlap",
]
