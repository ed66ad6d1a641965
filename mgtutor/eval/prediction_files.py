"""Prediction files: what the challenge scores, written so that they never replace a file they did not write.

A predictions folder holds one ``SampleXXXX_finelabels.csv`` per sequence in SMG's label format
(``label,start,end``, 1-based labels, no header: what the challenge scores) and ``predictions.json``:
every detection with its score (detection-mAP ranks by it), the post-processing used and what the run
records about itself (split, subjects, configuration).

Predictions look exactly like ground truth, so a folder is written only when every label file in it
was written by a prediction run (listed in its ``predictions.json``): a sequence folder of an SMG root,
a root itself, or any folder holding label files of unknown origin is refused with the file named
(:func:`check_prediction_folder`), before any prediction is made.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mgtutor.data.errors import DataError
from mgtutor.data.smg import FILE_SUFFIXES, Gesture, parse_sample_name, read_labels, sample_name, write_labels
from mgtutor.eval.postprocess import Detection
from mgtutor.files import check_output_folder, write_atomic

PREDICTIONS_JSON = "predictions.json"
FORMAT = 1  # of predictions.json
LABELS = FILE_SUFFIXES["labels"]

Predictions = dict[int, list[Detection]]  # sample id -> detections, labels 1-based, original frames


def _labels_name(sample: int) -> str:
    return f"{sample_name(sample)}_{LABELS}"


def _read_document(folder: Path) -> dict[str, Any] | None:
    """``predictions.json`` of ``folder``, checked; None when there is none. A file that is not valid JSON
    or not laid out as :func:`write_predictions` writes it raises DataError saying what was expected."""
    path = folder / PREDICTIONS_JSON
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"not valid JSON ({err}); expected the predictions.json mgtutor predict writes") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("sequences"), dict):
        raise DataError(path, f'expected an object with "format": {FORMAT} and "sequences" (SampleXXXX -> detections), as mgtutor predict writes it')
    for name, rows in document["sequences"].items():
        parsed = parse_sample_name(name)
        if parsed is None or parsed.kind is not None or not isinstance(rows, list):
            raise DataError(path, f'"sequences" must map SampleXXXX names to lists of detections, found {name!r}: {type(rows).__name__}')
        for index, row in enumerate(rows):
            if not (isinstance(row, dict) and {"label", "start", "end", "score"} <= set(row)) or not all(
                isinstance(row[key], (int, float)) and not isinstance(row[key], bool) and math.isfinite(row[key])
                for key in ("label", "start", "end", "score")
            ):
                raise DataError(path, f'{name} detection {index}: expected {{"label", "start", "end", "score"}} numbers, found {row!r}')
    return document


def check_prediction_folder(out: str | Path) -> Path:
    """``out`` as a Path, when a prediction run may write there; else DataError naming the file that
    would be replaced (or the file that ``out`` is). Refused: a file; a folder holding ``SampleXXXX/``
    sequence folders (an SMG root); a folder holding any other ``SampleXXXX_*`` file of SMG's (a
    sequence folder: its ground truth); a label file not listed in the folder's ``predictions.json``.
    The path is resolved first (``..``, symbolic links), so no spelling of a refused folder is admitted."""
    out = check_output_folder(Path(out).resolve(), "the predictions")
    if not out.exists():
        return out
    document = _read_document(out)
    ours = {f"{name}_{LABELS}" for name in document["sequences"]} if document else set()
    named = [(path, parse_sample_name(path.name)) for path in sorted(out.iterdir())]
    named = [(path, parsed) for path, parsed in named if parsed is not None]
    for path, parsed in named:
        if parsed.kind == LABELS and path.name not in ours:
            raise DataError(path, "was not written by a prediction run (ground truth?), and predictions would replace it; choose another folder for the predictions")
    for path, parsed in named:
        if parsed.kind is None and path.is_dir():
            raise DataError(out, f"holds sequence folders ({path.name}/...): it is an SMG root, not a predictions folder; choose another folder for the predictions")
        if parsed.kind in FILE_SUFFIXES.values() and parsed.kind != LABELS:
            raise DataError(path, "belongs to a sequence of an SMG root (this folder holds its ground truth); choose another folder for the predictions")
    return out


def _detection_row(d: Detection) -> dict[str, float]:
    return {"label": d.label, "start": d.start, "end": d.end, "score": d.score}


def write_predictions(
    out_dir: str | Path,
    detections: Mapping[int, Sequence[Detection]],
    postprocessing: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write one ``SampleXXXX_finelabels.csv`` per sequence (an empty file when it has no detection) and
    ``predictions.json`` (scores, ``postprocessing`` as :meth:`mgtutor.eval.pipeline.Postprocessing.describe`
    gives it, and any ``info`` such as the split and the configuration); returns the folder.

    Only into a folder :func:`check_prediction_folder` admits. A folder written before by this function
    is updated: its label files of sequences not in ``detections`` are removed, so it always describes
    one run. ``predictions.json`` is written first and lists every label file, so a run killed half way
    leaves a folder whose files are all known to be predictions.
    """
    out = check_prediction_folder(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    listed = {sample_name(s): [_detection_row(d) for d in found] for s, found in sorted(detections.items())}
    stale = [name for name in ((_read_document(out) or {}).get("sequences", {})) if name not in listed]
    document = {
        "format": FORMAT,
        "postprocessing": dict(postprocessing) if postprocessing is not None else None,
        **dict(info or {}),
        "sequences": {**{name: [] for name in stale}, **listed},  # the old files stay listed until removed
    }
    write_atomic(out / PREDICTIONS_JSON, json.dumps(document, indent=1))
    for name in stale:
        (out / f"{name}_{LABELS}").unlink(missing_ok=True)
    for sample, found in sorted(detections.items()):
        write_labels(out / _labels_name(sample), [Gesture(d.label, int(d.start), int(d.end)) for d in found])
    if stale:
        document["sequences"] = listed
        write_atomic(out / PREDICTIONS_JSON, json.dumps(document, indent=1))
    return out


def prediction_info(pred_dir: str | Path) -> dict[str, Any]:
    """What ``predictions.json`` records besides the detections (post-processing, split, subjects,
    configuration); empty when the folder has no such file."""
    document = _read_document(Path(pred_dir))
    return {key: value for key, value in (document or {}).items() if key != "sequences"}


def read_predictions(pred_dir: str | Path) -> Predictions:
    """The detections of a predictions folder: sample id -> detections in file order.

    The label files are the truth (read with :func:`mgtutor.data.smg.read_labels`, so a malformed row is
    reported with its file and line). Scores come from ``predictions.json`` for each sequence whose rows
    there equal its label file's; otherwise (a hand-made or edited file) every score is 1.
    """
    folder = Path(pred_dir)
    if not folder.is_dir():
        raise DataError(folder, "no predictions folder here: expected a folder of SampleXXXX_finelabels.csv files (mgtutor predict writes one)")
    scored = (_read_document(folder) or {}).get("sequences", {})
    predictions: Predictions = {}
    for path in sorted(folder.iterdir()):
        parsed = parse_sample_name(path.name)
        if parsed is None or parsed.kind != LABELS:
            continue
        gestures = read_labels(path)
        rows = scored.get(sample_name(parsed.sample), [])
        same = len(rows) == len(gestures) and all((r["label"], r["start"], r["end"]) == (g.label, g.start, g.end) for r, g in zip(rows, gestures))
        scores = [float(r["score"]) for r in rows] if same else [1.0] * len(gestures)
        predictions[parsed.sample] = [Detection(g.label, g.start, g.end, s) for g, s in zip(gestures, scores)]
    return predictions
