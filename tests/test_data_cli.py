"""The data commands: ``mgtutor synth``, ``prepare`` and ``check-data`` end to end on a tiny set."""

from __future__ import annotations

import numpy as np

from mgtutor.cli import main


def test_synth_prepare_and_check_data(tmp_path, capsys):
    root = tmp_path / "synth"
    assert main(["synth", "--out", str(root), "--sequences", "3", "--seconds", "5", "--size", "32", "--seed", "7", "--workers", "1"]) == 0
    assert "wrote 3 sequences" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == ["Sample0001", "Sample0002", "Sample0003", "synthetic.json"]

    assert main(["check-data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "sequences: 3" in out and "problems: 0" in out

    cache = tmp_path / "cache"
    assert main(["prepare", str(root), "--out", str(cache), "--fps", "10", "--short-side", "16", "--subjects", "1-2"]) == 0
    assert "frame cache of 2 sequences" in capsys.readouterr().out
    assert np.load(cache / "Sample0002.npy").shape == (50, 16, 16, 3)

    (root / "Sample0002" / "Sample0002_finelabels.csv").write_text("3,10,20\n3,40,x\n")
    assert main(["check-data", str(root), "--videos", "skip"]) == 1
    out = capsys.readouterr().out
    assert "problems: 1" in out and "Sample0002_finelabels.csv, line 2: expected integers, but end_frame is not" in out


def test_user_errors_exit_2_without_a_traceback(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mgtutor prepare: error: ") and "not a folder" in err and "Traceback" not in err
    assert main(["synth", "--out", str(tmp_path / "s"), "--sequences", "2", "--size", "33"]) == 2
    assert "even" in capsys.readouterr().err
    # a root that is not there is a wrong argument (2), not a problem found in the data (1)
    assert main(["check-data", str(tmp_path / "missing")]) == 2
    assert "missing: not a folder" in capsys.readouterr().err


def test_check_data_and_prepare_apply_one_rule_to_short_videos(tmp_path, capsys):
    """A video that ends much earlier than numFrames (but after its last gesture) was only a warning in
    check-data, while prepare refused it; a frame short is fine for both."""
    root = tmp_path / "synth"
    assert main(["synth", "--out", str(root), "--sequences", "2", "--seconds", "5", "--size", "32", "--workers", "1"]) == 0
    data = root / "Sample0001" / "Sample0001_data.csv"  # the video has 150 frames at 30 fps
    capsys.readouterr()

    data.write_text("151,30,4000\n")  # one frame missing: within the allowance of a second
    assert main(["check-data", str(root), "--no-skeleton"]) == 0
    assert "video has 150 frames, _data.csv says numFrames=151" in capsys.readouterr().out  # a warning
    assert main(["prepare", str(root), "--out", str(tmp_path / "cache1"), "--short-side", "16"]) == 0
    capsys.readouterr()

    data.write_text("240,30,4000\n")  # three seconds missing
    problem = "Sample0001_color.mp4: video has 150 frames, 90 fewer than numFrames=240 in _data.csv (at most 30, 1 s, may be missing)"
    assert main(["check-data", str(root), "--no-skeleton"]) == 1
    out = capsys.readouterr().out
    assert "problems: 1" in out and problem in out
    assert main(["prepare", str(root), "--out", str(tmp_path / "cache2"), "--short-side", "16"]) == 2
    assert problem in capsys.readouterr().err
    assert not list((tmp_path / "cache2").glob("Sample0001*")) and not list((tmp_path / "cache2").glob(".*"))
