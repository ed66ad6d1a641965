"""``mgtutor extract-features`` end to end on a tiny synthetic set with the Kinetics-400 weights: the files'
shapes and stride, each step from the window centred nearest it, resuming after an interruption without
trusting a half-written file, a corrupt video named in one line, and the features configuration training
and evaluating on what it wrote."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import mgtutor.model.features as features_module
from mgtutor.cli import main
from mgtutor.config import load_config
from mgtutor.data.dataset import features_length, features_path
from mgtutor.data.smg import load_root
from mgtutor.data.synthetic import write_synthetic
from mgtutor.data.video import decode
from mgtutor.data.windows import num_sampled
from mgtutor.model.encoder import I3DEncoder
from mgtutor.model.features import FEATURES_META, owned_steps, sequence_windows
from mgtutor.model.i3d_weights import DEFAULT_WEIGHTS, convert_i3d, load_i3d_weights
from mgtutor.train.log import read_log

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SIZE, CROP, WINDOW = 40, 32, 16
# extraction at toy sizes: 40 px frames, 32 px centre crops, I3D windows of 16 frames every 8
ARGS = ["--short-side", str(SIZE), "--crop", str(CROP), "--window", str(WINDOW), "--stride", "8", "--batch-size", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The converted Kinetics-400 weights: the project's file when `make weights` made it, else a fresh one."""
    path = REPO / DEFAULT_WEIGHTS
    return path if path.is_file() else convert_i3d(None, tmp_path_factory.mktemp("weights") / "i3d.safetensors")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, weights):
    """Three 12 s sequences and their features, written once by the CLI."""
    folder = tmp_path_factory.mktemp("features")
    root = write_synthetic(folder / "smg", sequences=3, seconds=12, size=SIZE, seed=1, workers=1)
    out = folder / "features"
    assert main(["extract-features", str(root), "--out", str(out), "--weights", str(weights), *ARGS]) == 0
    return root, out


def test_owned_steps_tile_the_sequence_by_nearest_centre():
    for starts, window_steps, steps in (([0, 2, 4, 6, 7], 4, 11), ([0], 8, 5), ([0, 4, 8, 9], 4, 13), ([0, 3, 6], 6, 12)):
        owned = owned_steps(starts, window_steps, steps)
        assert owned[0][0] == 0 and owned[-1][1] == steps
        assert all(a[1] == b[0] for a, b in zip(owned, owned[1:]))
        for k, (lo, hi) in enumerate(owned):
            assert starts[k] <= lo and hi <= starts[k] + window_steps  # inside the window's own steps
            for j in range(lo, hi):  # no other window's centre is nearer
                mine = abs(starts[k] + window_steps / 2 - (j + 0.5))
                assert all(mine <= abs(s + window_steps / 2 - (j + 0.5)) for s in starts)
    with pytest.raises(ValueError, match="at most 4 steps"):
        owned_steps([0, 5], 4, 9)


