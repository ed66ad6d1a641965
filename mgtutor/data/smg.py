"""SMG on disk: reading, writing and checking a root of ``SampleXXXX/`` folders (docs/reference.md, section 2).

A root holds one folder per sequence::

    Sample0001/Sample0001_finelabels.csv   label,start_frame,end_frame   (no header; labels 1..17)
    Sample0001/Sample0001_data.csv         numFrames,fps,maxDepth        (one row)
    Sample0001/Sample0001_skeleton.csv     one row a frame: 25 joints x 11 values
    Sample0001/Sample0001_color.mp4        the RGB video

Frame numbers in the label files are 0-based positions in the decoded video and are used as given
(``mgtutor.data.windows`` explains the mapping to sampled frames). Readers never drop or alter a
gesture: a row they cannot use raises :class:`DataError` naming the file, the line and what was
expected. The sample id is the subject id of SMG's cross-subject split (1-35 train, 36-40 test).
"""

from __future__ import annotations

import os
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np

from mgtutor.data.errors import DataError
from mgtutor.data.windows import check_frame_rate
from mgtutor.files import write_atomic

NUM_LABELS = 17  # 16 micro-gestures + "non-micro-gesture"
TRAIN_SUBJECTS = tuple(range(1, 36))
TEST_SUBJECTS = tuple(range(36, 41))

# Kinect v2 joint order of the skeleton files
JOINTS = (
    "SpineBase", "SpineMid", "Neck", "Head",
    "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
    "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft",
    "HipRight", "KneeRight", "AnkleRight", "FootRight",
    "SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
)  # fmt: skip
JOINT_INDEX = {name: i for i, name in enumerate(JOINTS)}
# Kinect v2's skeleton tree: each joint's parent (SpineBase is the root); its items are the bones
JOINT_PARENTS = {
    "SpineMid": "SpineBase", "SpineShoulder": "SpineMid", "Neck": "SpineShoulder", "Head": "Neck",
    "ShoulderLeft": "SpineShoulder", "ElbowLeft": "ShoulderLeft", "WristLeft": "ElbowLeft", "HandLeft": "WristLeft",
    "ShoulderRight": "SpineShoulder", "ElbowRight": "ShoulderRight", "WristRight": "ElbowRight", "HandRight": "WristRight",
    "HipLeft": "SpineBase", "KneeLeft": "HipLeft", "AnkleLeft": "KneeLeft", "FootLeft": "AnkleLeft",
    "HipRight": "SpineBase", "KneeRight": "HipRight", "AnkleRight": "KneeRight", "FootRight": "AnkleRight",
    "HandTipLeft": "HandLeft", "ThumbLeft": "HandLeft", "HandTipRight": "HandRight", "ThumbRight": "HandRight",
}  # fmt: skip
# The 11 values of a joint: world position (m), orientation quaternion, colour-image pixel position, and two
# values SMG does not document (mgtutor's synthetic set writes the joint's depth-image pixel position there).
SKELETON_FIELDS = ("x", "y", "z", "qx", "qy", "qz", "qw", "u", "v", "extra_u", "extra_v")
SKELETON_COLUMNS = len(JOINTS) * len(SKELETON_FIELDS)

FILE_SUFFIXES = {
    "labels": "finelabels.csv",
    "data": "data.csv",
    "skeleton": "skeleton.csv",
    "video": "color.mp4",
}
_SAMPLE = re.compile(r"^Sample(\d{1,6})(?:_(.+))?$")
MAX_FRAMES = 100_000_000  # numFrames above this (a day of video at 1000 fps) is a broken _data.csv


def sample_name(sample: int) -> str:
    """``1 -> "Sample0001"``; the inverse of :func:`parse_sample_name`."""
    return f"Sample{sample:04d}"


class SampleName(NamedTuple):
    """A parsed ``SampleXXXX`` folder name or ``SampleXXXX_<kind>`` file name."""

    sample: int  # the sample (= subject) id
    kind: str | None  # the part after the underscore, e.g. "finelabels.csv"; None for a folder name


