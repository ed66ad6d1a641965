"""The frame cache written by ``mgtutor prepare``: contents, resuming, refusing mismatched settings."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from mgtutor.data import synthetic
from mgtutor.data.cache import CACHE_META, cache_path, open_cached, prepare_cache
from mgtutor.data.errors import DataError
from mgtutor.data.smg import load_root
from mgtutor.data.video import decode


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache") / "root"
    return synthetic.write_synthetic(root, sequences=2, seconds=5, size=32, seed=1, workers=1)


def test_prepare_writes_the_decoded_frames(small_root, tmp_path):
    paths = prepare_cache(small_root, tmp_path / "cache", fps=10, short_side=16, progress=False)
    assert [p.name for p in paths] == ["Sample0001.npy", "Sample0002.npy"]
    assert (tmp_path / "cache" / CACHE_META).exists()
    for seq, path in zip(load_root(small_root), paths):
        frames = np.load(path, mmap_mode="r")
        assert frames.shape == (50, 16, 16, 3) and frames.dtype == np.uint8
        np.testing.assert_array_equal(frames, decode(seq.video, 10, seq.num_frames, seq.fps, short_side=16))
        cached = open_cached(tmp_path / "cache", seq, 10, 16)
        assert isinstance(cached, np.memmap)
    assert not list((tmp_path / "cache").glob(".*partial"))


def test_a_resumed_prepare_skips_finished_files_and_redoes_the_rest(small_root, tmp_path):
    cache = tmp_path / "cache"
    prepare_cache(small_root, cache, fps=10, short_side=16, progress=False)
    first, second = cache_path(cache, 1), cache_path(cache, 2)
    reference = np.load(second).copy()
    os.utime(first, ns=(0, 0))  # a marker: a rewrite would change it
    # a killed run leaves a temporary file and no final file for the sequence it was writing
    second.unlink()
    leftover = cache / ".Sample0002.npy.0badf00d.tmp"
    leftover.write_bytes(b"half a file")
    prepare_cache(small_root, cache, fps=10, short_side=16, progress=False)
    assert first.stat().st_mtime_ns == 0
    np.testing.assert_array_equal(np.load(second), reference)
    assert not leftover.exists()


def test_a_cache_made_with_other_settings_is_refused(small_root, tmp_path):
    cache = tmp_path / "cache"
    prepare_cache(small_root, cache, fps=10, short_side=16, progress=False)
    with pytest.raises(DataError, match=r"cache.json: this cache holds frames made with .*'fps': 10.0"):
        prepare_cache(small_root, cache, fps=5, short_side=16, progress=False)
    seq = load_root(small_root)[0]
    with pytest.raises(DataError, match="cache.json"):
        open_cached(cache, seq, 10, 32)
    assert open_cached(tmp_path / "elsewhere", seq, 10, 16) is None


def test_a_truncated_video_stops_prepare_without_leaving_a_file(small_root, tmp_path):
    root = shutil.copytree(small_root, tmp_path / "root")
    video = root / "Sample0002" / "Sample0002_color.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="Sample0002_color.mp4: cannot open the video"):
        prepare_cache(root, cache, fps=10, short_side=16, progress=False)
    assert not cache_path(cache, 2).exists() and not list(cache.glob(".*partial"))
    shutil.copy(small_root / "Sample0002" / "Sample0002_color.mp4", video)
    assert [p.exists() for p in prepare_cache(root, cache, fps=10, short_side=16, progress=False)] == [True, True]


def test_a_video_shorter_than_its_data_file_says_is_refused(small_root, tmp_path):
    root = shutil.copytree(small_root, tmp_path / "root")
    (root / "Sample0001" / "Sample0001_data.csv").write_text("300,30,4000\n")  # the video has 150 frames
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"Sample0001_color.mp4: video has 150 frames, 150 fewer than numFrames=300"):
        prepare_cache(root, cache, fps=10, short_side=16, progress=False)
    assert not cache_path(cache, 1).exists() and not list(cache.glob(".*.tmp"))


def test_a_cached_file_of_the_wrong_length_is_refused(small_root, tmp_path):
    cache = tmp_path / "cache"
    prepare_cache(small_root, cache, fps=10, short_side=16, progress=False)
    np.save(cache_path(cache, 1), np.zeros((7, 16, 16, 3), np.uint8))
    with pytest.raises(DataError, match=r"Sample0001.npy: expected uint8 frames of shape \(50, H, W, 3\)"):
        open_cached(cache, load_root(small_root)[0], 10, 16)
