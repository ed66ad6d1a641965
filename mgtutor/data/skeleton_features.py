"""Features from the Kinect skeleton, for lessons that must train a detector in a minute on a CPU.

The paper's detector reads RGB through I3D (notebooks 06, 08 with ``MGTUTOR_FULL=1``). Training an
encoder from pixels takes far longer than a lesson has, so notebooks 08 and 09 feed the detector's
precomputed-features path (``model.encoder = "features"``) with 150 numbers a feature step computed from
the skeleton file that every SMG-format sequence carries: the 25 joints' positions relative to the spine
base, scaled by the subject's spine-to-head distance, and how much each moved since the previous frame,
averaged over the 4 frames of a step (the encoder's stride). After the encoder the detector is the
paper's design at the lesson's sizes (notebooks 08 and 09 print how they differ from the paper's).

Layout: ``<features_dir>/SampleXXXX.npy`` of shape (150, ceil(T / 4)), T the frames sampled at ``fps``,
as :func:`mgtutor.data.dataset.features_path` reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from einops import rearrange, reduce

from mgtutor.data.dataset import features_path
from mgtutor.data.smg import JOINT_INDEX, SequenceInfo, read_skeleton
from mgtutor.data.windows import FEATURE_STRIDE, num_sampled, original_frame

SKELETON_FEATURE_DIM = 150  # 25 joints x xyz, positions and movement


def skeleton_features(seq: SequenceInfo, fps: float) -> np.ndarray:
    """(150, ceil(T / 4)) float32 features of one sequence, each channel standardised over the sequence."""
    joints = read_skeleton(seq.path("skeleton"))[..., :3]  # (frames, 25 joints, xyz) in metres
    frames = original_frame(np.arange(num_sampled(seq.num_frames, seq.fps, fps)), seq.fps, fps)
    joints = joints[np.minimum(frames, len(joints) - 1)]  # (t, 25, 3) at the model's frame rate
    joints = joints - joints[:, :1]  # relative to SpineBase
    joints = joints / np.linalg.norm(joints[:, JOINT_INDEX["Head"]], axis=-1).mean()  # spine-to-head = 1
    pose = rearrange(joints, "t j xyz -> t (j xyz)")
    motion = np.abs(np.diff(pose, axis=0, prepend=pose[:1]))  # movement since the previous frame
    steps = np.concatenate([pose, motion], axis=1)
    steps = np.pad(steps, ((0, -len(steps) % FEATURE_STRIDE), (0, 0)), mode="edge")
    features = reduce(steps, "(t four) c -> c t", "mean", four=FEATURE_STRIDE)
    mean, std = features.mean(1, keepdims=True), features.std(1, keepdims=True)
    return ((features - mean) / (std + 1e-3)).astype(np.float32)


def write_skeleton_features(sequences: Sequence[SequenceInfo], out: str | Path, fps: float) -> Path:
    """Write :func:`skeleton_features` of every sequence into ``out`` (created); returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for seq in sequences:
        np.save(features_path(out, seq.sample), skeleton_features(seq, fps))
    return out