def parse_sample_name(name: str) -> SampleName | None:
    """``"Sample0004_finelabels.csv"`` -> ``SampleName(4, "finelabels.csv")``, ``"Sample0004"`` ->
    ``SampleName(4, None)``; None for any other name. Every reader of SMG's names goes through here."""
    match = _SAMPLE.match(name)
    return SampleName(int(match.group(1)), match.group(2)) if match else None


@dataclass(frozen=True)
class Gesture:
    """One labelled gesture: ``label`` 1..17 as in the files, ``start``/``end`` inclusive original frames."""

    label: int
    start: int
    end: int

    @property
    def num_frames(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class SequenceInfo:
    """One sequence: its folder, the ``_data.csv`` values and its gestures in file order."""

    sample: int
    folder: Path
    num_frames: int
    fps: float
    max_depth: int
    gestures: tuple[Gesture, ...]

    @property
    def name(self) -> str:
        return sample_name(self.sample)

    def path(self, kind: str) -> Path:
        """The file of ``kind`` ("labels", "data", "skeleton", "video") in this sequence's folder."""
        return self.folder / f"{self.name}_{FILE_SUFFIXES[kind]}"

    @property
    def video(self) -> Path:
        return self.path("video")


@dataclass(frozen=True)
class DataInfo:
    """The one row of ``SampleXXXX_data.csv``."""

    num_frames: int
    fps: float
    max_depth: int


def _read_text(path: Path, what: str) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"file is missing: expected the {what}")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read the {what}: {err}") from err


def _as_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else None


def read_labels(path: str | Path, num_frames: int | None = None) -> list[Gesture]:
    """Read ``SampleXXXX_finelabels.csv``: one ``label,start,end`` row per gesture, in file order.

    Blank lines are skipped. Every malformed row is reported (one DataError listing them all): a wrong
    number of values, a non-integer, a label outside 1..17, a negative start, start > end, and, when
    ``num_frames`` is given, an end at or beyond the frame count.
    """
    path = Path(path)
    gestures, problems = [], []
    for line_no, line in enumerate(_read_text(path, "gesture labels (label,start_frame,end_frame rows)"), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != 3:
            problems.append(str(DataError(path, f"expected 3 comma-separated values label,start_frame,end_frame, got {len(fields)}: {line.strip()!r}", line_no)))
            continue
        values = [_as_int(f) for f in fields]
        bad = [name for name, v in zip(("label", "start_frame", "end_frame"), values) if v is None]
        if bad:
            problems.append(str(DataError(path, f"expected integers, but {', '.join(bad)} is not: {line.strip()!r}", line_no)))
            continue
        label, start, end = values
        if not 1 <= label <= NUM_LABELS:
            problems.append(str(DataError(path, f"label {label} is outside 1..{NUM_LABELS}", line_no)))
        elif start < 0:
            problems.append(str(DataError(path, f"start frame {start} is negative (frames are 0-based positions)", line_no)))
        elif start > end:
            problems.append(str(DataError(path, f"start frame {start} is after end frame {end} (expected start <= end)", line_no)))
        elif num_frames is not None and end >= num_frames:
            problems.append(
                str(DataError(path, f"end frame {end} is beyond the last frame {num_frames - 1} (numFrames={num_frames}; frames are 0-based)", line_no))
            )
        else:
            gestures.append(Gesture(label, start, end))
    if problems:
        raise DataError.many(problems)
    return gestures


def read_data(path: str | Path) -> DataInfo:
    """Read ``SampleXXXX_data.csv``: one row ``numFrames,fps,maxDepth`` (a header row of those names is allowed)."""
    path = Path(path)
    rows = [(i, line) for i, line in enumerate(_read_text(path, "sequence data (numFrames,fps,maxDepth)"), start=1) if line.strip()]
    if rows and rows[0][1].replace(" ", "").lower() == "numframes,fps,maxdepth":
        rows = rows[1:]
    if len(rows) != 1:
        raise DataError(path, f"expected exactly one row numFrames,fps,maxDepth, found {len(rows)}")
    line_no, line = rows[0]
    fields = line.split(",")
    if len(fields) != 3:
        raise DataError(path, f"expected 3 comma-separated values numFrames,fps,maxDepth, got {len(fields)}: {line.strip()!r}", line_no)
    num_frames, max_depth = _as_int(fields[0]), _as_int(fields[2])
    if num_frames is None or not 0 < num_frames <= MAX_FRAMES:
        raise DataError(path, f"numFrames must be a whole number from 1 to {MAX_FRAMES}, got {fields[0].strip()!r}", line_no)
    try:
        fps = check_frame_rate(fields[1].strip())
    except ValueError as err:
        raise DataError(path, str(err), line_no) from None
    if max_depth is None:
        raise DataError(path, f"maxDepth must be an integer, got {fields[2].strip()!r}", line_no)
    return DataInfo(num_frames, fps, max_depth)


def read_skeleton(path: str | Path) -> np.ndarray:
    """Read ``SampleXXXX_skeleton.csv`` into float32 ``(frames, 25, 11)`` (joints in :data:`JOINTS` order,
    values in :data:`SKELETON_FIELDS` order). A row without 275 numbers raises DataError naming its line."""
    path = Path(path)
    lines = _read_text(path, f"skeleton ({len(JOINTS)} joints x {len(SKELETON_FIELDS)} values a row)")
    rows = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.rstrip(",").split(",")
        if len(fields) != SKELETON_COLUMNS:
            raise DataError(path, f"expected {SKELETON_COLUMNS} values ({len(JOINTS)} joints x {len(SKELETON_FIELDS)}), got {len(fields)}", line_no)
        try:
            rows.append([float(f) for f in fields])
        except ValueError as err:
            raise DataError(path, f"expected numbers: {err}", line_no) from err
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(JOINTS), len(SKELETON_FIELDS))


