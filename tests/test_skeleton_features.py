"""Skeleton features for the lessons' fast CPU training: shapes, what they respond to, the dataset reading them."""

import dataclasses

import numpy as np
import pytest

from mgtutor.config import DataConfig
from mgtutor.data.dataset import WindowDataset, features_length
from mgtutor.data.skeleton_features import SKELETON_FEATURE_DIM, skeleton_features, write_skeleton_features
from mgtutor.data.smg import JOINT_INDEX, load_root, read_skeleton
from mgtutor.data.synthetic import write_synthetic


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("syn") / "root", sequences=2, seconds=12.0, size=48, seed=3)
    return load_root(root)


def test_shape_and_standardisation(sequences):
    seq = sequences[0]
    features = skeleton_features(seq, 10.0)
    assert features.dtype == np.float32
    assert features.shape == (SKELETON_FEATURE_DIM, features_length(seq.num_frames, seq.fps, 10.0))
    moving = features.std(1) > 0.1  # channels that vary are standardised to unit spread
    assert moving.sum() > 10
    np.testing.assert_allclose(features[moving].mean(1), 0.0, atol=1e-4)


def test_motion_channels_follow_the_skeleton(sequences):
    """A feature step's motion channel of a joint is large where that joint moves, against a hand computation."""
    seq = sequences[0]
    fps = seq.fps  # no resampling: step j averages original frames 4j..4j+3
    features = skeleton_features(seq, fps)
    joints = read_skeleton(seq.path("skeleton"))[..., :3]
    hand = JOINT_INDEX["HandRight"]
    speed = np.abs(np.diff(joints[:, hand, 0], prepend=joints[:1, hand, 0]))
    steps = len(speed) // 4
    by_step = speed[: steps * 4].reshape(steps, 4).mean(1)
    channel = 75 + hand * 3  # motion block after the 75 position channels, x of HandRight
    correlation = np.corrcoef(by_step, features[channel, :steps])[0, 1]
    assert correlation > 0.99


def test_dataset_reads_written_features(sequences, tmp_path):
    out = write_skeleton_features(sequences, tmp_path / "features", 10.0)
    cfg = dataclasses.replace(DataConfig(), window=32, features=str(out))
    dataset = WindowDataset(sequences, cfg, "test", features=True, feature_dim=SKELETON_FEATURE_DIM)
    item = dataset[0]
    assert item["features"].shape == (SKELETON_FEATURE_DIM, 8)
    stored = np.load(out / f"Sample{sequences[0].sample:04d}.npy")
    first = item["meta"]["start"] // 4
    np.testing.assert_array_equal(item["features"].numpy(), stored[:, first : first + 8])
