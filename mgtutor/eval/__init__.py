"""mgtutor.eval: the challenge's F1, detection-mAP, and turning per-query outputs into detections."""

from mgtutor.eval.miga_f1 import F1Result, SequenceCounts, correct_detections, miga_f1, miga_overlap

__all__ = ["F1Result", "SequenceCounts", "correct_detections", "miga_f1", "miga_overlap"]
