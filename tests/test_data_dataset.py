"""WindowDataset items: shapes, ranges, targets that map back to the labelled frames, both frame sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mgtutor.config import Config, ConfigError, DataConfig
from mgtutor.data import synthetic
from mgtutor.data.cache import prepare_cache
from mgtutor.data.dataset import WindowDataset, collate, features_length, features_path
from mgtutor.data.errors import DataError
from mgtutor.data.smg import load_root
from mgtutor.data.windows import num_sampled, window_to_frames


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthetic.write_synthetic(tmp_path_factory.mktemp("ds") / "root", sequences=3, seconds=8, size=32, seed=2, workers=1)


@pytest.fixture(scope="module")
def cache(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "cache"
    prepare_cache(root, out, fps=10, short_side=16, progress=False)
    return out


def _cfg(**kw):
    return DataConfig(**{"window": 16, "crop": 12, "short_side": 16, "fps": 10.0, **kw})


def test_items_have_the_contract_shapes_and_ranges(root, cache):
    ds = WindowDataset(load_root(root), _cfg(cache=str(cache)), "train")
    assert len(ds) > 0
    for i in range(len(ds)):
        item = ds[i]
        clip, seg, lab = item["clip"], item["segments"], item["labels"]
        assert clip.shape == (3, 16, 12, 12) and clip.dtype == torch.float32
        assert clip.min() >= -1 and clip.max() <= 1
        assert seg.dtype == torch.float32 and lab.dtype == torch.int64 and len(seg) == len(lab) > 0
        assert torch.all((seg >= 0) & (seg <= 1)) and torch.all(seg[:, 0] < seg[:, 1])
        assert torch.all((lab >= 0) & (lab < 17))
        assert set(item["meta"]) == {"sequence", "start", "window", "fps", "source_fps", "num_frames", "first_frame", "length"}


def test_targets_map_back_to_the_labelled_frames(root):
    sequences = {s.sample: s for s in load_root(root)}
    ds = WindowDataset(list(sequences.values()), _cfg(), "test")
    seen = set()
    for i in range(len(ds)):
        item = ds.windows[i]
        seq = sequences[item.sequence]
        frames = window_to_frames(item.segments.astype(np.float64), item.start, item.size, item.source_fps, item.fps)
        expected = [(seq.gestures[g].start, seq.gestures[g].end) for g in item.gestures]
        assert [tuple(f) for f in frames.tolist()] == expected
        assert item.labels.tolist() == [seq.gestures[g].label - 1 for g in item.gestures]
        seen.update((item.sequence, g) for g in item.gestures)
    # the same rule counted in original frames (30 -> 10 fps: window [w0, w0 + 16) holds frames [3 w0, 3 w0 + 48))
    fits = {
        (w.sequence, i)
        for w in ds.windows
        for i, g in enumerate(sequences[w.sequence].gestures)
        if 3 * w.start <= g.start and g.end < 3 * (w.start + 16)
    }
    assert fits == seen and len(seen) > 0


def test_cached_and_decoded_frames_give_the_same_test_clips(root, cache):
    sequences = load_root(root)
    cached = WindowDataset(sequences, _cfg(cache=str(cache)), "test")
    decoded = WindowDataset(sequences, _cfg(), "test")
    assert len(cached) == len(decoded)
    for i in (0, 1, len(cached) - 1):  # the last is end-aligned
        torch.testing.assert_close(cached[i]["clip"], decoded[i]["clip"])
    last = cached[len(cached) - 1]["meta"]
    assert last["start"] + last["window"] == num_sampled(last["num_frames"], last["source_fps"], 10.0)


def test_training_augments_and_testing_does_not(root, cache):
    sequences = load_root(root)
    train = WindowDataset(sequences, _cfg(cache=str(cache)), "train")
    torch.manual_seed(0)
    a = train[0]["clip"]
    b = train[0]["clip"]
    assert not torch.equal(a, b)  # random crop and jitter
    plain = WindowDataset(sequences, _cfg(cache=str(cache), crop=16, jitter=0.0), "train")
    test = WindowDataset(sequences, _cfg(cache=str(cache), crop=16), "test")
    torch.testing.assert_close(plain[0]["clip"], test[test.windows.index(next(w for w in test.windows if w.start == plain.windows[0].start and w.sequence == plain.windows[0].sequence))]["clip"])


def test_a_sequence_shorter_than_the_window_is_padded(root, cache):
    ds = WindowDataset(load_root(root, [1]), _cfg(cache=str(cache), window=128), "test")
    assert len(ds) == 1
    item = ds[0]
    assert item["clip"].shape == (3, 128, 12, 12) and item["meta"]["length"] == 80
    torch.testing.assert_close(item["clip"][:, 80:], item["clip"][:, 79:80].expand(-1, 48, -1, -1))


def test_a_crop_larger_than_the_frames_is_a_config_error(root, cache):
    ds = WindowDataset(load_root(root), _cfg(cache=str(cache), crop=24), "test")
    with pytest.raises(ConfigError, match="data.crop=24 is larger than the frames"):
        ds[0]


def test_features_mode_reads_the_right_steps(root, tmp_path):
    sequences = load_root(root)
    for seq in sequences:
        steps = features_length(seq.num_frames, seq.fps, 10.0)
        assert steps == 20
        # step j holds the value 100 * sample + j in every channel
        np.save(features_path(tmp_path, seq.sample), np.tile(100.0 * seq.sample + np.arange(steps), (8, 1)).astype(np.float16))
    ds = WindowDataset(sequences, _cfg(features=str(tmp_path), window=32), "test", features=True, feature_dim=8)
    assert all(w.start % 4 == 0 for w in ds.windows)
    for i in range(len(ds)):
        item = ds[i]
        feats, meta = item["features"], item["meta"]
        assert feats.shape == (8, 8) and feats.dtype == torch.float32
        expected = np.minimum(meta["start"] // 4 + np.arange(8), 19) + 100 * meta["sequence"]
        np.testing.assert_array_equal(feats[0].numpy(), expected)
    batch = collate([ds[0], ds[1]])
    assert batch["features"].shape == (2, 8, 8) and len(batch["targets"]) == 2
    np.save(features_path(tmp_path, 1), np.zeros((8, 7), np.float32))
    broken = WindowDataset(sequences, _cfg(features=str(tmp_path), window=32), "test", features=True, feature_dim=8)
    with pytest.raises(DataError, match=r"Sample0001.npy: expected features of shape \(8, 20\), found \(8, 7\)"):
        broken[0]
    with pytest.raises(ConfigError, match="data.features"):
        WindowDataset(sequences, _cfg(), "test", features=True)


def test_collate_and_a_dataloader(root, cache):
    ds = WindowDataset(load_root(root), _cfg(cache=str(cache)), "train")
    batch = next(iter(DataLoader(ds, batch_size=3, shuffle=True, collate_fn=collate)))
    assert batch["clip"].shape == (3, 3, 16, 12, 12)
    assert len(batch["segments"]) == len(batch["labels"]) == len(batch["meta"]) == 3
    assert all(t["segments"] is s for t, s in zip(batch["targets"], batch["segments"]))


def test_from_config(root, cache):
    cfg = Config()
    cfg.data = _cfg(root=str(root), cache=str(cache), train_subjects=[1, 2], test_subjects=[3])
    cfg.model.encoder = "small"
    train, test = WindowDataset.from_config(cfg, "train"), WindowDataset.from_config(cfg, "test")
    assert {w.sequence for w in train.windows} == {1, 2} and {w.sequence for w in test.windows} == {3}
    cfg.data.test_subjects = [36]
    with pytest.raises(DataError, match=r"no folder for subject\(s\) 36"):
        WindowDataset.from_config(cfg, "test")
