"""Reading and checking SMG roots: every malformed input gives an error naming its file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mgtutor.data import synthetic
from mgtutor.data.errors import DataError
from mgtutor.data.smg import (
    JOINTS,
    SKELETON_COLUMNS,
    Gesture,
    check_root,
    find_samples,
    index_release,
    load_root,
    load_sequence,
    read_data,
    read_labels,
    read_skeleton,
    write_data,
    write_labels,
    write_skeleton,
)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """Three synthetic sequences of 5 s (frozen: tests copy it before changing anything)."""
    root = tmp_path_factory.mktemp("smg") / "root"
    return synthetic.write_synthetic(root, sequences=3, seconds=5, size=32, seed=0, workers=1)


@pytest.fixture
def root(small_root, tmp_path):
    return shutil.copytree(small_root, tmp_path / "root", symlinks=True)


def test_joint_order_is_kinect_v2s():
    assert len(JOINTS) == 25 and SKELETON_COLUMNS == 275
    assert JOINTS[:4] == ("SpineBase", "SpineMid", "Neck", "Head")
    assert JOINTS[20:] == ("SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight")


def test_labels_round_trip_exactly(tmp_path):
    gestures = [Gesture(17, 0, 0), Gesture(3, 10, 200), Gesture(3, 5, 8), Gesture(1, 150, 160)]  # file order kept
    path = tmp_path / "Sample0001_finelabels.csv"
    write_labels(path, gestures)
    assert path.read_text() == "17,0,0\n3,10,200\n3,5,8\n1,150,160\n"
    assert read_labels(path, num_frames=201) == gestures


def test_data_and_skeleton_round_trip(tmp_path):
    write_data(tmp_path / "d.csv", 2700, 30.0, 4000)
    assert (tmp_path / "d.csv").read_text() == "2700,30,4000\n"
    info = read_data(tmp_path / "d.csv")
    assert (info.num_frames, info.fps, info.max_depth) == (2700, 30.0, 4000)
    (tmp_path / "h.csv").write_text("numFrames,fps,maxDepth\n100,29.97,3000\n")
    assert read_data(tmp_path / "h.csv").fps == 29.97
    values = np.random.default_rng(0).normal(size=(4, 25, 11))
    write_skeleton(tmp_path / "s.csv", values)
    np.testing.assert_allclose(read_skeleton(tmp_path / "s.csv"), values, atol=5e-4)
    assert "-0.000" not in (tmp_path / "s.csv").read_text()


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("1,10,20\n5,30\n", 2, "expected 3 comma-separated values label,start_frame,end_frame, got 2"),
        ("1,10,20\n2,20,30,40\n", 2, "got 4"),
        ("1,10,20\n\n1,x,20\n", 3, "expected integers, but start_frame is not"),
        ("1,10.5,20\n", 1, "start_frame is not"),
        ("18,10,20\n", 1, "label 18 is outside 1..17"),
        ("0,10,20\n", 1, "label 0 is outside 1..17"),
        ("4,30,20\n", 1, "start frame 30 is after end frame 20"),
        ("4,-1,20\n", 1, "start frame -1 is negative"),
        ("4,10,100\n", 1, "end frame 100 is beyond the last frame 99"),
    ],
)
def test_each_malformed_label_row_names_file_and_line(tmp_path, text, line, expected):
    path = tmp_path / "Sample0007_finelabels.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_labels(path, num_frames=100)
    assert f"Sample0007_finelabels.csv, line {line}: " in str(err.value)
    assert expected in str(err.value)


def test_all_bad_rows_are_reported_not_only_the_first(tmp_path):
    path = tmp_path / "Sample0001_finelabels.csv"
    path.write_text("1,2,3\n99,1,2\n4,5\n2,9,1\n")
    with pytest.raises(DataError) as err:
        read_labels(path)
    assert [p.split(", line ")[1][0] for p in err.value.problems] == ["2", "3", "4"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "expected exactly one row numFrames,fps,maxDepth, found 0"),
        ("100,30\n", "line 1: expected 3 comma-separated values numFrames,fps,maxDepth, got 2"),
        ("abc,30,4000\n", "line 1: numFrames must be a whole number from 1 to 100000000, got 'abc'"),
        ("1000000000000,30,4000\n", "line 1: numFrames must be a whole number from 1 to 100000000"),
        ("100,fast,4000\n", "line 1: fps must be a frame rate from 1 to 1000 frames a second, got 'fast'"),
        # an infinite or vanishing frame rate once made prepare and train loop for ever
        ("100,inf,4000\n", "line 1: fps must be a frame rate from 1 to 1000 frames a second, got 'inf'"),
        ("100,1e-300,4000\n", "line 1: fps must be a frame rate from 1 to 1000 frames a second, got '1e-300'"),
        ("100,nan,4000\n", "got 'nan'"),
        ("100,0,4000\n", "got '0'"),
        ("100,30,4000\n100,30,4000\n", "found 2"),
    ],
)
def test_malformed_data_files(tmp_path, text, expected):
    path = tmp_path / "Sample0001_data.csv"
    path.write_text(text)
    with pytest.raises(DataError, match="Sample0001_data.csv") as err:
        read_data(path)
    assert expected in str(err.value)


def test_malformed_skeleton_rows_name_their_line(tmp_path):
    path = tmp_path / "Sample0001_skeleton.csv"
    good = ",".join(["0.5"] * 275)
    path.write_text(f"{good}\n{good},1\n")
    with pytest.raises(DataError, match=r"Sample0001_skeleton.csv, line 2: expected 275 values \(25 joints x 11\), got 276"):
        read_skeleton(path)
    path.write_text(f"{good}\n{good}\n{good[:-3]}nan?\n")
    with pytest.raises(DataError, match="line 3: expected numbers"):
        read_skeleton(path)


def test_missing_and_unreadable_files(root, tmp_path):
    (root / "Sample0002" / "Sample0002_finelabels.csv").unlink()
    with pytest.raises(DataError, match="Sample0002_finelabels.csv: file is missing"):
        load_sequence(root / "Sample0002")
    (root / "Sample0003" / "Sample0003_data.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="Sample0003_data.csv: cannot read"):
        load_sequence(root / "Sample0003")
    with pytest.raises(DataError, match="no SampleXXXX/ folders"):
        find_samples(tmp_path / "root" / "Sample0001")
    with pytest.raises(DataError, match="not a folder"):
        find_samples(tmp_path / "nowhere")


def test_load_root_selects_subjects_and_reports_every_problem(root):
    assert [s.sample for s in load_root(root)] == [1, 2, 3]
    seqs = load_root(root, subjects=[3, 1])
    assert [s.sample for s in seqs] == [1, 3] and seqs[0].name == "Sample0001"
    assert seqs[0].video == root / "Sample0001" / "Sample0001_color.mp4"
    with pytest.raises(DataError, match=r"no folder for subject\(s\) 4-6, 9; found 1-3"):
        load_root(root, subjects=[1, 4, 5, 6, 9])
    (root / "Sample0001" / "Sample0001_finelabels.csv").write_text("1,5,3\n")
    (root / "Sample0002" / "Sample0002_finelabels.csv").write_text("30,5,6\n")
    with pytest.raises(DataError) as err:
        load_root(root)
    assert len(err.value.problems) == 2


def test_loading_keeps_every_gesture(small_root):
    for seq in load_root(small_root):
        made = synthetic.generate_sequence(seq.sample, seconds=5, size=32, seed=0)
        assert list(seq.gestures) == made.gestures


def test_check_root_on_a_clean_set(small_root):
    report = check_root(small_root)
    assert report.ok and report.problems == [] and report.warnings == []
    text = report.summary()
    assert "sequences: 3" in text and "frames: 450" in text and "problems: 0" in text
    assert "gestures per class: 1: " in text and "gesture duration (frames): mean" in text


def test_check_root_lists_every_problem(root):
    (root / "Sample0001" / "Sample0001_finelabels.csv").write_text("1,5,3\n2,10,20\n19,1,2\n")
    video = root / "Sample0002" / "Sample0002_color.mp4"
    video.write_bytes(video.read_bytes()[:2000])  # truncated
    (root / "Sample0003" / "Sample0003_skeleton.csv").unlink()
    report = check_root(root)
    assert not report.ok
    joined = "\n".join(report.problems)
    assert "Sample0001_finelabels.csv, line 1: start frame 5 is after end frame 3" in joined
    assert "Sample0001_finelabels.csv, line 3: label 19 is outside 1..17" in joined
    assert "Sample0002_color.mp4: cannot open the video" in joined
    assert "Sample0003_skeleton.csv: file is missing" in joined
    assert len(report.problems) == 4
    assert "problems: 4" in report.summary()


def test_check_root_checks_a_sequence_s_video_after_its_labels_fail(root):
    # both problems at once, not the video's only after the labels are fixed
    (root / "Sample0001" / "Sample0001_finelabels.csv").write_text("3,10,x\n")
    video = root / "Sample0001" / "Sample0001_color.mp4"
    video.write_bytes(video.read_bytes()[:2000])
    (root / "Sample0002" / "Sample0002_data.csv").write_text("150,inf,4000\n")
    (root / "Sample0002" / "Sample0002_skeleton.csv").write_text("1,2,3\n")
    report = check_root(root)
    joined = "\n".join(report.problems)
    assert "Sample0001_finelabels.csv, line 1: expected integers" in joined
    assert "Sample0001_color.mp4: cannot open the video" in joined
    assert "Sample0002_data.csv, line 1: fps must be a frame rate from 1 to 1000 frames a second, got 'inf'" in joined
    assert "Sample0002_skeleton.csv, line 1: expected 275 values" in joined
    assert len(report.problems) == 4 and [s.sample for s in report.sequences] == [3]


def test_check_root_refuses_what_is_not_a_root(tmp_path):
    with pytest.raises(DataError, match="nowhere: not a folder"):
        check_root(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no SampleXXXX/ folders found"):
        check_root(tmp_path)


def _fake_release(src, tmp_path):
    """A challenge-style download: videos in one tree, csv files in another, nested by split."""
    videos, labels = tmp_path / "dl" / "videos", tmp_path / "dl" / "labels"
    for sample, split in ((1, "train"), (2, "train"), (3, "test")):
        name = f"Sample{sample:04d}"
        (videos / split).mkdir(parents=True, exist_ok=True)
        (labels / split / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(src / name / f"{name}_color.mp4", videos / split)
        for kind in ("finelabels", "data", "skeleton"):
            shutil.copy(src / name / f"{name}_{kind}.csv", labels / split / name)
    (labels / "README.txt").write_text("not a sample file")
    return videos, labels


def test_index_release_links_a_split_download(small_root, tmp_path):
    videos, labels = _fake_release(small_root, tmp_path)
    out = tmp_path / "indexed"
    report = index_release([videos, labels], out)
    assert sorted(report.linked) == [1, 2, 3] and report.missing == {}
    link = out / "Sample0003" / "Sample0003_color.mp4"
    assert link.is_symlink() and link.resolve() == (videos / "test" / "Sample0003_color.mp4").resolve()
    assert [s.gestures for s in load_root(out)] == [s.gestures for s in load_root(small_root)]
    assert check_root(out).ok
    assert sorted(index_release([videos, labels], out).linked) == [1, 2, 3]  # rerun: links kept


def test_index_release_reports_gaps_and_refuses_duplicates(small_root, tmp_path):
    videos, labels = _fake_release(small_root, tmp_path)
    (videos / "test" / "Sample0003_color.mp4").unlink()
    report = index_release([videos, labels], tmp_path / "out")
    assert report.missing == {3: ["color.mp4"]}
    assert "Sample0003: missing color.mp4" in report.summary()
    shutil.copy(videos / "train" / "Sample0001_color.mp4", labels / "train")
    with pytest.raises(DataError, match="Sample0001_color.mp4 appears twice"):
        index_release([videos, labels], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()  # refused before linking anything
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no SampleXXXX_color.mp4"):
        index_release([tmp_path / "empty"], tmp_path / "out3")
    with pytest.raises(DataError, match="not a folder"):
        index_release([tmp_path / "nowhere"], tmp_path / "out3")


def test_the_index_script_is_thin_over_the_library(small_root, tmp_path, capsys):
    import runpy

    videos, labels = _fake_release(small_root, tmp_path)
    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "data_scripts" / "index_smg_release.py"))
    assert script["main"]([str(videos), str(labels), "--out", str(tmp_path / "out")]) == 0
    assert "indexed 3 sequence(s)" in capsys.readouterr().out
    assert script["main"]([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err
