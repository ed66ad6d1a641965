"""The runs notebooks 08 and 09 train: a small one for a laptop CPU and the paper's, built in one place.

A notebook and a test build the same configuration here, so what the notebooks' ``MGTUTOR_FULL=1`` path
runs on a GPU is what ``tests/test_lesson.py`` runs for a step on the CPU.

- :func:`lesson_config`: the CPU lesson. A synthetic SMG-format set of 12 sequences of 50 s (subjects 11
  and 12 held out), the skeleton features of ``mgtutor.data.skeleton_features`` through the detector's
  precomputed-features path, windows of 64 frames and a narrow decoder (hidden 64, 12 queries of 9 points,
  2 layers, 1 Mamba block), 20 epochs: about a minute on two cores.
- :func:`paper_lesson_config`: ``configs/smg_paper.yaml`` as it stands (Inception-I3D on RGB at 224
  pixels, 48 queries of 30 points, 4 layers, 2 Mamba blocks, 50 epochs at batch 1) with the notebook's
  paths: a copy of SMG, or else the configuration's synthetic set (40 sequences of 90 s) under the
  repository's ``data/``; the converted I3D weights under ``weights/``.
- :func:`prepare_lesson_data`: writes what a configuration reads and is missing.
- :func:`find_repository`: the checkout a notebook belongs to, wherever its copy was opened.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mgtutor.config import Config, config_from_dict, load_config, override_config
from mgtutor.data.skeleton_features import SKELETON_FEATURE_DIM, write_skeleton_features
from mgtutor.data.smg import load_root
from mgtutor.data.synthetic import ensure_synthetic, split_subjects

LESSON_SEQUENCES = 12
PAPER_CONFIG = Path("configs") / "smg_paper.yaml"
I3D_WEIGHTS = Path("weights") / "i3d_kinetics400_rgb.safetensors"


def lesson_config(work: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The CPU lesson's configuration, its files (synthetic set, features, run) under ``work``.

    ``overrides`` are ``section.key=value`` strings applied last (notebook 09 uses more points and layers).
    """
    work = Path(work)
    train_subjects, test_subjects = split_subjects(LESSON_SEQUENCES)
    values = {
        "data": {
            "root": None, "synthetic_dir": str(work / "synthetic"), "synthetic_sequences": LESSON_SEQUENCES,
            "synthetic_seconds": 50.0, "synthetic_size": 48, "features": str(work / "features"), "window": 64,
            "train_subjects": train_subjects, "test_subjects": test_subjects,
        },
        "model": {
            "encoder": "features", "feature_dim": SKELETON_FEATURE_DIM, "hidden": 64, "queries": 12, "points": 9,
            "layers": 2, "heads": 4, "ffn": 128, "mix_dim": 16, "mamba_blocks": 1, "dropout": 0.1,
        },
        "train": {"epochs": 20, "batch_size": 8, "lr": 3e-3, "lr_step": 8, "eval_every": 4, "out": str(work / "run")},
    }  # fmt: skip
    return override_config(values, overrides) if overrides else config_from_dict(values)


def find_repository(start: str | Path | None = None) -> Path:
    """The mgtutor checkout (the folder holding ``configs/smg_paper.yaml``) a notebook works in.

    Looks in ``start`` (default: the current folder) and its parents first, so a notebook opened inside a
    checkout uses that checkout; then beside the installed package (an editable install, ``make setup``),
    so a student's copy opened anywhere else still finds it.

    Raises:
        FileNotFoundError: neither place holds ``configs/smg_paper.yaml``; the message says where it looked.
    """
    start = Path.cwd() if start is None else Path(start)
    package = Path(__file__).resolve().parents[2]
    candidates = [start, *start.parents, package]
    for folder in candidates:
        if (folder / PAPER_CONFIG).is_file():
            return folder
    raise FileNotFoundError(
        f"no mgtutor checkout found: {PAPER_CONFIG} is neither in {start} (or a folder above it) nor in {package}; "
        "open the notebook inside the clone, or install mgtutor from it with `make setup`"
    )


def paper_lesson_config(
    repo: str | Path,
    smg_root: str | Path | None = None,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """``configs/smg_paper.yaml`` of the repository ``repo`` with the paths a notebook run uses.

    Args:
        repo: the checkout holding ``configs/``, ``weights/`` and ``data/``.
        smg_root: a copy of SMG (``SampleXXXX/`` folders); None: the configuration's synthetic set,
            written once under ``repo/data/synthetic``.
        out: where the run writes its checkpoints and log (default ``repo/runs/notebook08_paper``).
        overrides: ``section.key=value`` strings applied after the file (e.g. ``train.max_steps=1``).
    """
    repo = Path(repo)
    paths = [
        f"data.root={'null' if smg_root is None else _quoted(smg_root)}",
        f"data.synthetic_dir={_quoted(repo / 'data' / 'synthetic')}",
        f"model.encoder_weights={_quoted(repo / I3D_WEIGHTS)}",
        f"train.out={_quoted(out if out is not None else repo / 'runs' / 'notebook08_paper')}",
    ]
    return load_config(repo / PAPER_CONFIG, [*paths, *overrides])


def _quoted(path: str | Path) -> str:
    """A path as an override's YAML value: quoted, so that any path reads back as the same string."""
    return json.dumps(str(path))


def prepare_lesson_data(cfg: Config) -> Path:
    """Write what ``cfg`` reads and is missing; returns the data root.

    The synthetic set ``cfg.data`` describes when ``data.root`` is None (``ensure_synthetic``: kept when
    already there), and the skeleton features of every sequence when ``model.encoder == "features"``.
    """
    root = Path(cfg.data.root) if cfg.data.root is not None else ensure_synthetic(cfg.data)
    if cfg.model.encoder == "features":
        write_skeleton_features(load_root(root), cfg.data.features, cfg.data.fps)
    return root
