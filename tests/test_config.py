"""Comparing configurations: the table notebooks 00, 08 and 09 print of a small run against the paper's."""

from __future__ import annotations

from pathlib import Path

from mgtutor.config import PATH_KEYS, config_differences, config_from_dict, format_config_differences, load_config

REPO = Path(__file__).resolve().parents[1]


def test_differences_name_every_differing_key_in_declaration_order():
    small = config_from_dict({"model": {"layers": 2, "hidden": 64}, "train": {"lr": 3e-3}, "data": {"window": 64}})
    default = config_from_dict({})
    assert config_differences({"small": small, "default": default}) == [
        ("data.window", (64, 128)),
        ("model.hidden", (64, 512)),
        ("model.layers", (2, 4)),
        ("train.lr", (3e-3, 1e-4)),
    ]
    assert config_differences({"a": default, "b": config_from_dict({})}) == []
    three = config_differences({"a": small, "b": default, "c": default})
    assert ("model.layers", (2, 4, 4)) in three


def test_file_locations_are_left_out_unless_asked():
    here = config_from_dict({"data": {"root": "/here", "features": "/here/f"}, "train": {"out": "/here/run"}, "model": {"points": 9}})
    there = config_from_dict({"data": {"root": "/there"}, "train": {"out": "/there/run"}})
    assert [name for name, _ in config_differences({"a": here, "b": there})] == ["model.points"]
    assert "data.root" in PATH_KEYS
    everything = [name for name, _ in config_differences({"a": here, "b": there}, ignore=())]
    assert everything == ["data.root", "data.features", "model.points", "train.out"]


def test_table_has_a_column_a_configuration_and_ranges_for_subjects():
    paper = load_config(REPO / "configs" / "smg_paper.yaml")
    demo = load_config(REPO / "configs" / "cpu_demo.yaml", ["data.test_subjects=[36, 37, 39]"])
    table = format_config_differences({"cpu demo": demo, "the paper": paper}).splitlines()
    assert table[0].split() == ["key", "cpu", "demo", "the", "paper"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    assert rows["model.hidden"] == ["128", "512"]
    assert rows["train.lr"] == ["0.002", "0.0001"]
    assert rows["data.test_subjects"] == ["36-37,", "39", "36-40"]
    assert "data.root" not in rows and "data.train_subjects" not in rows  # a path; equal lists
    assert format_config_differences({"a": paper, "b": paper}).startswith("no differences")