def test_files_have_one_step_per_4_frames_from_the_nearest_window(extracted, weights):
    root, out = extracted
    sequences = load_root(root)
    for seq in sequences:
        array = np.load(features_path(out, seq.sample))
        assert array.dtype == np.float32 and array.shape == (1856, features_length(seq.num_frames, seq.fps, 10.0))
        assert np.isfinite(array).all()
    meta = (out / FEATURES_META).read_text()
    assert '"feature_dim": 1856' in meta and '"crop": 32' in meta and "sha256:" in meta

    # Recompute one sequence by hand: centre crops of the decoded frames, I3D over each window, and the
    # steps each window owns. Step j must summarise frames [4j, 4j + 4): shifting the window shifts it.
    seq = sequences[0]
    total = num_sampled(seq.num_frames, seq.fps, 10.0)
    frames = decode(seq.video, 10.0, seq.num_frames, seq.fps, short_side=SIZE)
    top, left = (frames.shape[1] - CROP) // 2, (frames.shape[2] - CROP) // 2
    clip = torch.from_numpy(frames[:, top : top + CROP, left : left + CROP].copy()).permute(3, 0, 1, 2).float() / 127.5 - 1
    encoder = I3DEncoder()
    load_i3d_weights(encoder.backbone, weights)
    encoder.eval()
    array = np.load(features_path(out, seq.sample))
    jobs = sequence_windows(total, WINDOW, 8)
    assert [start for start, _, _ in jobs[:3]] == [0, 8, 16] and jobs[-1][2] == array.shape[1]
    for start, lo, hi in (jobs[0], jobs[2], jobs[-1]):
        window = clip[:, start : start + WINDOW]
        if window.shape[1] < WINDOW:  # past the end: the last frame repeated
            window = torch.cat([window, window[:, -1:].expand(-1, WINDOW - window.shape[1], -1, -1)], dim=1)
        with torch.no_grad():
            expected = encoder.features(window[None])[0].numpy()  # (1856, WINDOW / 4)
        np.testing.assert_allclose(array[:, lo:hi], expected[:, lo - start // 4 : hi - start // 4], rtol=1e-4, atol=1e-5)
        assert not np.allclose(array[:, lo:hi], expected[:, : hi - lo], rtol=1e-3) or start == 0  # the offset matters


def test_resume_after_an_interruption_trusts_no_half_written_file(extracted, weights, tmp_path, monkeypatch, capsys):
    root, reference = extracted
    out = tmp_path / "features"
    calls = []
    sequence_features = features_module.sequence_features

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while the second sequence runs
        return sequence_features(*args, **kwargs)

    monkeypatch.setattr(features_module, "sequence_features", interrupted)
    assert main(["extract-features", str(root), "--out", str(out), "--weights", str(weights), *ARGS]) == 130
    first, second, third = (features_path(out, s) for s in (1, 2, 3))
    assert first.exists() and not second.exists() and not third.exists()
    # a file cut short by a crash of the machine (not of this program) is not taken as finished
    whole = second.with_suffix(".whole")
    shutil.copy(features_path(reference, 2), whole)
    second.write_bytes(whole.read_bytes()[:5000])
    whole.unlink()
    stamp = first.stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(features_module, "sequence_features", lambda *a, **k: (calls.append(1), sequence_features(*a, **k))[1])
    assert main(["extract-features", str(root), "--out", str(out), "--weights", str(weights), *ARGS]) == 0
    assert len(calls) == 2 and first.stat().st_mtime_ns == stamp  # the finished sequence was skipped
    for sample in (1, 2, 3):
        assert np.array_equal(np.load(features_path(out, sample)), np.load(features_path(reference, sample)))
    assert not list(out.glob(".*.partial"))

    # other settings in the same folder are refused, naming what differs
    assert main(["extract-features", str(root), "--out", str(out), "--weights", str(weights), *ARGS, "--crop", "24"]) == 2
    err = capsys.readouterr().err
    assert FEATURES_META in err and "crop: 32 there, 24 now" in err


def test_a_corrupt_video_is_named_in_one_line(extracted, weights, tmp_path, capsys):
    root, _ = extracted
    broken = tmp_path / "smg"
    shutil.copytree(root, broken, symlinks=True)
    video = next((broken / "Sample0002").glob("*.mp4"))
    video.write_bytes(video.read_bytes()[:3000])  # a download cut short
    assert main(["extract-features", str(broken), "--out", str(tmp_path / "out"), "--weights", str(weights), *ARGS]) == 2
    *bar, last = capsys.readouterr().err.strip().splitlines()  # the progress bar, then the error
    assert last.startswith("mgtutor extract-features: error: ") and str(video) in last
    assert not any("error" in line for line in bar)
    assert features_path(tmp_path / "out", 1).exists()  # the sequence before it is kept


def test_the_features_configuration_trains_and_evaluates(extracted, tmp_path):
    root, out = extracted
    config = REPO / "configs" / "smg_paper_features.yaml"
    paper = load_config(REPO / "configs" / "smg_paper.yaml")
    loaded = load_config(config)
    # the paper's configuration but for the encoder and the data path (base: smg_paper.yaml)
    assert replace(loaded.train, out=paper.train.out) == paper.train and loaded.eval == paper.eval
    assert loaded.train.out == "runs/smg_paper_features"
    assert (loaded.model.encoder, loaded.model.feature_dim, loaded.model.encoder_weights) == ("features", 1856, None)
    assert {k: v for k, v in vars(loaded.model).items() if k not in ("encoder", "feature_dim", "encoder_weights")} == {
        k: v for k, v in vars(paper.model).items() if k not in ("encoder", "feature_dim", "encoder_weights")
    }
    tiny = [
        f"data.root={root}", f"data.features={out}", "data.train_subjects=[1, 2]", "data.test_subjects=[3]", "data.window=32",
        f"data.short_side={SIZE}", f"data.crop={CROP}", "data.num_workers=0", "model.hidden=32", "model.queries=8",
        "model.points=9", "model.layers=2", "model.heads=4", "model.ffn=64", "model.mix_dim=8", "model.mamba_blocks=1",
        "model.mamba_backend=torch", "train.epochs=3", "train.eval_every=3", "train.batch_size=2", "train.lr=2e-3",
        f"train.out={tmp_path}",
    ]  # fmt: skip
    assert main(["train", "--config", str(config), "--no-progress", *(x for o in tiny for x in ("--set", o))]) == 0
    log = read_log(tmp_path / "log.jsonl")
    assert [r["epoch"] for r in log] == [1, 2, 3] and 0 <= log[-1]["eval/f1"] <= 1 and 0 <= log[-1]["eval/map"] <= 1
    assert log[-1]["loss/total"] < log[0]["loss/total"]
    saved = load_config(tmp_path / "config.yaml")
    assert saved.model.encoder == "features" and saved.train.lr_step == paper.train.lr_step
