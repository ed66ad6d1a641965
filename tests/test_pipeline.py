"""The evaluation pipeline (mgtutor.eval.pipeline): the configured post-processing or one chosen on the
training or held-out validation subjects, the split's figures, the prediction files it writes, and the
same figures from those files."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mgtutor.config import ConfigError, EvalConfig, config_from_dict
from mgtutor.data.dataset import WindowDataset
from mgtutor.data.errors import DataError
from mgtutor.data.smg import load_root
from mgtutor.data.synthetic import write_synthetic
from mgtutor.eval import pipeline
from mgtutor.eval.inference import predict_sequences
from mgtutor.eval.pipeline import (
    config_for_root,
    evaluate_folder,
    evaluate_predictions,
    evaluate_split,
    ground_truth,
    make_evaluator,
    resolve_postprocessing,
)
from mgtutor.eval.postprocess import apply_postprocessing, select_threshold
from mgtutor.eval.prediction_files import prediction_info
from mgtutor.model.detector import Detector


def tiny_config(root, data=None, **eval_cfg):
    return config_from_dict({
        "data": {"root": str(root), "train_subjects": [1, 2, 3, 4], "test_subjects": [5], "window": 16, "short_side": 40,
                 "crop": 32, **(data or {})},
        "model": {"encoder": "small", "hidden": 32, "queries": 8, "points": 9, "layers": 2, "heads": 4, "ffn": 64,
                  "mix_dim": 8, "mamba_blocks": 1},
        "eval": eval_cfg,
    })  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Five short synthetic sequences (1-4 train, 5 test), a random detector whose queries start at
    different places, and its raw detections of every sequence."""
    root = write_synthetic(tmp_path_factory.mktemp("pipeline") / "smg", sequences=5, seconds=8, size=40, seed=4, workers=1)
    cfg = tiny_config(root)
    torch.manual_seed(0)
    model = Detector(cfg.model).eval()
    with torch.no_grad():
        low = torch.rand(cfg.model.queries, 1) * 0.9
        model.query_points.weight.copy_(low + torch.rand(cfg.model.queries, cfg.model.points) * 0.3)
    raw = predict_sequences(model, load_root(root), cfg, "cpu")
    return root, model, raw


@pytest.fixture
def predicted(monkeypatch):
    """The sample ids of every predict_sequences call the pipeline makes."""
    calls = []
    original = pipeline.predict_sequences

    def spy(model, sequences, *args, **kwargs):
        calls.append([seq.sample for seq in sequences])
        return original(model, sequences, *args, **kwargs)

    monkeypatch.setattr(pipeline, "predict_sequences", spy)
    return calls


def test_a_configured_threshold_is_used_as_it_is(setup, predicted):
    root, model, raw = setup
    cfg = tiny_config(root, score_threshold=0.2, nms_iou=0.5)
    result = evaluate_split(model, cfg, "test")
    assert predicted == [[5]]  # nothing is chosen, so only the test split is predicted
    assert (result.postprocessing.score_threshold, result.postprocessing.nms_iou, result.postprocessing.chosen_on) == (0.2, 0.5, "configuration")
    expected = apply_postprocessing({5: raw[5]}, EvalConfig(score_threshold=0.2, nms_iou=0.5))
    assert result.detections == expected
    assert result.figures == evaluate_predictions(expected, ground_truth(load_root(root, [5])), cfg.eval, cfg.model.num_classes)
    assert result.postprocessing.summary() == "post-processing from the configuration: score threshold 0.2, per-class NMS at tIoU 0.5"


def test_the_threshold_is_chosen_on_the_training_subjects_by_default(setup, predicted):
    root, model, raw = setup
    result = evaluate_split(model, tiny_config(root), "test")
    assert predicted == [[5], [1, 2, 3, 4]]  # the test split is never used to choose
    post = result.postprocessing
    selection = select_threshold({s: raw[s] for s in (1, 2, 3, 4)}, ground_truth(load_root(root, [1, 2, 3, 4])))
    assert (post.score_threshold, post.nms_iou) == (selection.score_threshold, selection.nms_iou)
    assert post.chosen_on == "train" and post.subjects == (1, 2, 3, 4) and post.f1 == pytest.approx(selection.f1.f1)
    assert "chosen on the training split (4 sequences of" in post.summary()


