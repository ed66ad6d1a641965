"""Every ``mgtutor`` subcommand against bad input: a table per command, each row an input a hostile or
unlucky user gives. Each must end with exit status 2 and one line on stderr naming the file, line, key
or option and what was expected (no traceback), and leave every file as it was (nothing half-written,
nothing misleading: the workspace is compared file by file before and after)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mgtutor.cli import main
from mgtutor.config import config_from_dict
from mgtutor.data.synthetic import write_synthetic
from mgtutor.model.detector import Detector
from mgtutor.train.checkpoint import save_checkpoint


class _RunsCommand:
    """A pickled object whose loading runs a shell command: it would leave ``marker`` behind."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """A workspace of good and bad inputs: a synthetic root (1-3 train, 4 test), a checkpoint of a tiny
    detector, hostile and broken checkpoints, pickles and prediction folders."""
    folder = tmp_path_factory.mktemp("bad_input")
    root = write_synthetic(folder / "smg", sequences=4, seconds=8, size=40, seed=3, workers=1)
    cfg = config_from_dict({
        "data": {"root": str(root), "train_subjects": [1, 2, 3], "test_subjects": [4], "window": 16, "short_side": 40, "crop": 32},
        "model": {"encoder": "small", "hidden": 32, "queries": 8, "points": 9, "layers": 2, "heads": 4, "ffn": 64,
                  "mix_dim": 8, "mamba_blocks": 1},
    })  # fmt: skip
    model = Detector(cfg.model)
    ckpt = save_checkpoint({"format": 1, "model": model.state_dict(), "config": cfg.to_dict(), "epoch": 1}, folder / "run" / "best.pt")
    paths = {"ws": folder, "root": root, "ckpt": ckpt, "video": root / "Sample0004" / "Sample0004_color.mp4"}

    def put(name: str, content: bytes | str) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        paths[name.replace("/", "_").replace(".", "_")] = path
        return path

    put("empty.pt", b"")
    put("empty.ckpt", b"")
    data = ckpt.read_bytes()
    put("truncated.pt", data[: len(data) // 2])
    evil = folder / "evil.pt"
    torch.save({"format": 1, "model": {}, "x": _RunsCommand(folder / "ran")}, evil)
    paths["evil_pt"] = evil
    foreign = folder / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    paths["foreign_pt"] = foreign
    good_pickle = pickle.dumps({"params": {"w": np.zeros(3, np.float32)}, "batch_stats": {}}, protocol=4)
    put("truncated.ckpt", good_pickle[: len(good_pickle) // 2])
    put("object.ckpt", pickle.dumps({"params": {"w": np.array([1, "a"], dtype=object)}, "batch_stats": {}}, protocol=4))
    # a pickle announcing 2**62 bytes: an allocation no machine can make
    put("oversized.ckpt", b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"\x00" * 16 + b".")
    put("system.ckpt", pickle.dumps(_RunsCommand(folder / "ran"), protocol=4))
    put("layout.ckpt", pickle.dumps({"params": {}}, protocol=4))
    put("weights.bin", b"\x00" * 16)
    put("a_file", "not a folder\n")
    put("bad.yaml", "train: [epochs\n")
    put("garbage.mp4", bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    (folder / "empty_dir").mkdir()
    paths["empty_dir"] = folder / "empty_dir"
    (folder / "resume_empty").mkdir()
    put("resume_empty/last.pt", b"")
    paths["resume_empty"] = folder / "resume_empty"
    # predictions folders: broken predictions.json in several ways, a malformed label file, a foreign sequence
    for name, document in {
        "pred_notjson": "{not json",
        "pred_list": "[1, 2]",
        "pred_noscore": json.dumps({"format": 1, "sequences": {"Sample0004": [{"label": 1, "start": 0, "end": 5}]}}),
        "pred_textscore": json.dumps({"format": 1, "sequences": {"Sample0004": [{"label": 1, "start": 0, "end": 5, "score": "high"}]}}),
    }.items():
        put(f"{name}/Sample0004_finelabels.csv", "1,0,5\n")
        put(f"{name}/predictions.json", document)
        paths[name] = folder / name
    put("pred_badrow/Sample0004_finelabels.csv", "1,0,x\n")
    paths["pred_badrow"] = folder / "pred_badrow"
    put("pred_foreign/Sample0009_finelabels.csv", "1,0,5\n")
    paths["pred_foreign"] = folder / "pred_foreign"
    put("pred_ok/Sample0004_finelabels.csv", "1,0,5\n")
    paths["pred_ok"] = folder / "pred_ok"
    # instructor notebooks: a good one, one that is not JSON, one whose solution is never closed
    import nbformat

    def notebook(*sources: str) -> str:
        return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in sources]))

    put("nb_ok/01_ok.ipynb", notebook("def f():\n    ### BEGIN SOLUTION\n    # HINT: return one\n    return 1\n    ### END SOLUTION"))
    put("nb_broken/01_broken.ipynb", "{not json")
    put("nb_unclosed/01_unclosed.ipynb", notebook("def f():\n    ### BEGIN SOLUTION\n    # HINT: return one\n    return 1"))
    for name in ("nb_ok", "nb_broken", "nb_unclosed"):
        paths[name] = folder / name
    # a root whose _data.csv gives an infinite frame rate (once an endless loop in prepare and train)
    inf_root = shutil.copytree(root, folder / "inf_root")
    (inf_root / "Sample0002" / "Sample0002_data.csv").write_text("240,inf,4000\n")
    paths["inf_root"] = inf_root
    return paths


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def refuses(ws: dict[str, Path], capsys, argv: list[str], expected: str) -> str:
    """Run ``mgtutor argv`` (``{name}`` filled from the workspace): exit 2, one stderr line holding
    ``expected``, no traceback, the workspace unchanged. Returns the line."""
    argv = [arg.format(**ws) for arg in argv]
    before = snapshot(ws["ws"])
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mgtutor {argv[0]}: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err and "weights_only=False" not in err
    assert snapshot(ws["ws"]) == before, "a refused command changed the workspace"
    return lines[0]


SYNTH = [
    ("out is a file", ["--out", "{a_file}"], "a_file exists and is not a folder: expected a folder for the synthetic set"),
    ("odd size", ["--out", "{ws}/s", "--size", "33"], "--size must be an even number >= 16"),
    ("one sequence", ["--out", "{ws}/s", "--sequences", "1"], "argument --sequences: expected a whole number from 2 to 9999, got '1'"),
    ("fps 0", ["--out", "{ws}/s", "--fps", "0"], "--fps must be a frame rate from 1 to 1000 frames a second, got '0'"),
    ("fps inf", ["--out", "{ws}/s", "--fps", "inf"], "--fps must be a frame rate from 1 to 1000 frames a second, got 'inf'"),
    ("short", ["--out", "{ws}/s", "--seconds", "2"], "--seconds must lie between 4"),
    ("seconds nan", ["--out", "{ws}/s", "--seconds", "nan"], "--seconds must lie between 4"),
    ("no workers", ["--out", "{ws}/s", "--workers", "0"], "argument --workers: expected a whole number >= 1, got '0'"),
    ("difficulty", ["--out", "{ws}/s", "--difficulty", "extreme"], "--difficulty must be one of 'demo', 'hard', got 'extreme'"),
]

EXTRACT_FEATURES = [
    ("missing root", ["{ws}/nowhere", "--out", "{ws}/f", "--weights", "{ws}/none.safetensors"], "nowhere: not a folder"),
    ("out is a file", ["{root}", "--out", "{a_file}"], "a_file exists and is not a folder: expected a folder for the features"),
    ("fps 0", ["{root}", "--out", "{ws}/f", "--fps", "0"], "--fps must be a frame rate from 1 to 1000 frames a second, got '0'"),
    ("fps inf", ["{root}", "--out", "{ws}/f", "--fps", "inf"], "got 'inf'"),
    ("short side 0", ["{root}", "--out", "{ws}/f", "--short-side", "0"], "--short-side must be a whole number of pixels from 1 to 4096, got 0"),
    ("crop 0", ["{root}", "--out", "{ws}/f", "--crop", "0"], "argument --crop: expected a whole number >= 1, got '0'"),
    ("crop above the short side", ["{root}", "--out", "{ws}/f", "--short-side", "32", "--crop", "64"], "--crop (64) must not exceed --short-side (32)"),
    ("window not a multiple of 4", ["{root}", "--out", "{ws}/f", "--window", "30"], "must be positive multiples of 4"),
    ("stride above the window", ["{root}", "--out", "{ws}/f", "--window", "16", "--stride", "32"], "with stride <= window"),
    ("batch size 0", ["{root}", "--out", "{ws}/f", "--batch-size", "0"], "argument --batch-size: expected a whole number >= 1, got '0'"),
    ("missing weights", ["{root}", "--out", "{ws}/f", "--weights", "{ws}/none.safetensors"], "none.safetensors"),
    ("absent subject", ["{root}", "--out", "{ws}/f", "--weights", "{ws}/none.safetensors", "--subjects", "9"], "no folder for subject(s) 9"),
]

CHECK_DATA = [
    ("missing root", ["{ws}/nowhere"], "nowhere: not a folder: expected an SMG root"),
    ("root is a file", ["{a_file}"], "a_file: not a folder"),
    ("no sequences", ["{empty_dir}"], "empty_dir: no SampleXXXX/ folders found"),
    ("videos", ["{root}", "--videos", "all"], "argument --videos: invalid choice: 'all'"),
]

PREPARE = [
    ("missing root", ["{ws}/nowhere", "--out", "{ws}/c"], "nowhere: not a folder"),
    ("fps 0", ["{root}", "--out", "{ws}/c", "--fps", "0"], "--fps must be a frame rate from 1 to 1000 frames a second, got '0'"),
    ("fps negative", ["{root}", "--out", "{ws}/c", "--fps", "-5"], "got '-5'"),
    ("fps inf", ["{root}", "--out", "{ws}/c", "--fps", "inf"], "got 'inf'"),
    ("fps tiny", ["{root}", "--out", "{ws}/c", "--fps", "1e-300"], "got '1e-300'"),
    ("short side 0", ["{root}", "--out", "{ws}/c", "--short-side", "0"], "--short-side must be a whole number of pixels from 1 to 4096, got 0"),
    ("short side negative", ["{root}", "--out", "{ws}/c", "--short-side", "-5"], "got -5"),
    ("short side text", ["{root}", "--out", "{ws}/c", "--short-side", "big"], "got 'big'"),
    ("out is a file", ["{root}", "--out", "{a_file}"], "a_file exists and is not a folder: expected a folder for the frame cache"),
    ("subjects", ["{root}", "--out", "{ws}/c", "--subjects", "1-x"], "argument --subjects: expected subject ids >= 1 like 1-35,40, got '1-x'"),
    ("absent subject", ["{root}", "--out", "{ws}/c", "--subjects", "9"], "no folder for subject(s) 9"),
    ("infinite fps in _data.csv", ["{inf_root}", "--out", "{ws}/c"], "Sample0002_data.csv, line 1: fps must be a frame rate from 1 to 1000"),
]

CONVERT_I3D = [
    ("missing source", ["--source", "{ws}/none.ckpt", "--out", "{ws}/w.safetensors"], "no I3D checkpoint at"),
    ("empty pickle", ["--source", "{empty_ckpt}", "--out", "{ws}/w.safetensors"], "empty.ckpt: refusing to load: the file is empty"),
    ("truncated pickle", ["--source", "{truncated_ckpt}", "--out", "{ws}/w.safetensors"], "truncated.ckpt: refusing to load: not a readable pickle"),
    ("object dtype", ["--source", "{object_ckpt}", "--out", "{ws}/w.safetensors"], "object.ckpt: refusing to load: the pickle asks for the numpy dtype"),
    ("oversized pickle", ["--source", "{oversized_ckpt}", "--out", "{ws}/w.safetensors"], "oversized.ckpt: refusing to load"),
    ("code in a pickle", ["--source", "{system_ckpt}", "--out", "{ws}/w.safetensors"], f"names the global '{os.system.__module__}.system'"),
    ("another layout", ["--source", "{layout_ckpt}", "--out", "{ws}/w.safetensors"], "expected a dict with 'params' and 'batch_stats'"),
    ("truncated torch file", ["--source", "{truncated_pt}", "--out", "{ws}/w.safetensors"], "truncated.pt: the file is truncated or corrupt"),
    ("code in a torch file", ["--source", "{evil_pt}", "--out", "{ws}/w.safetensors"], f"asks for the Python global '{os.system.__module__}.system'"),
    ("empty torch file", ["--source", "{empty_pt}", "--out", "{ws}/w.safetensors"], "empty.pt: the file is empty"),
    ("unknown kind", ["--source", "{weights_bin}", "--out", "{ws}/w.safetensors"], "unknown I3D checkpoint type '.bin'"),
    ("out is a folder", ["--out", "{empty_dir}"], "empty_dir is a folder: expected the path of the .safetensors file to write"),
]

TRAIN = [
    ("lr nan", ["--set", "train.lr=nan"], "train.lr must be a finite number, got 'nan'"),
    ("lr inf", ["--set", "train.lr=.inf"], "train.lr must be a finite number, got inf"),
    ("weight decay nan", ["--set", "train.weight_decay=nan"], "train.weight_decay must be a finite number"),
    ("clip_grad nan", ["--set", "train.clip_grad=nan"], "train.clip_grad must be a finite number"),
    ("clip_grad negative", ["--set", "train.clip_grad=-1"], "train.clip_grad must be >= 0, got -1.0"),
    ("gamma", ["--set", "train.lr_gamma=0"], "train.lr_gamma must lie in (0, 1]"),
    ("missing config", ["--config", "{ws}/none.yaml"], "cannot read configuration file"),
    ("bad yaml", ["--config", "{bad_yaml}"], "bad.yaml is not valid YAML"),
    ("missing root", ["--set", "data.root={ws}/nowhere", "--set", "train.out={ws}/run2"], "nowhere: not a folder"),
    ("val outside train", ["--set", "data.val_subjects=[99]"], "data.val_subjects must be a part of data.train_subjects"),
    ("val without subjects", ["--set", "eval.choose_on=val"], "eval.choose_on is 'val' but data.val_subjects is empty"),
    ("choose_on", ["--set", "eval.choose_on=test"], "eval.choose_on must be 'train' or 'val', got 'test'"),
    ("encoder", ["--set", "model.encoder=resnet"], "model.encoder must be 'i3d', 'small' or 'features', got 'resnet'"),
    ("synthetic size", ["--set", "data.synthetic_dir={ws}/synth", "--set", "data.synthetic_size=33"], "data.synthetic_size must be an even number >= 16"),
    ("fps", ["--set", "data.fps=0"], "data.fps must be a frame rate from 1 to 1000"),
    ("empty resume", ["--set", "train.out={resume_empty}", "--set", "data.synthetic_dir={ws}/synth", "--resume"],
     "last.pt: the file is empty or ends too early"),
    ("hostile resume", ["--set", "train.out={ws}/run3", "--resume", "{evil_pt}"], f"asks for the Python global '{os.system.__module__}.system'"),
    ("infinite fps in _data.csv", ["--set", "data.root={inf_root}", "--set", "data.train_subjects=[1,2,3]", "--set", "data.test_subjects=[4]",
                                   "--set", "train.out={ws}/run4"], "Sample0002_data.csv, line 1: fps must be a frame rate"),
]

PREDICT = [
    ("empty checkpoint", ["--checkpoint", "{empty_pt}", "--root", "{root}"], "cannot read checkpoint"),
    ("truncated checkpoint", ["--checkpoint", "{truncated_pt}", "--root", "{root}"], "truncated.pt: the file is truncated or corrupt"),
    ("hostile checkpoint", ["--checkpoint", "{evil_pt}", "--root", "{root}"], f"asks for the Python global '{os.system.__module__}.system'"),
    ("missing checkpoint", ["--checkpoint", "{ws}/none.pt", "--root", "{root}"], "no checkpoint at"),
    ("foreign checkpoint", ["--checkpoint", "{foreign_pt}", "--root", "{root}"], "foreign.pt is not an mgtutor checkpoint"),
    ("batch size 0", ["--checkpoint", "{ckpt}", "--root", "{root}", "--batch-size", "0"], "argument --batch-size: expected a whole number >= 1, got '0'"),
    ("out is a file", ["--checkpoint", "{ckpt}", "--root", "{root}", "--out", "{a_file}"], "a_file exists and is not a folder"),
    # predictions look like ground truth: they must never replace it
    ("out is a sequence folder", ["--checkpoint", "{ckpt}", "--root", "{root}", "--out", "{root}/Sample0004"],
     "Sample0004_finelabels.csv: was not written by a prediction run (ground truth?)"),
    ("out is a root", ["--checkpoint", "{ckpt}", "--root", "{root}", "--out", "{root}"], "it is an SMG root, not a predictions folder"),
    ("missing root", ["--checkpoint", "{ckpt}", "--root", "{ws}/nowhere"], "nowhere: not a folder"),
    ("threshold", ["--checkpoint", "{ckpt}", "--root", "{root}", "--set", "eval.score_threshold=1.5"], "eval.score_threshold must lie in [0, 1], got 1.5"),
    ("another model", ["--checkpoint", "{ckpt}", "--root", "{root}", "--set", "model.queries=4"], "do not fit the configured model"),
    ("empty split", ["--checkpoint", "{ckpt}", "--root", "{root}", "--split", "val"], "the val split has no subjects"),
    ("val choice without val", ["--checkpoint", "{ckpt}", "--root", "{root}", "--set", "eval.choose_on=val"], "data.val_subjects is empty"),
    ("online: missing video", ["--checkpoint", "{ckpt}", "--online", "{ws}/none.mp4"], "none.mp4: file is missing"),
    ("online: not a video", ["--checkpoint", "{ckpt}", "--online", "{garbage_mp4}"], "garbage.mp4: cannot open the video"),
    ("online: out is a sequence folder", ["--checkpoint", "{ckpt}", "--online", "{video}", "--out", "{root}/Sample0004"],
     "Sample0004_finelabels.csv: was not written by a prediction run"),
    ("online: out is a file", ["--checkpoint", "{ckpt}", "--online", "{video}", "--out", "{a_file}"], "exists and is not a folder"),
    ("online: hostile checkpoint", ["--checkpoint", "{evil_pt}", "--online", "{video}"], "asks for the Python global"),
]  # fmt: skip

EVALUATE = [
    ("missing folder", ["--pred", "{ws}/nowhere", "--gt", "{root}"], "nowhere: no predictions folder here"),
    ("no predictions", ["--pred", "{empty_dir}", "--gt", "{root}"], "empty_dir: holds no predictions"),
    ("json", ["--pred", "{pred_notjson}", "--gt", "{root}"], "predictions.json: not valid JSON"),
    ("json layout", ["--pred", "{pred_list}", "--gt", "{root}"], 'predictions.json: expected an object with "format": 1'),
    ("row without score", ["--pred", "{pred_noscore}", "--gt", "{root}"], "predictions.json: Sample0004 detection 0: expected"),
    ("score not a number", ["--pred", "{pred_textscore}", "--gt", "{root}"], "Sample0004 detection 0: expected"),
    ("malformed row", ["--pred", "{pred_badrow}", "--gt", "{root}"], "Sample0004_finelabels.csv, line 1: expected integers"),
    ("missing root", ["--pred", "{pred_ok}", "--gt", "{ws}/nowhere"], "nowhere: not a folder"),
    ("subjects", ["--pred", "{pred_ok}", "--gt", "{root}", "--subjects", "0-3"], "expected subject ids >= 1"),
    ("foreign sequences", ["--pred", "{pred_foreign}", "--gt", "{root}"], "holds predictions for Sample0009"),
    ("empty split", ["--pred", "{pred_ok}", "--gt", "{root}", "--split", "val"], "the val split has no subjects"),
    ("plot is a folder", ["--pred", "{pred_ok}", "--gt", "{root}", "--subjects", "4", "--plot", "{empty_dir}"], "empty_dir is a folder"),
]

STUDENT = [
    ("missing notebooks", ["--notebooks", "{ws}/nowhere", "--out", "{ws}/st"], "nowhere: not a folder: expected the instructor's notebooks"),
    ("notebooks is a file", ["--notebooks", "{a_file}", "--out", "{ws}/st"], "a_file: not a folder"),
    ("no notebooks", ["--notebooks", "{empty_dir}", "--out", "{ws}/st"], "no notebooks matching"),
    ("out is a file", ["--notebooks", "{nb_ok}", "--out", "{a_file}"], "a_file exists and is not a folder: expected a folder for the students' copies"),
    ("out is the instructor's folder", ["--notebooks", "{nb_ok}", "--out", "{nb_ok}"], "is the instructor's folder"),
    ("not a notebook", ["--notebooks", "{nb_broken}", "--out", "{ws}/st"], "01_broken.ipynb: not a readable notebook"),
    ("unclosed solution", ["--notebooks", "{nb_unclosed}", "--out", "{ws}/st"], "01_unclosed.ipynb"),
]

DEMO = [
    ("missing config", ["--config", "{ws}/none.yaml", "--out", "{ws}/demo"], "cannot read configuration file"),
    ("lr nan", ["--set", "train.lr=nan", "--out", "{ws}/demo"], "train.lr must be a finite number"),
    ("out is a file", ["--out", "{a_file}", "--set", "data.synthetic_dir={ws}/synth"], "a_file exists and is not a folder"),
    ("val without subjects", ["--set", "eval.choose_on=val", "--out", "{ws}/demo"], "data.val_subjects is empty"),
    ("synthetic size", ["--set", "data.synthetic_dir={ws}/synth", "--set", "data.synthetic_size=33", "--out", "{ws}/demo"],
     "data.synthetic_size must be an even number >= 16"),
]  # fmt: skip

TABLES = {"student": STUDENT, "synth": SYNTH, "check-data": CHECK_DATA, "prepare": PREPARE, "extract-features": EXTRACT_FEATURES, "convert-i3d": CONVERT_I3D, "train": TRAIN,
          "predict": PREDICT, "evaluate": EVALUATE, "demo": DEMO}  # fmt: skip
CASES = [pytest.param(name, argv, expected, id=f"{name}: {case}") for name, table in TABLES.items() for case, argv, expected in table]


def test_every_subcommand_has_a_table():
    from mgtutor.cli import COMMANDS

    assert set(TABLES) == set(COMMANDS)


@pytest.mark.parametrize(("name", "argv", "expected"), CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(ws, capsys, name, argv, expected):
    refuses(ws, capsys, [name, *argv], expected)
    assert not (ws["ws"] / "ran").exists()  # no payload ran


def test_the_ground_truth_is_left_as_it_was(ws, capsys):
    labels = ws["root"] / "Sample0004" / "Sample0004_finelabels.csv"
    before = labels.read_bytes()
    for source in (["--root", "{root}"], ["--online", "{video}"]):
        refuses(ws, capsys, ["predict", "--checkpoint", "{ckpt}", *source, "--set", "eval.score_threshold=0", "--out", "{root}/Sample0004"], "ground truth")
    assert labels.read_bytes() == before