def write_labels(path: str | Path, gestures: Iterable[Gesture]) -> None:
    """Write ``label,start,end`` rows (no header), atomically (:func:`mgtutor.files.write_atomic`)."""
    write_atomic(path, "".join(f"{g.label},{g.start},{g.end}\n" for g in gestures))


def write_data(path: str | Path, num_frames: int, fps: float, max_depth: int) -> None:
    """Write the one row ``numFrames,fps,maxDepth``, atomically."""
    fps_text = str(int(fps)) if float(fps).is_integer() else repr(float(fps))
    write_atomic(path, f"{num_frames},{fps_text},{max_depth}\n")


def write_skeleton(path: str | Path, joints: np.ndarray) -> None:
    """Write ``(frames, 25, 11)`` values, one row a frame, three decimals (so files are byte-stable)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape[1:] != (len(JOINTS), len(SKELETON_FIELDS)):
        raise ValueError(f"skeleton must have shape (frames, {len(JOINTS)}, {len(SKELETON_FIELDS)}), got {joints.shape}")
    row = ",".join(["%.3f"] * SKELETON_COLUMNS) + "\n"
    # "%.3f" % -0.0001 gives "-0.000"; adding 0.0 after rounding keeps the text free of negative zeros
    values = np.round(joints.reshape(len(joints), -1), 3) + 0.0
    write_atomic(path, "".join(row % tuple(r) for r in values.tolist()))


def find_samples(root: str | Path) -> dict[int, Path]:
    """Sample id -> folder for every ``SampleXXXX`` folder directly under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a folder: expected an SMG root holding SampleXXXX/ folders")
    found = {}
    for entry in sorted(root.iterdir()):
        parsed = parse_sample_name(entry.name)
        if parsed is not None and parsed.kind is None and entry.is_dir():
            found[parsed.sample] = entry
    if not found:
        raise DataError(root, "no SampleXXXX/ folders found (expected one folder a sequence, SampleXXXX/ holding SampleXXXX_finelabels.csv, _data.csv and _color.mp4: docs/reference.md, section 2)")
    return found


def load_sequence(folder: str | Path, sample: int | None = None) -> SequenceInfo:
    """Read one ``SampleXXXX/`` folder's data and label files (the video is opened only when needed)."""
    folder = Path(folder)
    if sample is None:
        parsed = parse_sample_name(folder.name)
        if parsed is None or parsed.kind is not None:
            raise DataError(folder, "folder name must be SampleXXXX (or pass the sample id)")
        sample = parsed.sample
    name = sample_name(sample)
    info = read_data(folder / f"{name}_{FILE_SUFFIXES['data']}")
    gestures = read_labels(folder / f"{name}_{FILE_SUFFIXES['labels']}", num_frames=info.num_frames)
    return SequenceInfo(sample, folder, info.num_frames, info.fps, info.max_depth, tuple(gestures))


