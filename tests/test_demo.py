"""``mgtutor demo`` (``make demo``) end to end on a tiny version of configs/cpu_demo.yaml: every step runs,
every promised file is written and agrees with the others, and a second run resumes instead of restarting."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mgtutor.cli import main
from mgtutor.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "cpu_demo.yaml"


def _tiny(tmp_path: Path) -> list[str]:
    """Overrides shrinking the demo to a few seconds: 4 short sequences, 1-3 train, 4 test, 2 epochs."""
    values = [
        f"data.synthetic_dir={tmp_path / 'synthetic'}", "data.synthetic_sequences=4", "data.synthetic_seconds=12",
        "data.synthetic_size=48", "data.short_side=32", "data.crop=32", "data.window=32",
        "data.train_subjects=[1,2,3]", "data.test_subjects=[4]",
        "model.hidden=32", "model.queries=4", "model.points=6", "model.layers=2", "model.ffn=32", "model.mix_dim=4",
        "train.epochs=2", "train.batch_size=2", "train.lr_step=1",
    ]  # fmt: skip
    return [arg for value in values for arg in ("--set", value)]


def test_the_demo_configuration_is_the_paper_decoder_on_the_small_encoder():
    cfg = load_config(CONFIG)
    paper = load_config(REPO / "configs" / "smg_paper.yaml")
    assert cfg.model.encoder == "small" and paper.model.encoder == "i3d"
    # the decoder's structure is the paper's; only widths shrink
    for key in ["points", "layers", "mamba_blocks", "subpoints", "boundary_points", "num_classes"]:
        assert getattr(cfg.model, key) == getattr(paper.model, key), key
    assert cfg.data.window == paper.data.window and cfg.data.fps == paper.data.fps
    assert cfg.data.root is None and cfg.data.synthetic_difficulty == "demo"
    assert set(cfg.data.train_subjects).isdisjoint(cfg.data.test_subjects)


@pytest.mark.slow
def test_demo_end_to_end_writes_every_promised_file_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--config", str(CONFIG), "--out", str(out), "--no-progress", *_tiny(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for step in ["1/5", "2/5", "3/5", "4/5", "5/5"]:
        assert f"== {step}" in printed

    for name in ["results.md", "results.json", "training_curve.png", "timeline.png", "trajectories.png", "config.yaml"]:
        assert (out / name).stat().st_size > 0, name
    for name in ["training_curve.png", "timeline.png", "trajectories.png"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    results = json.loads((out / "results.json").read_text())
    info, figures = results["info"], results["figures"]
    assert info["epochs"] == 2 and info["steps"] > 0
    assert 0 < info["train_seconds"] <= info["total_seconds"]
    f1 = figures["f1"]
    assert 0.0 <= f1 <= 1.0
    assert f"| {f1:.4f} |" in (out / "results.md").read_text()  # the table shows the F1 it saved

    # the configuration actually used is saved beside the results, with paths placed under --out
    used = load_config(out / "config.yaml")
    assert used.train.out == str(out / "train") and used.model.hidden == 32
    assert (out / "train" / "last.pt").exists()

    # one prediction file per test sequence, in SMG's finelabels format (label, start, end)
    predictions = sorted((out / "predictions").glob("Sample*_finelabels.csv"))
    assert [p.name for p in predictions] == ["Sample0004_finelabels.csv"]
    rows = [row for row in csv.reader(predictions[0].read_text().splitlines()) if row and not row[0].startswith("#")]
    for row in rows:
        label, start, end = int(row[0]), int(row[1]), int(row[2])
        assert 1 <= label <= 17 and 0 <= start <= end

    # the post-processing was chosen on the training subjects, never on the test ones
    assert info["postprocessing"]["chosen_on"] == "train" and info["postprocessing"]["subjects"] == [1, 2, 3]

    # a second run skips the finished data steps and resumes training from the saved epoch; the
    # evaluation uses the configuration it is given: a set score threshold is used, not chosen again
    threshold = ["--set", "eval.score_threshold=0.9"]
    assert main(["demo", "--config", str(CONFIG), "--out", str(out), "--no-progress", *_tiny(tmp_path), *threshold]) == 0
    again = capsys.readouterr().out
    assert "continuing the interrupted run" in again
    assert "post-processing from the configuration: score threshold 0.9" in again
    results = json.loads((out / "results.json").read_text())
    assert results["info"]["steps"] == info["steps"] and results["info"]["score_threshold"] == 0.9
    assert results["info"]["postprocessing"] == {"score_threshold": 0.9, "nms_iou": None, "chosen_on": "configuration"}
    document = json.loads((out / "predictions" / "predictions.json").read_text())
    assert document["postprocessing"]["score_threshold"] == 0.9
    assert all(row["score"] >= 0.9 for rows in document["sequences"].values() for row in rows)
    assert load_config(out / "config.yaml").eval.score_threshold == 0.9
