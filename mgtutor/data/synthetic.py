"""Synthetic micro-gestures in SMG's on-disk format, so every lesson and test runs the real pipeline.

A stick figure with the 25 Kinect joints stands facing the camera, sways a little and now and then makes
one of 17 gestures (:data:`GESTURES`, one table). Each sequence is written exactly like an SMG sample:
``SampleXXXX_color.mp4`` (H.264), ``_finelabels.csv``, ``_data.csv`` and ``_skeleton.csv``.

How a sequence is made (all from ``numpy.random.default_rng([seed, sample, part])``, so a seed gives the
same files whatever the number of worker processes):
1. a subject: body proportions, position in the frame, colours, background (one subject per sequence,
   so the cross-subject split of SMG applies: the sample id is the subject id);
2. a schedule: gesture classes, durations (log-normal, mean about 51 frames at 30 fps, clipped to
   0.5-6.7 s), gaps, back-to-back and co-occurring gestures (only ones moving disjoint body parts);
3. a pose per frame in body units (y down, 1.0 = body height): idle sway, each gesture's motion eased in
   and out, arms by two-link inverse kinematics, a little joint jitter;
4. rendering with PIL into RGB frames with slow lighting drift and sensor noise, encoded by PyAV; the
   level sets how the figure is drawn (the "demo" level's thick limbs and gloved hands stay visible at
   the 64x64 pixels a CPU model sees).

Coordinates: image x grows to the right, y downwards; the subject faces the camera, so the subject's left
side (``ShoulderLeft``...) is on the image's right (+x).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, get_args

import av
import numpy as np
from PIL import Image, ImageDraw

from mgtutor.config import ConfigError
from mgtutor.data.errors import DataError
from mgtutor.data.smg import JOINT_INDEX, JOINT_PARENTS, JOINTS, Gesture, sample_name, write_data, write_labels, write_skeleton
from mgtutor.data.windows import check_frame_rate
from mgtutor.files import atomic_path, check_output_folder, write_atomic

DifficultyName = Literal["demo", "hard"]  # the levels of LEVELS; also the allowed data.synthetic_difficulty
DIFFICULTIES: tuple[str, ...] = get_args(DifficultyName)
MARKER = "synthetic.json"  # written last into a finished synthetic root, with the parameters that made it
FORMAT_VERSION = 1


@dataclass(frozen=True)
class GestureSpec:
    """One synthetic gesture class and how it moves the body.

    ``hands``: hand -> (anchor, dx, dy), the point the hand goes to, relative to a body point that moves
    with the torso (body units; +dx is the subject's left). ``wiggle``: (ax, ay, hz, shape) added to the
    hands while held ("sin", "circle" or "pulse"; a second hand mirrors it). ``shift``: (channel, amount,
    hz, shape) for motions that are not hand targets. ``parts``: body parts it moves; two gestures may
    co-occur only when their parts are disjoint.
    """

    label: int
    name: str
    motion: str
    parts: frozenset[str]
    hands: tuple[tuple[str, tuple[str, float, float]], ...] = ()
    wiggle: tuple[float, float, float, str] | None = None
    shift: tuple[str, float, float, str] | None = None


_ARMS = frozenset({"left_arm", "right_arm"})
GESTURES: tuple[GestureSpec, ...] = (
    GestureSpec(1, "folding arms", "both forearms cross in front of the chest and stay", _ARMS,
                hands=(("left", ("spine_shoulder", -0.11, 0.09)), ("right", ("spine_shoulder", 0.11, 0.11)))),
    GestureSpec(2, "shaking leg", "the right knee shakes sideways, about 4 Hz", frozenset({"right_leg"}),
                shift=("knee_right_x", 0.03, 4.0, "sin")),
    GestureSpec(3, "pulling collar", "right hand at the collar tugs down, about 1.5 Hz", frozenset({"right_arm"}),
                hands=(("right", ("spine_shoulder", -0.01, 0.0)),), wiggle=(0.0, 0.025, 1.5, "pulse")),
    GestureSpec(4, "scratching head", "left hand above and behind the head scratches, about 3 Hz", frozenset({"left_arm"}),
                hands=(("left", ("head", 0.075, -0.045)),), wiggle=(0.015, 0.0, 3.0, "sin")),
    GestureSpec(5, "rubbing chest", "left hand on the chest rubs small circles, about 1 Hz", frozenset({"left_arm"}),
                hands=(("left", ("spine_shoulder", 0.0, 0.07)),), wiggle=(0.012, 0.012, 1.0, "circle")),
    GestureSpec(6, "scratching cheek", "right hand at the right cheek scratches up and down, about 4 Hz", frozenset({"right_arm"}),
                hands=(("right", ("head", -0.05, 0.012)),), wiggle=(0.0, 0.012, 4.0, "sin")),
    GestureSpec(7, "rubbing eyes", "both hands at the eyes rub sideways, about 2 Hz", _ARMS,
                hands=(("left", ("head", 0.028, -0.008)), ("right", ("head", -0.028, -0.008))), wiggle=(0.015, 0.0, 2.0, "sin")),
    GestureSpec(8, "touching neck", "left hand rests on the left side of the neck", frozenset({"left_arm"}),
                hands=(("left", ("neck", 0.035, 0.0)),)),
    GestureSpec(9, "fidgeting fingers", "both hands together at the belly circle each other, about 2 Hz", _ARMS,
                hands=(("left", ("spine_mid", 0.018, 0.03)), ("right", ("spine_mid", -0.018, 0.03))), wiggle=(0.015, 0.015, 2.0, "circle")),
    GestureSpec(10, "touching chin", "right hand rests under the chin", frozenset({"right_arm"}),
                hands=(("right", ("head", 0.0, 0.06)),)),
    GestureSpec(11, "hands on hips", "both hands on the hips, elbows out", _ARMS,
                hands=(("left", ("hip_left", 0.03, -0.06)), ("right", ("hip_right", -0.03, -0.06)))),
    GestureSpec(12, "shrugging", "both shoulders (and arms) go up and down, about 1.2 Hz", frozenset({"shoulders"}) | _ARMS,
                shift=("shoulders_y", -0.035, 1.2, "pulse")),
    GestureSpec(13, "tilting head", "the head sways from side to side, about 0.8 Hz", frozenset({"head"}),
                shift=("head_x", 0.04, 0.8, "sin")),
    GestureSpec(14, "flapping hand", "right hand out at the side flaps sideways, about 2.5 Hz", frozenset({"right_arm"}),
                hands=(("right", ("rest_right", -0.09, -0.07)),), wiggle=(0.03, 0.0, 2.5, "sin")),
    GestureSpec(15, "leaning", "the upper body leans to one side and stays", frozenset({"torso", "head", "shoulders"}) | _ARMS,
                shift=("lean_x", 0.06, 0.0, "hold")),
    GestureSpec(16, "tapping foot", "the left foot taps up and down, about 3 Hz", frozenset({"left_leg"}),
                shift=("foot_left_y", -0.035, 3.0, "pulse")),
    GestureSpec(17, "non-micro-gesture", "one arm (either) reaches out to a random point away from the body", frozenset({"reach"}) | _ARMS),
)  # fmt: skip
CLASS_NAMES = tuple(spec.name for spec in GESTURES)


@dataclass(frozen=True)
class Difficulty:
    """Knobs that make the task easier or harder.

    The last three are about drawing: at the 64x64 pixels a CPU model sees, the "hard" level's hands are
    1-2 pixel skin-coloured dots beside a skin-coloured face; the "demo" level draws thicker limbs and
    gloved hands, large blobs of one bright colour that every subject's shirt and background avoid.
    """

    amplitude: float  # scale of wiggles and shifts
    reach: float  # fraction of the way from rest to a gesture's hand target
    gap_seconds: float  # mean extra gap between gestures (exponential), after a 0.5 s minimum
    back_to_back: float  # probability that the next gesture starts right after the previous one
    overlap: float  # probability of adding a co-occurring gesture (disjoint body parts)
    scale: tuple[float, float]  # body height / frame size
    offset: float  # largest horizontal shift of the body, in frame sizes
    target_jitter: float  # per-instance jitter of hand targets (body units)
    noise: int  # sensor noise amplitude (grey levels)
    clutter: int  # background objects
    limb_width: float = 1.0  # factor on the widths of limbs, neck and feet
    hand_radius: float = 0.028  # body units
    glove: tuple[int, int, int] | None = None  # colour of the hands (None: the subject's skin)


LEVELS: dict[DifficultyName, Difficulty] = {
    # demo: large motions, a big figure, no clutter, thick limbs and yellow gloves
    "demo": Difficulty(2.5, 1.0, 1.5, 0.15, 0.05, (0.84, 0.92), 0.05, 0.008, 2, 0, limb_width=1.8, hand_radius=0.05, glove=(255, 230, 0)),
    "hard": Difficulty(0.5, 0.8, 1.0, 0.3, 0.25, (0.62, 0.92), 0.15, 0.02, 6, 5),
}

# gesture duration in seconds: log-normal with mean 51 / 30 s (SMG's mean of 51 frames at 30 fps), clipped
_DURATION_SIGMA = 0.55
_DURATION_MU = math.log(51 / 30) - _DURATION_SIGMA**2 / 2
_DURATION_RANGE = (15 / 30, 200 / 30)

_LEAVES = ("Head", "FootLeft", "FootRight", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight")


def split_subjects(sequences: int) -> tuple[list[int], list[int]]:
    """Train and test subjects of a synthetic set: the last eighth (at least one) are test subjects,
    which for 40 sequences is SMG's split, 1-35 train and 36-40 test."""
    if sequences < 2:
        raise ValueError(f"a synthetic set needs at least 2 sequences to have train and test subjects, got {sequences}")
    test = max(1, round(sequences / 8))
    ids = list(range(1, sequences + 1))
    return ids[:-test], ids[-test:]


@dataclass(frozen=True)
class Subject:
    """One synthetic person: proportions (body units), placement (frame units) and colours (RGB)."""

    scale: float  # body height / frame size
    centre_x: float  # pelvis x / frame size
    top: float  # head top y / frame size
    height_m: float  # body height in metres (world coordinates of the skeleton)
    shoulder: float
    hip: float
    arm: float  # factor on arm lengths
    leg: float  # factor on leg lengths
    head: float  # head radius
    sway_hz: float
    sway_phase: float
    short_sleeves: bool
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    shoes: tuple[int, int, int]
    background: tuple[int, int, int]


_SKIN = ((241, 194, 160), (224, 172, 120), (198, 134, 86), (161, 102, 60), (112, 72, 44), (255, 220, 190))
_HAIR = ((30, 25, 20), (90, 60, 30), (170, 130, 70), (200, 190, 170), (60, 40, 30))


def _colour(rng: np.random.Generator, low: int, high: int, avoid: tuple[tuple[int, int, int], ...] = ()) -> tuple[int, int, int]:
    """A random colour, drawn again while it is within 120 (sum over channels) of a colour in ``avoid``."""
    while True:
        colour = tuple(int(v) for v in rng.integers(low, high, 3))
        if all(np.abs(np.subtract(colour, other)).sum() >= 120 for other in avoid):
            return colour


def make_subject(rng: np.random.Generator, level: Difficulty) -> Subject:
    scale = float(rng.uniform(*level.scale))
    head = float(rng.uniform(0.058, 0.072))
    gloves = () if level.glove is None else (level.glove,)
    # keep shirts away from skin tones (and gloves) so hands stay visible in front of the body
    shirt = _colour(rng, 20, 235, _SKIN + gloves)
    return Subject(
        scale=scale,
        centre_x=0.5 + float(rng.uniform(-level.offset, level.offset)),
        top=float(rng.uniform(0.02, max(0.021, 0.97 - scale * (0.995 + head - 0.065)))),
        height_m=float(rng.uniform(1.55, 1.95)),
        shoulder=float(rng.uniform(0.105, 0.135)),
        hip=float(rng.uniform(0.05, 0.07)),
        arm=float(rng.uniform(0.93, 1.07)),
        leg=float(rng.uniform(0.95, 1.05)),
        head=head,
        sway_hz=float(rng.uniform(0.1, 0.25)),
        sway_phase=float(rng.uniform(0, 2 * math.pi)),
        short_sleeves=bool(rng.random() < 0.5),
        skin=_SKIN[rng.integers(len(_SKIN))],
        hair=_HAIR[rng.integers(len(_HAIR))],
        shirt=shirt,
        trousers=_colour(rng, 15, 140),
        shoes=_colour(rng, 0, 60),
        background=_colour(rng, 90, 220, gloves),
    )


@dataclass(frozen=True)
class Instance:
    """One scheduled gesture with its per-instance variation (frames are inclusive, at the video's fps)."""

    label: int
    start: int
    end: int
    rate: float  # multiplies the spec's frequency
    amplitude: float  # multiplies wiggle and shift amplitudes
    phase: float
    jitter: tuple[float, float]  # added to hand targets
    side: int  # +1 or -1: the lean's direction; for label 17, which arm (+1 left)
    reach: tuple[float, float]  # label 17: direction (radians) and distance of the reach


def _duration(rng: np.random.Generator, fps: float) -> int:
    seconds = float(np.clip(rng.lognormal(_DURATION_MU, _DURATION_SIGMA), *_DURATION_RANGE))
    return max(2, round(seconds * fps))


def _instance(rng: np.random.Generator, label: int, start: int, end: int, level: Difficulty) -> Instance:
    return Instance(
        label, start, end,
        rate=float(rng.uniform(0.85, 1.15)),
        amplitude=float(rng.uniform(0.8, 1.2)),
        phase=float(rng.uniform(0, 2 * math.pi)),
        jitter=tuple(float(v) for v in rng.normal(0, level.target_jitter, 2)),
        side=int(rng.choice((-1, 1))),
        reach=(float(rng.uniform(-1.1, 0.35)), float(rng.uniform(0.24, 0.29))),
    )  # fmt: skip


def make_schedule(rng: np.random.Generator, num_frames: int, fps: float, level: Difficulty) -> list[Instance]:
    """Gestures of one sequence, sorted by start: a chain with gaps and back-to-back neighbours, plus
    co-occurring gestures on disjoint body parts."""
    chain: list[Instance] = []
    t = round(rng.uniform(0.5, 2.0) * fps)
    margin = round(0.5 * fps)
    previous = None
    while True:
        label = int(rng.integers(1, len(GESTURES) + 1))
        if label == previous:  # the same class twice in a row would read as one long gesture
            continue
        end = t + _duration(rng, fps) - 1
        if end >= num_frames - margin:
            break
        chain.append(_instance(rng, label, t, end, level))
        previous = label
        if rng.random() < level.back_to_back:
            t = end + 1
        else:
            previous = None
            t = end + 1 + round((0.5 + rng.exponential(level.gap_seconds)) * fps)
    extra = []
    for host in chain:
        if rng.random() >= level.overlap:
            continue
        host_parts = GESTURES[host.label - 1].parts
        choices = [s.label for s in GESTURES if not (s.parts & host_parts) and s.label != 17]
        label = int(rng.choice(choices))
        start = host.start + int(rng.integers(0, max(1, (host.end - host.start) // 2)))
        end = min(start + _duration(rng, fps) - 1, num_frames - 1)
        parts = GESTURES[label - 1].parts
        busy = [g for g in chain + extra if g.start <= end and start <= g.end and GESTURES[g.label - 1].parts & parts]
        if not busy:
            extra.append(_instance(rng, label, start, end, level))
    return sorted(chain + extra, key=lambda g: (g.start, g.end, g.label))


def _envelope(length: int, fps: float) -> np.ndarray:
    """Ease in, hold, ease out over ``length`` frames (smoothstep ramps of up to 0.3 s)."""
    ramp = max(1, min(round(0.3 * fps), length // 3))
    env = np.ones(length)
    x = (np.arange(ramp) + 1) / (ramp + 1)
    env[:ramp] = x * x * (3 - 2 * x)
    env[length - ramp :] = env[:ramp][::-1]
    return env


def _wave(shape: str, t: np.ndarray, hz: float, phase: float) -> np.ndarray:
    """``(len(t), 2)`` unit motion of ``shape`` at ``hz`` over seconds ``t``."""
    angle = 2 * math.pi * hz * t + phase
    if shape == "sin":
        return np.stack([np.sin(angle), np.sin(angle)], -1)
    if shape == "circle":
        return np.stack([np.cos(angle), np.sin(angle)], -1)
    if shape == "pulse":
        pulse = 0.5 - 0.5 * np.cos(2 * math.pi * hz * t)
        return np.stack([pulse, pulse], -1)
    if shape == "hold":
        return np.ones((len(t), 2))
    raise ValueError(f"unknown motion shape {shape!r}")


def _two_link(shoulder: np.ndarray, target: np.ndarray, upper: float, lower: float, bend: float) -> tuple[np.ndarray, np.ndarray]:
    """Elbow and hand ``(T, 2)`` reaching for ``target`` from ``shoulder``; ``bend`` (+1/-1) picks the
    elbow's side (the outer side for a hanging arm)."""
    delta = target - shoulder
    dist = np.linalg.norm(delta, axis=-1, keepdims=True)
    direction = delta / np.maximum(dist, 1e-9)
    reach = np.clip(dist, abs(upper - lower) + 1e-4, upper + lower - 1e-4)
    cos_a = np.clip((upper**2 + reach**2 - lower**2) / (2 * upper * reach), -1.0, 1.0)
    angle = bend * np.arccos(cos_a)
    c, s = np.cos(angle), np.sin(angle)
    rotated = np.concatenate([direction[:, :1] * c - direction[:, 1:] * s, direction[:, :1] * s + direction[:, 1:] * c], -1)
    elbow = shoulder + upper * rotated
    return elbow, shoulder + direction * reach


@dataclass
class SyntheticSequence:
    """Everything needed to write one sequence: joints in pixels, the gestures, the subject."""

    sample: int
    fps: float
    size: int
    difficulty: str
    subject: Subject
    instances: list[Instance]
    joints: np.ndarray  # (T, 25, 2) pixel coordinates (u, v) in the rendered frame
    seed: int

    @property
    def num_frames(self) -> int:
        return len(self.joints)

    @property
    def gestures(self) -> list[Gesture]:
        return [Gesture(g.label, g.start, g.end) for g in self.instances]


def make_pose(subject: Subject, instances: list[Instance], num_frames: int, fps: float, level: Difficulty, rng: np.random.Generator) -> np.ndarray:
    """Joint positions ``(T, 25, 2)`` in body units relative to the rest pelvis (y down)."""
    T = num_frames
    t = np.arange(T) / fps
    channels = {name: np.zeros(T) for name in ("lean_x", "head_x", "shoulders_y", "knee_right_x", "foot_left_y")}
    # idle sway: slow body drift and a faster, smaller head motion
    sway = 0.012 * np.sin(2 * math.pi * subject.sway_hz * t + subject.sway_phase)
    channels["lean_x"] += 0.6 * sway
    channels["head_x"] += 0.006 * np.sin(2 * math.pi * 0.37 * t + 2 * subject.sway_phase)
    for g in instances:
        spec = GESTURES[g.label - 1]
        if spec.shift is None:
            continue
        name, amount, hz, shape = spec.shift
        span = slice(g.start, g.end + 1)
        sign = g.side if shape == "hold" else 1
        motion = _wave(shape, t[span] - t[g.start], hz * g.rate, g.phase)[:, 0]
        channels[name][span] += sign * amount * level.amplitude * g.amplitude * motion * _envelope(g.end - g.start + 1, fps)

    J = np.zeros((T, len(JOINTS), 2))

    def put(name: str, xy: np.ndarray) -> None:
        J[:, JOINT_INDEX[name]] = xy

    def col(x, y) -> np.ndarray:
        return np.stack([np.broadcast_to(x, (T,)), np.broadcast_to(y, (T,))], -1).astype(np.float64)

    lean, head_x = channels["lean_x"], channels["head_x"]
    base = col(sway, 0.0)
    put("SpineBase", base)
    put("SpineMid", base + col(0.5 * lean, -0.17))
    spine_shoulder = base + col(lean, -0.32)
    put("SpineShoulder", spine_shoulder)
    neck = spine_shoulder + col(0.3 * head_x, -0.04)
    put("Neck", neck)
    head = neck + col(head_x, -0.08)
    put("Head", head)
    shoulders = {}
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        shoulders[side] = spine_shoulder + col(sign * subject.shoulder, 0.01 + channels["shoulders_y"])
        put(f"Shoulder{side}", shoulders[side])
        hip = base + col(sign * subject.hip, 0.01)
        put(f"Hip{side}", hip)
        knee = hip + col(sign * 0.012, 0.23 * subject.leg)
        if side == "Right":
            knee = knee + col(channels["knee_right_x"], 0.0)
        ankle = knee + col(0.0, 0.22 * subject.leg)
        if side == "Right":
            ankle = ankle + col(0.3 * channels["knee_right_x"], 0.0)
        foot_lift = channels["foot_left_y"] if side == "Left" else 0.0
        ankle = ankle + col(0.0, foot_lift)
        put(f"Knee{side}", knee + col(0.0, 0.3 * foot_lift))
        put(f"Ankle{side}", ankle)
        put(f"Foot{side}", ankle + col(sign * 0.035, 0.025))

    upper, lower = 0.155 * subject.arm, 0.16 * subject.arm
    anchors = {
        "head": head, "neck": neck, "spine_shoulder": spine_shoulder, "spine_mid": J[:, JOINT_INDEX["SpineMid"]],
        "hip_left": J[:, JOINT_INDEX["HipLeft"]], "hip_right": J[:, JOINT_INDEX["HipRight"]],
    }  # fmt: skip
    targets = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        rest = shoulders[side.title()] + col(sign * 0.05 + 0.5 * sway, 0.28 * subject.arm)
        anchors[f"rest_{side}"] = rest
        targets[side] = rest.copy()
    for g in instances:
        spec = GESTURES[g.label - 1]
        span = slice(g.start, g.end + 1)
        env = _envelope(g.end - g.start + 1, fps)[:, None]
        local_t = t[span] - t[g.start]
        hands = dict(spec.hands)
        if g.label == 17:
            side = "left" if g.side > 0 else "right"
            angle, dist = g.reach
            sign = 1.0 if side == "left" else -1.0
            offset = dist * subject.arm * np.array([sign * math.cos(angle), math.sin(angle)])
            goal = shoulders[side.title()][span] + offset
            targets[side][span] += level.reach * env * (goal - targets[side][span])
        for i, (side, (anchor, dx, dy)) in enumerate(hands.items()):
            goal = anchors[anchor][span] + np.array([dx + g.jitter[0], dy + g.jitter[1]])
            if spec.wiggle is not None:
                ax, ay, hz, shape = spec.wiggle
                wave = _wave(shape, local_t, hz * g.rate, g.phase) * np.array([ax, ay])
                if i == 1:  # the second hand mirrors the first
                    wave[:, 0] *= -1
                goal = goal + level.amplitude * g.amplitude * wave
            targets[side][span] += level.reach * env * (goal - targets[side][span])
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        elbow, hand = _two_link(shoulders[side], targets[side.lower()], upper, lower, bend=-sign)
        forearm = hand - elbow
        direction = forearm / np.maximum(np.linalg.norm(forearm, axis=-1, keepdims=True), 1e-9)
        inward = np.stack([direction[:, 1], -direction[:, 0]], -1) * sign
        put(f"Elbow{side}", elbow)
        put(f"Wrist{side}", elbow + forearm * 0.82)
        put(f"Hand{side}", hand)
        put(f"HandTip{side}", hand + direction * 0.035)
        put(f"Thumb{side}", hand + direction * 0.012 - inward * 0.022)
    J += rng.normal(0.0, 0.0015, J.shape)
    return J


def check_arguments(sequences: int, seconds: float, size: int, fps: float, difficulty: str, prefix: str = "") -> None:
    """Refuse arguments no synthetic set can be made with (ValueError naming ``prefix + name``, e.g.
    ``data.synthetic_size`` or ``--size``), before anything is written."""
    if difficulty not in LEVELS:
        raise ValueError(f"{prefix}difficulty must be one of {', '.join(map(repr, DIFFICULTIES))}, got {difficulty!r}")
    if not isinstance(size, int) or size < 16 or size % 2:
        raise ValueError(f"{prefix}size must be an even number >= 16 (H.264 needs even sizes), got {size}")
    check_frame_rate(fps, f"{prefix}fps")
    if not 4 <= seconds <= 24 * 3600:
        raise ValueError(f"{prefix}seconds must lie between 4 (the shortest sequence made) and 86400, got {seconds}")
    if not isinstance(sequences, int) or not 1 <= sequences <= 9999:
        raise ValueError(f"{prefix}sequences must be a whole number from 1 to 9999, got {sequences}")


def generate_sequence(
    sample: int, seconds: float = 90.0, size: int = 128, fps: float = 30.0, seed: int = 0, difficulty: str = "demo"
) -> SyntheticSequence:
    """Subject, schedule and joint positions of one sequence (no pixels yet); see :func:`render`."""
    check_arguments(1, seconds, size, fps, difficulty)
    level = LEVELS[difficulty]
    num_frames = round(seconds * fps)
    subject = make_subject(np.random.default_rng([seed, sample, 0]), level)
    instances = make_schedule(np.random.default_rng([seed, sample, 1]), num_frames, fps, level)
    body = make_pose(subject, instances, num_frames, fps, level, np.random.default_rng([seed, sample, 2]))
    head_top = 0.44 + subject.head
    pixels = np.empty_like(body)
    pixels[..., 0] = (subject.centre_x + body[..., 0] * subject.scale) * size
    pixels[..., 1] = (subject.top + (head_top + body[..., 1]) * subject.scale) * size
    return SyntheticSequence(sample, fps, size, difficulty, subject, instances, pixels, seed)


def _background(seq: SyntheticSequence, rng: np.random.Generator) -> Image.Image:
    size, s = seq.size, seq.subject
    top = np.array(s.background, np.float64)
    bottom = top * rng.uniform(0.6, 0.9)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    image = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3)).astype(np.uint8)
    im = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(im)
    for _ in range(LEVELS[seq.difficulty].clutter):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 10, size // 3, 2)
        draw.rectangle([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=_colour(rng, 40, 220))
    return im


_LIGHT_LEVELS = 9  # lighting drift is quantised so backgrounds and colours can be prepared once


def render(seq: SyntheticSequence, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Frames ``start..stop-1`` of a sequence as uint8 ``(size, size, 3)`` RGB arrays."""
    stop = seq.num_frames if stop is None else stop
    rng = np.random.default_rng([seq.seed, seq.sample, 3])
    background = np.asarray(_background(seq, rng), np.float64)
    level = LEVELS[seq.difficulty]
    size, s = seq.size, seq.subject
    unit = s.scale * size  # pixels per body unit
    widths = {name: max(1, round(w * level.limb_width * unit)) for name, w in (("limb", 0.04), ("leg", 0.05), ("neck", 0.04), ("foot", 0.035))}
    hand_r, head_r = level.hand_radius * unit, s.head * unit
    noise = rng.integers(-level.noise, level.noise + 1, (8, size, size, 3)).astype(np.int16)
    pick = rng.integers(0, len(noise), seq.num_frames)
    # slow lighting drift of +-4%, as a gain per frame
    t = np.arange(seq.num_frames) / seq.fps
    drift = np.sin(2 * math.pi * 0.05 * t + s.sway_phase)
    light = np.rint((drift + 1) / 2 * (_LIGHT_LEVELS - 1)).astype(int)
    gains = 0.96 + 0.08 * np.arange(_LIGHT_LEVELS) / (_LIGHT_LEVELS - 1)
    backgrounds = [Image.fromarray(np.clip(background * g, 0, 255).astype(np.uint8)) for g in gains]
    # sleeves a shade darker than the shirt, so arms stay visible in front of the body
    colours = {n: getattr(s, n) for n in ("skin", "hair", "shirt", "trousers", "shoes")}
    colours["sleeve"] = tuple(round(0.7 * c) for c in s.shirt)
    colours["hand"] = level.glove or s.skin
    palettes = [{n: tuple(min(255, round(v * g)) for v in rgb) for n, rgb in colours.items()} for g in gains]
    j = {name: seq.joints[:, i].tolist() for name, i in JOINT_INDEX.items()}
    for k in range(start, stop):
        p = {name: tuple(v[k]) for name, v in j.items()}
        c = palettes[light[k]]
        forearm = c["skin"] if s.short_sleeves else c["sleeve"]
        im = backgrounds[light[k]].copy()
        d = ImageDraw.Draw(im)
        for side in ("Left", "Right"):
            d.line([p[f"Hip{side}"], p[f"Knee{side}"], p[f"Ankle{side}"]], fill=c["trousers"], width=widths["leg"], joint="curve")
            d.line([p[f"Ankle{side}"], p[f"Foot{side}"]], fill=c["shoes"], width=widths["foot"])
        d.polygon([p["ShoulderLeft"], p["ShoulderRight"], p["HipRight"], p["HipLeft"]], fill=c["shirt"])
        d.line([p["SpineShoulder"], p["Neck"], p["Head"]], fill=c["skin"], width=widths["neck"])
        hx, hy = p["Head"]
        d.ellipse([hx - head_r, hy - head_r, hx + head_r, hy + head_r], fill=c["skin"])
        d.pieslice([hx - head_r, hy - head_r, hx + head_r, hy + head_r], 180, 360, fill=c["hair"])
        for side in ("Left", "Right"):
            d.line([p[f"Shoulder{side}"], p[f"Elbow{side}"]], fill=c["sleeve"], width=widths["limb"])
            d.line([p[f"Elbow{side}"], p[f"Wrist{side}"]], fill=forearm, width=widths["limb"])
            d.line([p[f"Wrist{side}"], p[f"HandTip{side}"]], fill=c["hand"], width=widths["limb"])
            x, y = p[f"Hand{side}"]
            d.ellipse([x - hand_r, y - hand_r, x + hand_r, y + hand_r], fill=c["hand"])
        frame = np.asarray(im).astype(np.int16)
        frame += noise[pick[k]]
        yield np.clip(frame, 0, 255, out=frame).astype(np.uint8)


def skeleton_values(seq: SyntheticSequence) -> np.ndarray:
    """SMG skeleton rows ``(T, 25, 11)``: world xyz (m) from a pinhole camera, the bone's orientation as
    a quaternion about the camera axis (zero for end joints, as Kinect writes them), colour-image pixels
    (u, v), and the joint's pixel position in a 512x424 depth image."""
    size, s = seq.size, seq.subject
    focal = 1.3 * size  # pixels; puts a 1.55-1.95 m person about 2.6-3.6 m from the camera
    depth = focal * s.height_m / (s.scale * size)
    uv = seq.joints
    T = len(uv)
    out = np.zeros((T, len(JOINTS), 11))
    t = np.arange(T) / seq.fps
    z = depth + 0.02 * np.sin(2 * math.pi * s.sway_hz * t)[:, None]
    out[..., 0] = (uv[..., 0] - size / 2) * z / focal
    out[..., 1] = -(uv[..., 1] - size / 2) * z / focal
    out[..., 2] = z
    for name, parent in JOINT_PARENTS.items():
        if name in _LEAVES:
            continue
        i, pi = JOINT_INDEX[name], JOINT_INDEX[parent]
        bone = uv[:, i] - uv[:, pi]
        half = 0.5 * np.arctan2(bone[:, 0], bone[:, 1])  # angle from "straight down", about the camera axis
        out[:, i, 5] = np.sin(half)
        out[:, i, 6] = np.cos(half)
    out[:, JOINT_INDEX["SpineBase"], 6] = 1.0
    out[..., 7:9] = uv
    out[..., 9] = uv[..., 0] / size * 512
    out[..., 10] = uv[..., 1] / size * 424
    return out


def _encode(path: Path, frames: Iterator[np.ndarray], size: int, fps: float) -> None:
    """H.264 (x264 "ultrafast") into ``path``, through :func:`mgtutor.files.atomic_path`, so a killed run
    leaves no video that looks finished."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    # a keyframe every second keeps seeks cheap; one thread keeps parallel workers from oversubscribing
    options = {"g": str(max(1, round(fps))), "threads": "1"}
    if codec == "libx264":
        options.update(preset="ultrafast", crf="23")
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_sequence(root: str | Path, seq: SyntheticSequence) -> Path:
    """Write one sequence's four SMG files into ``root/SampleXXXX/``; returns the folder."""
    folder = Path(root) / sample_name(seq.sample)
    folder.mkdir(parents=True, exist_ok=True)
    name = sample_name(seq.sample)
    values = skeleton_values(seq)
    write_labels(folder / f"{name}_finelabels.csv", seq.gestures)
    write_data(folder / f"{name}_data.csv", seq.num_frames, seq.fps, int(math.ceil(values[..., 2].max() * 10) * 100))
    write_skeleton(folder / f"{name}_skeleton.csv", values)
    _encode(folder / f"{name}_color.mp4", render(seq), seq.size, seq.fps)
    return folder


def _write_one(args: tuple) -> int:
    root, sample, seconds, size, fps, seed, difficulty = args
    write_sequence(root, generate_sequence(sample, seconds, size, fps, seed, difficulty))
    return sample


def write_synthetic(
    out: str | Path,
    sequences: int = 40,
    seconds: float = 90.0,
    size: int = 128,
    fps: float = 30.0,
    seed: int = 0,
    difficulty: str = "demo",
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write ``sequences`` SMG-format sequences ``Sample0001..`` under ``out``; returns ``out``.

    Byte-identical label, data and skeleton files (and identical decoded frames) for the same arguments,
    whatever ``workers`` (default: up to 2 processes). ``out/synthetic.json`` records the arguments and is
    written last, marking a finished set. Bad arguments (:func:`check_arguments`, ``workers`` < 1) and an
    ``out`` that is a file are refused before anything is written.
    """
    check_arguments(sequences, seconds, size, fps, difficulty)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = check_output_folder(out, "the synthetic set")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    jobs = [(out, sample, seconds, size, fps, seed, difficulty) for sample in range(1, sequences + 1)]
    workers = min(workers or min(2, os.cpu_count() or 1), len(jobs))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit="seq", desc="synth")
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        run = map if pool is None else pool.map
        for _ in run(_write_one, jobs):
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    params = synthetic_params(sequences, seconds, size, fps, seed, difficulty)
    write_atomic(out / MARKER, json.dumps(params, indent=1) + "\n")
    return out


def synthetic_params(sequences: int, seconds: float, size: int, fps: float, seed: int, difficulty: str) -> dict:
    """What ``synthetic.json`` records: the arguments that determine a synthetic set's files."""
    return {
        "format": FORMAT_VERSION, "sequences": sequences, "seconds": float(seconds), "size": size,
        "fps": float(fps), "seed": seed, "difficulty": difficulty,
    }  # fmt: skip


def ensure_synthetic(data_cfg) -> Path:
    """The synthetic set a :class:`~mgtutor.config.DataConfig` describes, written under
    ``data.synthetic_dir`` unless a finished set with the same parameters is already there."""
    out = Path(data_cfg.synthetic_dir)
    wanted = synthetic_params(
        data_cfg.synthetic_sequences, data_cfg.synthetic_seconds, data_cfg.synthetic_size,
        data_cfg.synthetic_fps, data_cfg.synthetic_seed, data_cfg.synthetic_difficulty,
    )  # fmt: skip
    try:
        check_arguments(*(wanted[key] for key in ("sequences", "seconds", "size", "fps", "difficulty")), prefix="data.synthetic_")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    marker = out / MARKER
    if marker.exists():
        found = json.loads(marker.read_text())
        if found == wanted:
            return out
        raise DataError(marker, f"this folder holds a synthetic set made with {found}, but the configuration asks for {wanted}; "
                        "delete the folder or set data.synthetic_dir to another one")  # fmt: skip
    if out.exists() and any(p.name.startswith("Sample") for p in out.iterdir()):
        raise DataError(out, f"holds SampleXXXX folders but no {MARKER} (an unfinished or foreign set); delete it or choose another data.synthetic_dir")
    return write_synthetic(out, **{k: v for k, v in wanted.items() if k != "format"}, progress=True)


def configured_root(data_cfg, make: bool = True) -> Path | None:
    """The root a :class:`~mgtutor.config.DataConfig` reads: ``data.root``, else its synthetic set
    (:func:`ensure_synthetic` makes it when missing; with ``make`` False, None unless a finished set is
    already there)."""
    if data_cfg.root is not None:
        return Path(data_cfg.root)
    if make:
        return ensure_synthetic(data_cfg)
    return Path(data_cfg.synthetic_dir) if (Path(data_cfg.synthetic_dir) / MARKER).exists() else None
