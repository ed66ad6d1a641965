"""Configuration files: a file that names a ``base:`` states only what differs, and is refused clearly
when the base is missing, not a path, or leads back to itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mgtutor.config import ConfigError, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_base_is_overridden_key_by_key_and_chains(tmp_path):
    write(tmp_path / "a.yaml", {"data": {"window": 64, "crop": 112}, "train": {"lr": 0.5, "epochs": 3}})
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "b.yaml", {"base": "../a.yaml", "data": {"crop": 96}, "model": {"hidden": 64}})
    c = write(tmp_path / "sub" / "c.yaml", {"base": "b.yaml", "train": {"epochs": 7}})
    config = load_config(c, ["data.window=32"])
    assert (config.data.window, config.data.crop, config.model.hidden) == (32, 96, 64)
    assert (config.train.lr, config.train.epochs) == (0.5, 7)
    # what a run saves is the whole configuration, loadable without its bases
    save_config(config, tmp_path / "saved.yaml")
    assert "base" not in yaml.safe_load((tmp_path / "saved.yaml").read_text())
    assert load_config(tmp_path / "saved.yaml") == config


def test_bad_bases_are_refused_with_the_file_named(tmp_path):
    write(tmp_path / "loop_a.yaml", {"base": "loop_b.yaml"})
    write(tmp_path / "loop_b.yaml", {"base": "loop_a.yaml"})
    with pytest.raises(ConfigError, match="loop_b.yaml: 'base: loop_a.yaml' leads back"):
        load_config(tmp_path / "loop_a.yaml")
    with pytest.raises(ConfigError, match="cannot read configuration file .*missing.yaml"):
        load_config(write(tmp_path / "x.yaml", {"base": "missing.yaml"}))
    with pytest.raises(ConfigError, match="'base' must be the path of another configuration file"):
        load_config(write(tmp_path / "y.yaml", {"base": 3}))
    with pytest.raises(ConfigError, match="unknown configuration key 'data.crpo'"):
        load_config(write(tmp_path / "z.yaml", {"base": str(REPO / "configs" / "smg_paper.yaml"), "data": {"crpo": 1}}))


def test_the_shipped_configurations_load():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)
