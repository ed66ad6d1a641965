"""The repository stands alone: nothing in it reads or cites a folder beside the checkout or a file it lacks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# written in pieces so that this file does not match itself
FORBIDDEN = re.compile("|".join([r"\.\./" + "shared", "MGTUTOR_" + "SHARED", r'parent / "' + 'shared"', r"NOTES" + r"\.md"]))


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [REPO / name for name in out.decode().split("\0") if name]


def test_no_file_reaches_outside_the_repository():
    offenders = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not offenders, "files that name something outside the repository:\n" + "\n".join(offenders)


def test_docs_cited_by_the_code_exist():
    """Every ``docs/NAME.md, section N`` cited in the library names a file and a numbered section it holds."""
    cited = re.compile(r"docs/([\w-]+\.md),? sections? (\d+)")
    missing = []
    for path in sorted((REPO / "mgtutor").rglob("*.py")):
        for name, section in cited.findall(path.read_text()):
            doc = REPO / "docs" / name
            if not doc.is_file() or not re.search(rf"^## {section}\. ", doc.read_text(), re.MULTILINE):
                missing.append(f"{path.relative_to(REPO)} cites docs/{name} section {section}")
    assert not missing, "\n".join(missing)


def test_the_kinetics_sample_ships_with_the_package():
    from mgtutor.model.i3d_weights import KINETICS_SAMPLE

    names = {p.name for p in KINETICS_SAMPLE.iterdir()}
    assert {"v_CricketShot_g04_c01_rgb.gif", "label_map.txt", "expected_rgb_imagenet.txt", "LICENSE", "README.md"} <= names
    assert "Apache License" in (KINETICS_SAMPLE / "LICENSE").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"mgtutor.assets" = ["kinetics_i3d_sample/*"]' in pyproject