def load_root(root: str | Path, subjects: Sequence[int] | None = None) -> list[SequenceInfo]:
    """Load the sequences of ``subjects`` (all when None), sorted by sample id.

    Raises DataError listing every problem: a requested subject without a folder, and every malformed
    file of the requested sequences.
    """
    found = find_samples(root)
    wanted = sorted(found) if subjects is None else sorted(set(subjects))
    missing = [s for s in wanted if s not in found]
    problems = []
    if missing:
        problems.append(
            str(DataError(root, f"no folder for subject(s) {_ranges(missing)}; found {_ranges(sorted(found))} (set data.train_subjects / data.test_subjects)"))
        )
    sequences = []
    for sample in wanted:
        if sample in found:
            try:
                sequences.append(load_sequence(found[sample], sample))
            except DataError as err:
                problems.extend(err.problems)
    if problems:
        raise DataError.many(problems)
    return sequences


def _ranges(ids: Sequence[int]) -> str:
    """``[1, 2, 3, 7] -> "1-3, 7"``."""
    parts, ids = [], list(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ", ".join(parts)


@dataclass
class CheckReport:
    """What :func:`check_root` found: the readable sequences, problems (errors) and warnings."""

    root: Path
    sequences: list[SequenceInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """A human-readable summary: sequences, frames, gestures per class, duration statistics, then
        every problem and warning."""
        gestures = [g for s in self.sequences for g in s.gestures]
        lines = [f"root: {self.root}", f"sequences: {len(self.sequences)}"]
        if self.sequences:
            frames = [s.num_frames for s in self.sequences]
            rates = sorted({s.fps for s in self.sequences})
            lines.append(f"frames: {sum(frames)} (per sequence {min(frames)}..{max(frames)}; fps {', '.join(f'{r:g}' for r in rates)})")
        lines.append(f"gestures: {len(gestures)}")
        if gestures:
            counts = Counter(g.label for g in gestures)
            lines.append("gestures per class: " + ", ".join(f"{label}: {counts.get(label, 0)}" for label in range(1, NUM_LABELS + 1)))
            lengths = [g.num_frames for g in gestures]
            lines.append(
                f"gesture duration (frames): mean {statistics.fmean(lengths):.1f}, median {statistics.median(lengths):g}, "
                f"min {min(lengths)}, max {max(lengths)}"
            )
        lines.append(f"problems: {len(self.problems)}")
        lines.extend(f"  {p}" for p in self.problems)
        if self.warnings:
            lines.append(f"warnings: {len(self.warnings)}")
            lines.extend(f"  {w}" for w in self.warnings)
        return "\n".join(lines)


VideoCheck = Literal["probe", "decode", "skip"]  # how much of each video check_root decodes
VIDEO_CHECKS: tuple[str, ...] = get_args(VideoCheck)


def check_root(root: str | Path, videos: VideoCheck = "probe", skeletons: bool = True) -> CheckReport:
    """Check every file of every sequence under ``root`` and collect every problem instead of stopping at
    the first: a sequence whose labels fail still has its data, skeleton and video checked.

    ``videos``: "probe" opens each video and decodes its first and last second (cheap, catches
    truncated and corrupt files), "decode" decodes every frame, "skip" only checks that the file exists.
    A video that ends before its last labelled gesture, or more than
    :data:`~mgtutor.data.video.MAX_PAD_SECONDS` before ``numFrames`` (the rule ``mgtutor prepare`` and
    training apply, :func:`mgtutor.data.video.check_length`), is a problem; any other disagreement
    between the video, ``_data.csv`` and the skeleton rows is a warning. A ``root`` that is not a folder
    of ``SampleXXXX/`` folders raises DataError.
    """
    if videos not in VIDEO_CHECKS:
        raise ValueError(f"videos must be one of {', '.join(map(repr, VIDEO_CHECKS))}, got {videos!r}")
    from mgtutor.data.video import check_video

    root = Path(root)
    report = CheckReport(root)
    for sample, folder in find_samples(root).items():
        name = sample_name(sample)
        paths = {kind: folder / f"{name}_{suffix}" for kind, suffix in FILE_SUFFIXES.items()}
        for kind, path in paths.items():
            if not path.exists():
                report.problems.append(str(DataError(path, f"file is missing: expected the sequence's {kind} file {path.name}")))
        info = gestures = None
        if paths["data"].exists():
            try:
                info = read_data(paths["data"])
            except DataError as err:
                report.problems.extend(err.problems)
        if paths["labels"].exists():
            try:
                gestures = read_labels(paths["labels"], num_frames=info.num_frames if info else None)
            except DataError as err:
                report.problems.extend(err.problems)
        if info is not None and gestures is not None:
            report.sequences.append(SequenceInfo(sample, folder, info.num_frames, info.fps, info.max_depth, tuple(gestures)))
        if skeletons and paths["skeleton"].exists():
            try:
                rows = len(read_skeleton(paths["skeleton"]))
                if info is not None and rows != info.num_frames:
                    report.warnings.append(f"{paths['skeleton']}: {rows} rows, but numFrames={info.num_frames} in {paths['data'].name}")
            except DataError as err:
                report.problems.extend(err.problems)
        if videos != "skip" and paths["video"].exists():
            last_end = max((g.end for g in gestures or ()), default=-1)
            num_frames, fps = (info.num_frames, info.fps) if info else (None, None)
            problems, warnings = check_video(paths["video"], num_frames, fps, last_end, full=videos == "decode")
            report.problems.extend(problems)
            report.warnings.extend(warnings)
    return report


@dataclass
class IndexReport:
    """What :func:`index_release` linked, and which samples lack which files."""

    out: Path
    linked: dict[int, list[str]] = field(default_factory=dict)
    missing: dict[int, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"indexed {len(self.linked)} sequence(s) into {self.out}"]
        for sample, kinds in sorted(self.missing.items()):
            lines.append(f"  {sample_name(sample)}: missing {', '.join(kinds)}")
        return "\n".join(lines)


def index_release(sources: Sequence[str | Path], out: str | Path) -> IndexReport:
    """Link a challenge-style download into the layout mgtutor reads.

    The release keeps ``SampleXXXX_color.mp4`` under one tree and the ``_finelabels/_data/_skeleton.csv``
    files under another, each nested by split folders. Every file named ``SampleXXXX_<kind>`` found
    anywhere under ``sources`` becomes a symbolic link ``out/SampleXXXX/SampleXXXX_<kind>`` (absolute
    target, nothing is copied). The same file name found twice raises DataError; existing correct links
    are kept, so the index can be rerun after more of the download arrives.
    """
    out = Path(out)
    files: dict[tuple[int, str], Path] = {}
    for source in sources:
        source = Path(source)
        if not source.is_dir():
            raise DataError(source, "not a folder: expected a tree holding SampleXXXX_* files")
        for dirpath, _, names in os.walk(source, followlinks=True):
            for file_name in sorted(names):
                parsed = parse_sample_name(file_name)
                if parsed is None or parsed.kind not in FILE_SUFFIXES.values():
                    continue
                key = (parsed.sample, parsed.kind)
                path = (Path(dirpath) / file_name).resolve()
                if key in files and files[key] != path:
                    raise DataError(path, f"{file_name} appears twice (also at {files[key]}); expected one file per sample and kind")
                files[key] = path
    if not files:
        raise DataError(", ".join(str(s) for s in sources), "no SampleXXXX_color.mp4 / _finelabels.csv / _data.csv / _skeleton.csv files found")
    report = IndexReport(out)
    for (sample, suffix), target in sorted(files.items()):
        link = out / sample_name(sample) / f"{sample_name(sample)}_{suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.resolve() == target:
                report.linked.setdefault(sample, []).append(suffix)
                continue
            raise DataError(link, f"already exists and points elsewhere than {target}; expected an empty output folder or an earlier index of the same download")
        link.symlink_to(target)
        report.linked.setdefault(sample, []).append(suffix)
    for sample, suffixes in report.linked.items():
        absent = [s for s in FILE_SUFFIXES.values() if s not in suffixes]
        if absent:
            report.missing[sample] = absent
    return report
