"""Prediction files (mgtutor.eval.prediction_files): they look like ground truth, so they never replace a
file a prediction run did not write, and a broken predictions.json is named, not a traceback."""

from __future__ import annotations

import json

import pytest

from mgtutor.data.errors import DataError
from mgtutor.data.synthetic import write_synthetic
from mgtutor.eval.postprocess import Detection
from mgtutor.eval.prediction_files import PREDICTIONS_JSON, check_prediction_folder, prediction_info, read_predictions, write_predictions

FOUND = {1: [Detection(3, 10, 20, 0.9), Detection(5, 30, 41, 0.4)], 2: []}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("files") / "smg", sequences=2, seconds=5, size=32, seed=0, workers=1)


def test_round_trip_and_update(tmp_path):
    out = write_predictions(tmp_path / "pred", FOUND, {"score_threshold": 0.3, "nms_iou": None}, {"split": "test"})
    assert read_predictions(out) == FOUND and (out / "Sample0002_finelabels.csv").read_text() == ""
    assert prediction_info(out) == {"format": 1, "postprocessing": {"score_threshold": 0.3, "nms_iou": None}, "split": "test"}
    # a second run into the folder replaces the first: its files of other sequences are removed
    write_predictions(out, {3: [Detection(1, 0, 4, 0.5)]})
    assert sorted(p.name for p in out.iterdir()) == ["Sample0003_finelabels.csv", PREDICTIONS_JSON]
    assert list(json.loads((out / PREDICTIONS_JSON).read_text())["sequences"]) == ["Sample0003"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("Sample0001", "Sample0001_finelabels.csv: was not written by a prediction run (ground truth?)"),
        (".", "holds sequence folders (Sample0001/...): it is an SMG root, not a predictions folder"),
    ],
    ids=["a sequence folder", "a root"],
)
def test_ground_truth_is_never_replaced(root, where, message):
    folder = root / where
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for target in (folder, folder / "predictions_elsewhere" / ".."):
        with pytest.raises(DataError) as err:
            write_predictions(target, FOUND)
        assert message in str(err.value)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_label_files_of_unknown_origin_are_never_replaced(tmp_path):
    out = write_predictions(tmp_path / "pred", FOUND)
    (out / "Sample0007_finelabels.csv").write_text("1,2,3\n")  # put there by hand: not listed in predictions.json
    with pytest.raises(DataError, match="Sample0007_finelabels.csv: was not written by a prediction run"):
        write_predictions(out, FOUND)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "Sample0001_finelabels.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match="Sample0001_finelabels.csv: was not written by a prediction run"):
        check_prediction_folder(tmp_path / "labels")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="a_file exists and is not a folder"):
        write_predictions(tmp_path / "a_file", FOUND)


def test_a_killed_run_leaves_a_folder_of_known_files(tmp_path, monkeypatch):
    out = write_predictions(tmp_path / "pred", FOUND)
    import mgtutor.eval.prediction_files as files

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "write_labels", killed)  # killed after predictions.json, before the label files
    with pytest.raises(KeyboardInterrupt):
        write_predictions(out, {4: [Detection(2, 1, 5, 0.7)]})
    monkeypatch.undo()
    listed = json.loads((out / PREDICTIONS_JSON).read_text())["sequences"]
    assert set(listed) >= {p.name.split("_")[0] for p in out.glob("Sample*_finelabels.csv")}
    write_predictions(out, {4: [Detection(2, 1, 5, 0.7)]})  # so the next run may replace them all
    assert sorted(read_predictions(out)) == [4]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "predictions.json: not valid JSON"),
        ("[1, 2]", 'expected an object with "format": 1 and "sequences"'),
        (json.dumps({"format": 2, "sequences": {}}), 'expected an object with "format": 1'),
        (json.dumps({"format": 1, "sequences": {"Sample0001": {}}}), "must map SampleXXXX names to lists of detections"),
        (json.dumps({"format": 1, "sequences": {"sample1": []}}), "found 'sample1'"),
        (json.dumps({"format": 1, "sequences": {"Sample0001": [{"label": 3, "start": 10, "end": 20}]}}), "Sample0001 detection 0: expected"),
        (json.dumps({"format": 1, "sequences": {"Sample0001": [{"label": 3, "start": 10, "end": 20, "score": "high"}]}}), "detection 0"),
        (json.dumps({"format": 1, "sequences": {"Sample0001": [{"label": 3, "start": 10, "end": 20, "score": None}]}}), "detection 0"),
    ],
)
def test_a_broken_predictions_json_is_named(tmp_path, document, message):
    (tmp_path / "Sample0001_finelabels.csv").write_text("3,10,20\n")
    (tmp_path / PREDICTIONS_JSON).write_text(document)
    for read in (read_predictions, prediction_info, check_prediction_folder):
        with pytest.raises(DataError) as err:
            read(tmp_path)
        assert str(err.value).startswith(str(tmp_path / PREDICTIONS_JSON)) and message in str(err.value)
