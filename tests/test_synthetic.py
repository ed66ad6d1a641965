"""The synthetic micro-gesture generator: SMG-format files, determinism, statistics, motions."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from mgtutor.data import synthetic
from mgtutor.data.errors import DataError
from mgtutor.data.smg import JOINT_INDEX, load_root, read_data, read_labels, read_skeleton
from mgtutor.data.video import decode

ANCHOR_JOINT = {"head": "Head", "neck": "Neck", "spine_shoulder": "SpineShoulder", "spine_mid": "SpineMid", "hip_left": "HipLeft", "hip_right": "HipRight"}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "a"
    synthetic.write_synthetic(root, sequences=2, seconds=6, size=64, seed=3, workers=1)
    return root


def test_table_has_17_distinct_classes():
    assert [s.label for s in synthetic.GESTURES] == list(range(1, 18))
    assert len(set(synthetic.CLASS_NAMES)) == 17
    assert synthetic.CLASS_NAMES[16] == "non-micro-gesture"


def test_split_subjects_follows_smg_for_40_and_keeps_an_eighth_for_test():
    train, test = synthetic.split_subjects(40)
    assert train == list(range(1, 36)) and test == list(range(36, 41))
    assert synthetic.split_subjects(8) == (list(range(1, 8)), [8])
    assert synthetic.split_subjects(2) == ([1], [2])
    with pytest.raises(ValueError):
        synthetic.split_subjects(1)


def test_written_set_round_trips(tiny_set):
    sequences = load_root(tiny_set)
    assert [s.sample for s in sequences] == [1, 2]
    params = json.loads((tiny_set / synthetic.MARKER).read_text())
    assert params["sequences"] == 2 and params["seed"] == 3
    for seq in sequences:
        made = synthetic.generate_sequence(seq.sample, seconds=6, size=64, seed=3)
        assert list(seq.gestures) == made.gestures  # labels identical after write -> read
        assert seq.num_frames == 180 and seq.fps == 30.0
        assert read_data(seq.path("data")).num_frames == 180
        skeleton = read_skeleton(seq.path("skeleton"))
        assert skeleton.shape == (180, 25, 11)
        np.testing.assert_allclose(skeleton[..., 7:9], made.joints, atol=1e-3)  # pixel coordinates
        frames = decode(seq.video, fps=30, num_frames=seq.num_frames, source_fps=seq.fps)
        assert frames.shape == (180, 64, 64, 3) and frames.dtype == np.uint8


def test_same_seed_same_files_whatever_the_workers(tiny_set, tmp_path):
    again = synthetic.write_synthetic(tmp_path / "b", sequences=2, seconds=6, size=64, seed=3, workers=2)
    for name in ("finelabels.csv", "data.csv", "skeleton.csv"):
        for sample in ("Sample0001", "Sample0002"):
            assert (tiny_set / sample / f"{sample}_{name}").read_bytes() == (again / sample / f"{sample}_{name}").read_bytes()
    for sample in ("Sample0001", "Sample0002"):
        a = decode(tiny_set / sample / f"{sample}_color.mp4", fps=10, num_frames=180, source_fps=30)
        b = decode(again / sample / f"{sample}_color.mp4", fps=10, num_frames=180, source_fps=30)
        np.testing.assert_array_equal(a, b)
    other = synthetic.generate_sequence(1, seconds=6, size=64, seed=4)
    assert not np.allclose(other.joints, synthetic.generate_sequence(1, seconds=6, size=64, seed=3).joints)


def _schedules(difficulty, n=60, seconds=90.0):
    level = synthetic.LEVELS[difficulty]
    return [synthetic.make_schedule(np.random.default_rng([0, i, 1]), round(seconds * 30), 30.0, level) for i in range(n)]


@pytest.mark.parametrize("difficulty", synthetic.DIFFICULTIES)
def test_schedule_statistics_resemble_smg(difficulty):
    schedules = _schedules(difficulty)
    gestures = [g for s in schedules for g in s]
    lengths = np.array([g.end - g.start + 1 for g in gestures])
    assert 45 <= lengths.mean() <= 57  # SMG: mean 51 frames at 30 fps
    assert lengths.min() >= 15 and lengths.max() <= 200
    assert np.median(lengths) < lengths.mean()  # long tail
    assert {g.label for g in gestures} == set(range(1, 18))
    for schedule in schedules:
        for a in schedule:
            assert 0 <= a.start <= a.end < 2700
            for b in schedule:
                if a is not b and a.start <= b.end and b.start <= a.end:  # co-occurring: disjoint body parts
                    assert not synthetic.GESTURES[a.label - 1].parts & synthetic.GESTURES[b.label - 1].parts


def _overlaps_and_back_to_back(schedules):
    overlaps = back_to_back = 0
    for s in schedules:
        for a, b in zip(s, s[1:]):
            overlaps += b.start <= a.end
            back_to_back += b.start == a.end + 1
    return overlaps, back_to_back


def test_hard_has_more_overlaps_and_back_to_back_gestures():
    demo, hard = _overlaps_and_back_to_back(_schedules("demo")), _overlaps_and_back_to_back(_schedules("hard"))
    assert demo[0] > 0 and demo[1] > 0
    assert hard[0] > 2 * demo[0] and hard[1] > demo[1]


def test_hands_reach_their_targets_mid_gesture():
    level = synthetic.LEVELS["demo"]
    checked = set()
    for sample in range(1, 30):
        seq = synthetic.generate_sequence(sample, seconds=60, size=128, seed=0)
        unit = seq.subject.scale * seq.size
        for g in seq.instances:
            spec = synthetic.GESTURES[g.label - 1]
            mid = (g.start + g.end) // 2
            for side, (anchor, dx, dy) in spec.hands:
                if anchor not in ANCHOR_JOINT:
                    continue
                hand = seq.joints[mid, JOINT_INDEX[f"Hand{side.title()}"]]
                target = seq.joints[mid, JOINT_INDEX[ANCHOR_JOINT[anchor]]] + unit * np.array([dx, dy])
                wiggle = 0.0 if spec.wiggle is None else 1.2 * np.hypot(*spec.wiggle[:2]) * level.amplitude
                assert np.linalg.norm(hand - target) <= unit * (wiggle + 0.04), (g.label, sample)
                checked.add(g.label)
    assert checked == {s.label for s in synthetic.GESTURES if any(a in ANCHOR_JOINT for _, (a, _, _) in s.hands)}


def test_skeleton_pixels_match_the_rendered_figure():
    seq = synthetic.generate_sequence(5, seconds=5, size=128, seed=1)
    frame = next(synthetic.render(seq, 30, 31)).astype(int)
    skin = np.array(seq.subject.skin)
    hand = np.array(synthetic.LEVELS[seq.difficulty].glove or skin)
    # the face 2 pixels below the head joint (hair covers the upper half of the head), and the hands
    for joint, down, colour in (("Head", 2, skin), ("HandLeft", 0, hand), ("HandRight", 0, hand)):
        u, v = np.rint(seq.joints[30, JOINT_INDEX[joint]]).astype(int)
        assert np.abs(frame[v + down, u] - colour).max() <= 20, joint  # lighting drift and noise only
    # world coordinates: a person 1.55-1.95 m tall, 2-4 m from the camera
    values = synthetic.skeleton_values(seq)
    head_y, foot_y = values[:, JOINT_INDEX["Head"], 1], values[:, JOINT_INDEX["FootLeft"], 1]
    assert np.all((head_y - foot_y > 1.2) & (head_y - foot_y < 2.0))
    assert np.all((values[..., 2] > 2.0) & (values[..., 2] < 4.5))
    quaternion = values[:, JOINT_INDEX["ElbowLeft"], 3:7]
    np.testing.assert_allclose(np.linalg.norm(quaternion, axis=-1), 1.0, atol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="difficulty"):
        synthetic.generate_sequence(1, difficulty="easy")
    with pytest.raises(ValueError, match="even"):
        synthetic.generate_sequence(1, size=63)


def test_ensure_synthetic_reuses_a_finished_set_and_refuses_a_different_one(tiny_set):
    cfg = SimpleNamespace(
        synthetic_dir=str(tiny_set), synthetic_sequences=2, synthetic_seconds=6.0, synthetic_size=64,
        synthetic_fps=30.0, synthetic_seed=3, synthetic_difficulty="demo",
    )  # fmt: skip
    before = (tiny_set / "Sample0001" / "Sample0001_color.mp4").stat().st_mtime_ns
    assert synthetic.ensure_synthetic(cfg) == tiny_set
    assert (tiny_set / "Sample0001" / "Sample0001_color.mp4").stat().st_mtime_ns == before
    cfg.synthetic_seed = 4
    with pytest.raises(DataError, match="synthetic.json"):
        synthetic.ensure_synthetic(cfg)
    labels = read_labels(tiny_set / "Sample0002" / "Sample0002_finelabels.csv")
    assert all(1 <= g.label <= 17 for g in labels)
