"""``mgtutor predict`` -> ``mgtutor evaluate`` end to end on a tiny synthetic set, and the streaming command."""

from __future__ import annotations

import pytest
import torch

from mgtutor.cli import main
from mgtutor.config import config_from_dict
from mgtutor.data.smg import load_root
from mgtutor.data.synthetic import write_synthetic
from mgtutor.eval.postprocess import Detection
from mgtutor.eval.inference import predict_sequences
from mgtutor.eval.pipeline import choose_postprocessing, evaluate_predictions, format_figures, ground_truth
from mgtutor.eval.postprocess import apply_postprocessing
from mgtutor.eval.prediction_files import read_predictions, write_predictions
from mgtutor.model.detector import Detector
from mgtutor.train.checkpoint import save_checkpoint



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic root (subjects 1-3 train, 4 test) and a checkpoint of a tiny random detector."""
    folder = tmp_path_factory.mktemp("cli")
    root = write_synthetic(folder / "smg", sequences=4, seconds=8, size=40, seed=2, workers=1)
    cfg = config_from_dict({
        "data": {"root": str(root), "train_subjects": [1, 2, 3], "test_subjects": [4], "window": 16, "short_side": 40, "crop": 32},
        "model": {"encoder": "small", "hidden": 32, "queries": 8, "points": 9, "layers": 2, "heads": 4, "ffn": 64,
                  "mix_dim": 8, "mamba_blocks": 1},
    })  # fmt: skip
    torch.manual_seed(0)
    model = Detector(cfg.model).eval()
    with torch.no_grad():  # queries starting at different places, so the detections differ
        low = torch.rand(cfg.model.queries, 1) * 0.9
        model.query_points.weight.copy_(low + torch.rand(cfg.model.queries, cfg.model.points) * 0.3)
    checkpoint = save_checkpoint({"format": 1, "model": model.state_dict(), "config": cfg.to_dict(), "epoch": 1}, folder / "run" / "best.pt")
    return root, cfg, model, checkpoint


def test_predict_then_evaluate(trained, tmp_path, capsys):
    root, cfg, model, checkpoint = trained
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), "--root", str(root), "--out", str(out), "--batch-size", "3"]) == 0
    printed = capsys.readouterr().out
    assert "chosen on the training split (3 sequences" in printed and "eval.score_threshold is not set" in printed
    assert sorted(p.name for p in out.iterdir()) == ["Sample0004_finelabels.csv", "predictions.json"]

    # the same pipeline in-process
    train, test = load_root(root, [1, 2, 3]), load_root(root, [4])
    selection = choose_postprocessing(model, train, cfg, "cpu", batch_size=3)
    expected = apply_postprocessing(predict_sequences(model, test, cfg, "cpu", batch_size=3), selection)
    assert read_predictions(out) == expected
    assert f"score threshold {selection.score_threshold:g}" in printed

    assert main(["evaluate", "--pred", str(out), "--gt", str(root), "--plot", str(tmp_path / "timeline.png")]) == 0
    printed = capsys.readouterr().out
    figures = evaluate_predictions(expected, ground_truth(test))
    assert format_figures(figures) in printed and "1 sequences" in printed
    assert (tmp_path / "timeline.png").stat().st_size > 5_000


def test_perfect_predictions_score_one(trained, tmp_path, capsys):
    root = trained[0]
    truth = ground_truth(load_root(root))
    write_predictions(tmp_path, {s: [Detection(*g, 1.0) for g in gestures] for s, gestures in truth.items()})
    assert main(["evaluate", "--pred", str(tmp_path), "--gt", str(root), "--split", "all"]) == 0
    printed = capsys.readouterr().out
    assert "F1 1.0000 (organisers' rule; one-to-one 1.0000)" in printed
    assert printed.splitlines()[-1].split()[-1] == "1.0000"  # the mean mAP
    assert main(["evaluate", "--pred", str(tmp_path), "--gt", str(root), "--subjects", "4", "--one-to-one"]) == 0
    assert "F1 1.0000 (one-to-one; organisers' rule 1.0000)" in capsys.readouterr().out


def test_evaluate_refuses_folders_that_do_not_match(trained, tmp_path, capsys):
    root = trained[0]
    truth = ground_truth(load_root(root))
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--pred", str(tmp_path / "empty"), "--gt", str(root)]) == 2
    assert "holds no predictions" in capsys.readouterr().err

    write_predictions(tmp_path / "train", {s: [Detection(*g, 1.0) for g in truth[s]] for s in (1, 2)})
    assert main(["evaluate", "--pred", str(tmp_path / "train"), "--gt", str(root), "--subjects", "4"]) == 2
    err = capsys.readouterr().err
    assert "has no predictions for the test split (Sample0004)" in err and "Traceback" not in err
    assert main(["evaluate", "--pred", str(tmp_path / "train"), "--gt", str(root), "--split", "train", "--subjects", "1-3"]) == 2
    assert "lacks predictions for Sample0003 of the train split" in capsys.readouterr().err

    write_predictions(tmp_path / "foreign", {9: []})
    assert main(["evaluate", "--pred", str(tmp_path / "foreign"), "--gt", str(root)]) == 2
    assert "Sample0009" in capsys.readouterr().err


def test_online_predict_writes_what_offline_predict_writes(trained, tmp_path, capsys):
    root, _, _, checkpoint = trained
    video = root / "Sample0004" / "Sample0004_color.mp4"
    common = ["predict", "--checkpoint", str(checkpoint), "--set", "eval.score_threshold=0.14", "--set", "eval.nms_iou=0.5"]
    assert main([*common, "--online", str(video), "--out", str(tmp_path / "online")]) == 0
    printed = capsys.readouterr().out
    assert "post-processing from the configuration: score threshold 0.14, per-class NMS at tIoU 0.5" in printed
    reports = [line for line in printed.splitlines() if "reported at t=" in line]
    assert len(reports) >= 3 and all("delay" in line and "frames" in line for line in reports)
    assert main([*common, "--root", str(root), "--batch-size", "1", "--out", str(tmp_path / "offline")]) == 0
    online = (tmp_path / "online" / "Sample0004_finelabels.csv").read_text()
    assert online == (tmp_path / "offline" / "Sample0004_finelabels.csv").read_text()
    assert len(online.splitlines()) == len(reports)