def test_the_threshold_can_be_chosen_on_held_out_validation_subjects(setup, predicted):
    root, model, raw = setup
    cfg = tiny_config(root, {"val_subjects": [4]}, choose_on="val")
    # training fits the other training subjects only
    assert sorted(WindowDataset.from_config(cfg, "train").sequences) == [1, 2, 3]
    result = evaluate_split(model, cfg, "test")
    assert predicted == [[5], [4]]
    selection = select_threshold({4: raw[4]}, ground_truth(load_root(root, [4])))
    post = result.postprocessing
    assert (post.chosen_on, post.subjects, post.score_threshold) == ("val", (4,), selection.score_threshold)
    assert "chosen on the validation split (1 sequences of" in post.summary() and "held out of training" in post.summary()
    # with choose_on "train" the same configuration chooses on the subjects training fitted, 1-3
    on_train = evaluate_split(model, dataclasses.replace(cfg, eval=EvalConfig(choose_on="train")), "test", raw=result.raw)
    assert on_train.postprocessing.subjects == (1, 2, 3) and predicted[2:] == [[1, 2, 3]]


def test_the_whole_root_reuses_its_own_training_detections(setup, predicted):
    root, model, raw = setup
    result = evaluate_split(model, tiny_config(root), "all")
    assert predicted == [[1, 2, 3, 4, 5]] and sorted(result.detections) == [1, 2, 3, 4, 5]
    assert result.postprocessing.subjects == (1, 2, 3, 4)


def test_prediction_files_record_the_run_and_score_the_same(setup, tmp_path):
    root, model, _ = setup
    cfg = tiny_config(root, {"val_subjects": [4]}, choose_on="val")
    result = evaluate_split(model, cfg, "test", out=tmp_path / "pred", info={"checkpoint": "x.pt"})
    info = prediction_info(tmp_path / "pred")
    assert info["subjects"] == {"train": [1, 2, 3], "val": [4], "test": [5]} and info["split"] == "test"
    assert info["postprocessing"] == result.postprocessing.describe() and info["checkpoint"] == "x.pt"
    assert info["postprocessing"]["chosen_on"] == "val" and info["postprocessing"]["subjects"] == [4]
    scored = evaluate_folder(tmp_path / "pred", root)  # the test subjects, as predictions.json records them
    assert scored.figures == result.figures and [seq.sample for seq in scored.sequences] == [5]


def test_an_output_folder_holding_ground_truth_is_refused_before_any_prediction(setup, predicted):
    root, model, _ = setup
    labels = root / "Sample0005" / "Sample0005_finelabels.csv"
    before = labels.read_bytes()
    with pytest.raises(DataError, match="Sample0005_finelabels.csv: was not written by a prediction run"):
        evaluate_split(model, tiny_config(root, score_threshold=0.0), "test", out=root / "Sample0005")
    assert predicted == [] and labels.read_bytes() == before


def test_another_root_is_read_without_the_configured_frame_cache(setup, tmp_path):
    root = setup[0]
    cfg = tiny_config(root, {"cache": str(tmp_path / "cache")})
    assert config_for_root(cfg, root).data.cache == str(tmp_path / "cache")
    other = config_for_root(cfg, tmp_path / "other_root")
    assert other.data.cache is None and other.data.root == str(tmp_path / "other_root")


def test_nothing_to_choose_on_is_a_clear_error(setup, tmp_path):
    root, model, _ = setup
    cfg = tiny_config(root)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=None, synthetic_dir=str(tmp_path / "none")))
    with pytest.raises(ConfigError, match="eval.score_threshold is not set and the training data to choose it on was not found"):
        resolve_postprocessing(model, cfg)
    with pytest.raises(ConfigError, match="the val split has no subjects"):
        evaluate_split(model, tiny_config(root), "val")


def test_the_training_evaluator_reads_the_sequences_once(setup, predicted, monkeypatch):
    root, model, raw = setup
    loads = []
    original = pipeline.load_root
    monkeypatch.setattr(pipeline, "load_root", lambda *args: loads.append(args[1]) or original(*args))
    evaluate = make_evaluator(tiny_config(root, {"val_subjects": [4]}, choose_on="val"))
    first, second = evaluate(model, 1), evaluate(model, 2)
    assert loads == [[5], [4]] and first == second
    assert first["score_threshold"] == select_threshold({4: raw[4]}, ground_truth(load_root(root, [4]))).score_threshold
    assert {"f1", "strict_f1", "map"} <= set(first) and all(isinstance(v, (int, float)) for v in first.values())


def test_evaluate_folder_matches_the_split(setup, tmp_path):
    root = setup[0]
    result = evaluate_split(setup[1], tiny_config(root, score_threshold=0.3), "all", out=tmp_path / "all")
    train = evaluate_folder(tmp_path / "all", root, "train")
    assert [s.sample for s in train.sequences] == [1, 2, 3, 4] and train.ignored == [5]
    assert evaluate_folder(tmp_path / "all", root, "test", subjects=[2, 5]).figures == evaluate_predictions(
        {s: result.detections[s] for s in (2, 5)}, ground_truth(load_root(root, [2, 5]))
    )
    document = json.loads((tmp_path / "all" / "predictions.json").read_text())
    assert document["split"] == "all" and sorted(document["sequences"]) == [f"Sample000{s}" for s in range(1, 6)]
