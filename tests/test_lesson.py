"""The runs notebooks 08 and 09 train: the CPU lesson, and the paper's configuration run for one step on the
CPU exactly as ``MGTUTOR_FULL=1`` runs it on a GPU (I3D at 224 pixels, 128-frame windows, the paper's
decoder), so that the day a GPU runs it only its speed is new."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mgtutor.config import config_differences, load_config
from mgtutor.data.dataset import WindowDataset
from mgtutor.data.smg import load_root
from mgtutor.data.synthetic import write_synthetic
from mgtutor.model.i3d_weights import DEFAULT_WEIGHTS, convert_i3d
from mgtutor.train import build_trainer
from mgtutor.train.log import read_log
from mgtutor.train.lesson import lesson_config, paper_lesson_config, prepare_lesson_data

REPO = Path(__file__).resolve().parents[1]


def test_the_lesson_is_the_papers_decoder_at_cpu_size(tmp_path):
    cfg = lesson_config(tmp_path)
    assert cfg.model.encoder == "features" and cfg.data.features == str(tmp_path / "features")
    assert (cfg.data.train_subjects, cfg.data.test_subjects) == (list(range(1, 11)), [11, 12])
    assert str(tmp_path) in cfg.data.synthetic_dir and str(tmp_path) in cfg.train.out
    paper = load_config(REPO / "configs" / "smg_paper.yaml")
    differing = dict(config_differences({"lesson": cfg, "paper": paper}))
    assert differing["model.layers"] == (2, 4) and differing["model.points"] == (9, 30) and differing["data.window"] == (64, 128)
    # the loss and the matching are the paper's
    assert not [key for key in differing if key.startswith(("train.cost", "train.class", "train.l1", "train.iou", "train.dense", "train.no_object"))]
    assert lesson_config(tmp_path, ["model.layers=3"]).model.layers == 3


def test_the_papers_run_differs_from_the_file_only_where_files_are(tmp_path):
    paper = load_config(REPO / "configs" / "smg_paper.yaml")
    for smg_root in (None, tmp_path / "SMG"):
        cfg = paper_lesson_config(REPO, smg_root=smg_root, out=tmp_path / "run")
        assert config_differences({"notebook": cfg, "file": paper}) == []
        assert cfg.data.root == (None if smg_root is None else str(smg_root))
        assert cfg.data.synthetic_dir == str(REPO / "data" / "synthetic")
        assert cfg.model.encoder_weights == str(REPO / "weights" / "i3d_kinetics400_rgb.safetensors")
        assert cfg.train.out == str(tmp_path / "run")
    assert paper_lesson_config(REPO).train.out == str(REPO / "runs" / "notebook08_paper")
    odd = tmp_path / "a folder: with 'quotes'"
    assert paper_lesson_config(REPO, smg_root=odd, overrides=["train.max_steps=2"]).data.root == str(odd)


def test_prepare_writes_the_synthetic_set_and_the_skeleton_features(tmp_path):
    cfg = lesson_config(tmp_path, ["data.synthetic_sequences=2", "data.synthetic_seconds=13.0", "data.train_subjects=[1]", "data.test_subjects=[2]"])
    root = prepare_lesson_data(cfg)
    assert root == tmp_path / "synthetic" and sorted(p.name for p in (tmp_path / "features").iterdir()) == ["Sample0001.npy", "Sample0002.npy"]
    item = WindowDataset.from_config(cfg, "train")[0]
    assert tuple(item["features"].shape) == (150, 16)  # 64 frames / stride 4
    assert prepare_lesson_data(cfg) == root  # a second call keeps what is there


@pytest.fixture(scope="module")
def i3d_weights(tmp_path_factory) -> Path:
    """The converted Kinetics-400 weights: the project's file when `make weights` made it, else a fresh one."""
    path = REPO / DEFAULT_WEIGHTS
    return path if path.is_file() else convert_i3d(None, tmp_path_factory.mktemp("weights") / "i3d.safetensors")


@pytest.mark.slow
def test_the_papers_configuration_trains_a_step_on_the_cpu(tmp_path, i3d_weights):
    """The notebook's full-size run (notebook 08, ``MGTUTOR_FULL=1``) for one optimiser step at batch 1.

    About a minute on an idle 2-core CPU, three to four on a busy one: I3D's forward and backward pass at
    224x224 with 128 frames is about 1.4 TFLOP, nine tenths of the time; building the 243M-parameter
    detector and writing its 2.9 GB checkpoint (with AdamW's state) take the rest. The evaluation is left
    out (another 0.45 TFLOP forward pass); its code is the one the CPU lesson runs.
    """
    root = write_synthetic(tmp_path / "smg", sequences=2, seconds=12.8, size=128, seed=0)  # one window each
    cfg = paper_lesson_config(REPO, smg_root=root, out=tmp_path / "run", overrides=[
        f"model.encoder_weights={i3d_weights}",
        "data.train_subjects=[1]", "data.test_subjects=[2]",
        "train.max_steps=1",
        "data.num_workers=2",  # the paper's 8 data-loading processes, fewer: a worker is what matters here
    ])  # fmt: skip
    notebook = paper_lesson_config(REPO, smg_root=root)
    differing = [name for name, _ in config_differences({"test": cfg, "notebook": notebook})]
    assert differing == ["data.train_subjects", "data.test_subjects", "data.num_workers", "train.max_steps"]
    assert prepare_lesson_data(cfg) == root
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trainer = build_trainer(cfg, progress=False)
        model = trainer.model
        assert sum(p.numel() for p in model.parameters()) > 240e6  # the paper's detector
        stem = load_file(i3d_weights)["Conv3d_1a_7x7.conv.weight"]
        torch.testing.assert_close(model.encoder.backbone.Conv3d_1a_7x7.conv.weight, stem)  # Kinetics-400 I3D
        assert tuple(trainer.loader.dataset[0]["clip"].shape) == (3, 128, 224, 224)
        start = time.perf_counter()
        history = trainer.fit()
        seconds = time.perf_counter() - start
        assert trainer.global_step == 1 and len(history) == 1
        record = history[0]
        assert all(math.isfinite(record[k]) for k in record if k.startswith("loss/"))
        assert {"loss/class", "loss/l1", "loss/iou", "loss/dense", "loss/class_0", "loss/class_2"} <= set(record)
        assert not torch.equal(model.encoder.backbone.Conv3d_1a_7x7.conv.weight.detach(), stem)  # the encoder trains too
        # last.pt holds the model and AdamW's two moments: 3 x 4 bytes a parameter (reading it back is tested
        # at small size in test_checkpoint.py and would cost another 3 GB here)
        assert (Path(cfg.train.out) / "last.pt").stat().st_size > 12 * 240e6
        assert read_log(Path(cfg.train.out) / "log.jsonl") == history
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp_path / "run", ignore_errors=True)  # 2.9 GB that pytest would keep for three sessions
    print(f"one step of the paper's configuration on the CPU: {seconds:.0f} s")
