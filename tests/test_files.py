"""mgtutor.files: the one write-to-temporary-then-rename helper, output paths, and weights-only torch
files whose refusal names the global they asked for."""

from __future__ import annotations

import fractions
import os
import pickle
import re
import stat
from pathlib import Path

import pytest
import torch

from mgtutor.files import (
    TorchFileError,
    atomic_path,
    check_output_file,
    check_output_folder,
    load_torch_file,
    temporary_prefix,
    write_atomic,
)

REPO = Path(__file__).resolve().parents[1]


def test_atomic_path_replaces_the_file_only_when_the_block_ends(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_atomic(path, "old")
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(temporary_prefix(path)) and tmp.name.endswith(".tmp")
        tmp.write_text("new")
        assert path.read_text() == "old"  # not yet
    assert path.read_text() == "new" and sorted(p.name for p in path.parent.iterdir()) == ["result.json"]
    # permissions follow the umask, as an ordinary open() would give them (not mkstemp's 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failure_inside_the_block_keeps_the_old_file_and_no_temporary(tmp_path):
    path = write_atomic(tmp_path / "a.txt", b"old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_temporaries_left_by_a_killed_run_are_removed_by_the_next_write(tmp_path):
    path = tmp_path / "a.txt"
    debris = tmp_path / f"{temporary_prefix(path)}deadbeef.tmp"
    debris.write_text("half of a killed run's file")
    other = tmp_path / f"{temporary_prefix(tmp_path / 'b.txt')}deadbeef.tmp"
    other.write_text("another file's")
    write_atomic(path, "done")
    assert not debris.exists() and other.exists()


def test_output_paths_are_checked_before_anything_is_written(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file exists and is not a folder: expected a folder for the cache"):
        check_output_folder(tmp_path / "file", "the cache")
    with pytest.raises(IsADirectoryError, match=f"{tmp_path} is a folder: expected the path of the weights"):
        check_output_file(tmp_path, "the weights")
    assert check_output_folder(tmp_path / "new", "x") == tmp_path / "new" and not (tmp_path / "new").exists()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path, "x")


def test_one_helper_writes_every_file_that_is_replaced(tmp_path):
    """No hand-written temporary-then-rename copy is left in the library or the benchmarks."""
    pattern = re.compile(r"os\.replace\(|\.partial[\"']|mkstemp|[\"']\.tmp|\.tmp[\"']|\.rename\(")
    offenders = []
    for path in [*REPO.glob("mgtutor/**/*.py"), *REPO.glob("benchmarks/*.py"), *REPO.glob("data_scripts/*.py")]:
        if path.name == "files.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == [], offenders


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path, marker: torch.save({"x": _RunsCommand(marker)}, path), f"it asks for the Python global '{os.system.__module__}.system'"),
        (lambda path, marker: torch.save({"x": fractions.Fraction(1, 3)}, path), "it asks for the Python global 'fractions.Fraction'"),
        (lambda path, marker: torch.save({"x": _RunsCommand(marker)}, path, _use_new_zipfile_serialization=False), "system'"),
        (lambda path, marker: path.write_bytes(b""), "the file is empty or ends too early"),
        (lambda path, marker: path.write_bytes(pickle.dumps({"a": 1}, protocol=4)), "not a file written by torch.save"),
        (lambda path, marker: path.write_bytes(b"PK\x03\x04 not a whole zip"), "the file is truncated or corrupt"),
    ],
    ids=["os.system", "a class", "legacy format", "empty", "a plain pickle", "truncated zip"],
)
def test_refused_torch_files_say_why_never_torch_s_advice(tmp_path, make, reason):
    path, marker = tmp_path / "file.pt", tmp_path / "ran"
    make(path, marker)
    with pytest.raises(TorchFileError) as err:
        load_torch_file(path, what="checkpoint")
    message = str(err.value)
    assert message.startswith(f"cannot read checkpoint {path}: ") and reason in message, message
    assert "weights_only" not in message and "\n" not in message and not marker.exists()


def test_a_good_torch_file_loads(tmp_path):
    torch.save({"w": torch.arange(3)}, tmp_path / "ok.pt")
    assert torch.equal(load_torch_file(tmp_path / "ok.pt")["w"], torch.arange(3))
    with pytest.raises(TorchFileError, match="no torch file at"):
        load_torch_file(tmp_path / "none.pt")
