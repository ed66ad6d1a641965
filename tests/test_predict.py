"""Whole-sequence prediction: raw detections, post-processing chosen on training data, the files, the figures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mgtutor.config import EvalConfig, config_from_dict
from mgtutor.data.errors import DataError
from mgtutor.data.smg import load_root
from mgtutor.data.synthetic import write_synthetic
from mgtutor.data.windows import num_sampled, window_starts
from mgtutor.eval.detection_map import detection_map
from mgtutor.eval.miga_f1 import miga_f1
from mgtutor.eval.postprocess import Detection, as_gestures, filter_detections, select_threshold
from mgtutor.eval.inference import load_model, predict_sequences
from mgtutor.eval.pipeline import choose_postprocessing, evaluate_predictions, format_figures, ground_truth, make_evaluator
from mgtutor.eval.postprocess import apply_postprocessing
from mgtutor.eval.prediction_files import prediction_info, read_predictions, write_predictions
from mgtutor.model.detector import Detector
from mgtutor.train.checkpoint import CheckpointError, save_checkpoint



def tiny_config(root, **eval_cfg):
    return config_from_dict({
        "data": {"root": str(root), "train_subjects": [1, 2, 3], "test_subjects": [4], "window": 16, "short_side": 40, "crop": 32},
        "model": {"encoder": "small", "hidden": 32, "queries": 8, "points": 9, "layers": 2, "heads": 4, "ffn": 64,
                  "mix_dim": 8, "mamba_blocks": 1},
        "eval": eval_cfg,
    })  # fmt: skip


def tiny_model(cfg) -> Detector:
    """A random detector whose queries start at different places in the window (random initial points),
    so its detections differ in class, span and score."""
    torch.manual_seed(0)
    model = Detector(cfg.model).eval()
    with torch.no_grad():
        low = torch.rand(cfg.model.queries, 1) * 0.9
        model.query_points.weight.copy_(low + torch.rand(cfg.model.queries, cfg.model.points) * 0.3)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("predict") / "smg", sequences=4, seconds=8, size=40, seed=1, workers=1)
    cfg = tiny_config(root)
    model = tiny_model(cfg)
    sequences = load_root(root)
    raw = predict_sequences(model, sequences, cfg, "cpu", batch_size=3)
    return cfg, model, sequences, raw


def test_raw_detections_cover_every_window_and_stay_in_the_video(setup):
    cfg, model, sequences, raw = setup
    assert sorted(raw) == [1, 2, 3, 4]
    for seq in sequences:
        found = raw[seq.sample]
        windows = window_starts(num_sampled(seq.num_frames, seq.fps, cfg.data.fps), cfg.data.window, cfg.data.test_step)
        q = cfg.model.queries
        # every query of every window, less those the end-aligned window and its predecessor merge away
        assert q * (len(windows) - 1) <= len(found) <= q * len(windows)
        assert found == sorted(found, key=lambda d: (d.start, d.end, d.label))
        assert all(1 <= d.label <= 17 and 0 <= d.start <= d.end <= seq.num_frames - 1 for d in found)
        assert len({d.label for d in found}) > 1 and min(d.score for d in found) < 0.2  # unthresholded
        # the windows tile the sequence: detections in its first and its last window
        assert found[0].start < 48 and found[-1].end > seq.num_frames - 48


def test_batching_and_grouping_do_not_change_the_detections(setup):
    cfg, model, sequences, raw = setup
    alone = predict_sequences(model, sequences[3:], cfg, "cpu", batch_size=1)[4]
    assert [(d.label, d.start, d.end) for d in alone] == [(d.label, d.start, d.end) for d in raw[4]]
    np.testing.assert_allclose([d.score for d in alone], [d.score for d in raw[4]], rtol=1e-5)
    assert model.training is False


def test_post_processing_is_chosen_on_training_sequences(setup, monkeypatch):
    cfg, model, sequences, raw = setup
    train = sequences[:3]
    seen = []
    original = predict_sequences

    def spy(model, sequences, *args, **kwargs):
        seen.append([s.sample for s in sequences])
        return original(model, sequences, *args, **kwargs)

    monkeypatch.setattr("mgtutor.eval.pipeline.predict_sequences", spy)
    selection = choose_postprocessing(model, train, cfg, "cpu", batch_size=3)
    assert seen == [[1, 2, 3]]
    truth = ground_truth(train)
    expected = select_threshold({s: raw[s] for s in (1, 2, 3)}, truth)
    assert (selection.score_threshold, selection.nms_iou) == (expected.score_threshold, expected.nms_iou)
    kept = apply_postprocessing({s: raw[s] for s in (1, 2, 3)}, selection)
    assert selection.f1.f1 == pytest.approx(miga_f1({s: as_gestures(d) for s, d in kept.items()}, truth).f1)
    # a configured NMS setting is kept, only the threshold is chosen
    fixed = choose_postprocessing(model, train, dataclasses.replace(cfg, eval=EvalConfig(nms_iou=0.5)), train_predictions=raw)
    assert fixed.nms_iou == 0.5 and {t[1] for t in fixed.tried} == {0.5}


def test_apply_postprocessing_with_configured_values(setup):
    raw = setup[3]
    settings = EvalConfig(score_threshold=0.15, nms_iou=0.3)
    kept = apply_postprocessing(raw, settings)
    assert kept == {s: filter_detections(d, 0.15, 0.3) for s, d in raw.items()}
    assert 0 < sum(map(len, kept.values())) < sum(map(len, raw.values()))
    with pytest.raises(ValueError, match="score_threshold is not set"):
        apply_postprocessing(raw, EvalConfig())


def test_files_round_trip(setup, tmp_path):
    raw = setup[3]
    kept = apply_postprocessing(raw, EvalConfig(score_threshold=0.15))
    kept[2] = []  # a sequence without detections still gets its (empty) file
    out = write_predictions(tmp_path / "pred", kept, {"score_threshold": 0.15, "nms_iou": None}, {"split": "all"})
    lines = (out / "Sample0001_finelabels.csv").read_text().splitlines()
    assert lines == [f"{d.label},{d.start},{d.end}" for d in kept[1]]
    assert (out / "Sample0002_finelabels.csv").read_text() == ""
    assert read_predictions(out) == kept  # scores exactly, from predictions.json
    assert prediction_info(out)["split"] == "all" and prediction_info(out)["postprocessing"]["score_threshold"] == 0.15

    # an edited label file keeps its rows, with score 1
    (out / "Sample0001_finelabels.csv").write_text("3,10,20\n")
    assert read_predictions(out)[1] == [Detection(3, 10, 20, 1.0)]
    # rewriting the folder removes files of sequences no longer predicted
    write_predictions(out, {4: kept[4]})
    assert sorted(read_predictions(out)) == [4]
    # a folder of label files not written here is refused
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Sample0009_finelabels.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match="Sample0009_finelabels.csv: was not written by a prediction run"):
        write_predictions(tmp_path / "other", kept)


def test_perfect_predictions_score_one_and_figures_match_the_metrics(setup):
    sequences, raw = setup[2], setup[3]
    truth = ground_truth(sequences)
    perfect = {s: [Detection(*g, 1.0) for g in gestures] for s, gestures in truth.items()}
    figures = evaluate_predictions(perfect, truth)
    assert figures["f1"] == pytest.approx(1.0) and figures["strict_f1"] == pytest.approx(1.0)
    assert figures["map"] == pytest.approx(1.0) and figures["correct"] == figures["ground_truth"] == sum(map(len, truth.values()))

    kept = apply_postprocessing(raw, EvalConfig(score_threshold=0.15))
    figures = evaluate_predictions(kept, truth)
    gestures = {s: as_gestures(d) for s, d in kept.items()}
    official, strict = miga_f1(gestures, truth), miga_f1(gestures, truth, one_to_one=True)
    assert (figures["f1"], figures["correct"], figures["predictions"]) == (official.f1, official.correct, official.num_predictions)
    assert (figures["strict_f1"], figures["strict_correct"]) == (strict.f1, strict.correct)
    assert figures["map"] == detection_map(kept, truth).average
    assert [figures[f"map@{t / 10:g}"] for t in range(1, 10)] == list(detection_map(kept, truth).mean_ap)
    text = format_figures(figures)
    assert text.splitlines()[0] == f"F1 {official.f1:.4f} (organisers' rule; one-to-one {strict.f1:.4f})"
    assert "mAP" in text and "0.9" in text


def test_evaluator_for_the_training_engine(setup):
    cfg, model, sequences, raw = setup
    evaluate = make_evaluator(dataclasses.replace(cfg, eval=EvalConfig(score_threshold=0.15, nms_iou=0.5)), sequences[:3], sequences[3:], batch_size=3)
    figures = evaluate(model, 1)
    assert all(isinstance(v, (int, float)) for v in figures.values())
    expected = evaluate_predictions(apply_postprocessing({4: raw[4]}, EvalConfig(score_threshold=0.15, nms_iou=0.5)), ground_truth(sequences[3:]))
    assert {k: figures[k] for k in expected} == pytest.approx(expected)
    assert (figures["score_threshold"], figures["nms_iou"]) == (0.15, 0.5)

    chosen = make_evaluator(cfg, sequences[:1], sequences[3:], batch_size=3)(model, 1)
    selection = select_threshold({1: raw[1]}, ground_truth(sequences[:1]))
    assert chosen["score_threshold"] == selection.score_threshold


def test_load_model_rebuilds_the_checkpointed_detector(setup, tmp_path):
    cfg, model = setup[0], setup[1]
    path = save_checkpoint({"format": 1, "model": model.state_dict(), "config": cfg.to_dict(), "epoch": 1}, tmp_path / "best.pt")
    loaded, loaded_cfg = load_model(path, "cpu", ["eval.score_threshold=0.25"])
    assert loaded_cfg.eval.score_threshold == 0.25 and loaded_cfg.model == cfg.model and not loaded.training
    x = torch.rand(1, 3, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path, "cpu", ["model.queries=4"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "junk.pt")
    save_checkpoint({"format": 1, "epoch": 0}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no model weights"):
        load_model(tmp_path / "empty.pt")


def test_the_names_of_the_former_module_still_import():
    """Notebooks 08 and 09 import these from mgtutor.eval.predict; each is the library's one function."""
    from mgtutor.eval import inference, pipeline, postprocess, predict, prediction_files

    homes = {"load_model": inference, "predict_sequences": inference, "prediction_windows": inference, "class_names": pipeline,
             "make_evaluator": pipeline, "choose_postprocessing": pipeline, "evaluate_predictions": pipeline, "format_figures": pipeline,
             "ground_truth": pipeline, "apply_postprocessing": postprocess, "write_predictions": prediction_files}  # fmt: skip
    for name, home in homes.items():
        assert getattr(predict, name) is getattr(home, name), name
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        predict.nonsense  # noqa: B018
