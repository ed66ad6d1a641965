"""benchmarks/quality.py: the plan of runs (shared runs, the paper's values), the compressed schedule, the
summary and report, and ``--quick`` end to end (every run scored on held-out subjects with the
post-processing chosen on the training subjects, resuming, refusing a changed configuration, a real root)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402

from mgtutor.config import load_config  # noqa: E402
from mgtutor.data.smg import load_root  # noqa: E402
from mgtutor.data.synthetic import split_subjects  # noqa: E402

BASE = str(REPO / "configs" / "smg_paper.yaml")  # quick mode replaces its sizes with tiny ones


# -- the plan and the schedule ---------------------------------------------------------------------------


def test_paper_values_are_table_2_with_the_default_best_everywhere():
    expected = {
        "points": {25: 11.33, 27: 13.48, 30: 14.34, 31: 13.49, 32: 13.43, 35: 9.81},
        "window": {16: 7.33, 32: 8.45, 64: 9.27, 128: 14.34, 200: 7.95},
        "layers": {2: 8.3, 3: 11.96, 4: 14.34, 5: 10.01},
        "mamba_blocks": {1: 8.42, 2: 14.34, 3: 9.22},
    }
    assert {a.name: a.paper for a in quality.ABLATIONS} == expected
    assert [a.paper_best for a in quality.ABLATIONS] == [30, 128, 4, 2]
    assert all(value % 4 == 0 for value in quality.ABLATIONS[1].paper)  # windows: multiples of the stride


def test_plan_shares_the_reference_run_between_the_main_comparison_and_every_ablation(tmp_path):
    overrides = [*quality.base_overrides(tmp_path, None, quick=False), "data.window=128", "model.points=30", "model.layers=4"]
    runs = quality.plan(BASE, overrides, "all")
    # 6 main runs + 18 ablation values, of which the 4 reference values are the main Mamba-MHSA seed-0 run,
    # + 3 seeds trained without the held-out validation subjects + 3 spread starts + 3 PointTAD zips (the
    # paper's configuration trains one window a step, so every-layer at batch 1 is the main run)
    assert len(runs) == 6 + 18 - 4 + 3 + 3 + 3
    assert len({r.name for r in runs}) == len(runs)
    reference = next(r for r in runs if ("main", "mamba", 0) in r.cells)
    assert sorted(reference.cells) == sorted(
        [("main", "mamba", 0), ("ablation", "points", 30), ("ablation", "window", 128), ("ablation", "layers", 4), ("ablation", "mamba_blocks", 2),
         ("threshold", "all_subjects", 0), ("initial", "middle", 0), ("aux", "all", 0)]
    )  # fmt: skip
    attention = [r for r in runs if r.cells[0][:2] == ("main", "attention")]
    assert [(r.config.model.mamba_blocks, r.config.train.seed) for r in attention] == [(0, 0), (0, 1), (0, 2)]
    window_200 = next(r for r in runs if ("ablation", "window", 200) in r.cells)
    assert (window_200.config.data.window, window_200.config.model.mamba_blocks, window_200.config.train.seed) == (200, 2, 0)
    cfg = runs[0].config.data
    assert (cfg.synthetic_difficulty, cfg.synthetic_sequences) == ("hard", quality.SUBJECTS)
    assert (cfg.train_subjects, cfg.test_subjects) == (list(range(1, 43)), list(range(43, 49)))
    assert [r.name for r in quality.plan(BASE, overrides, "main")] == [r.name for r in runs[:6]]
    assert all(r.cells[0][0] == "ablation" or r is reference for r in quality.plan(BASE, overrides, "ablations"))
    held_out = quality.plan(BASE, overrides, "threshold")
    assert [r.cells for r in held_out] == [[("threshold", part, seed)] for seed in quality.SEEDS for part in ("all_subjects", "val")]
    for run in held_out[1::2]:  # the last 6 training subjects held out, the choice made on them
        assert run.config.data.val_subjects == list(range(37, 43)) and run.config.data.subjects("train") == list(range(1, 37))
        assert run.config.eval.choose_on == "val" and run.config.model.mamba_blocks == 2 and run.name.endswith("-val6")
    with pytest.raises(SystemExit, match="--val-subjects must lie between 1 and 41"):
        quality.plan(BASE, overrides, "threshold", val_subjects=42)


def test_plan_compares_the_starts_and_the_auxiliary_layers_at_one_window_a_step(tmp_path):
    from mgtutor.train.losses import auxiliary_layers

    overrides = [*quality.base_overrides(tmp_path, None, quick=False), "train.batch_size=4", "model.layers=4"]
    runs = quality.plan(BASE, overrides, "initial,aux")
    assert len(runs) == 4 * 3  # middle, spread, all at batch 1, pointtad at batch 1; at 4 a step neither is the base
    by_cell = {cell: run for run in runs for cell in run.cells}
    for seed in quality.SEEDS:
        middle, spread = by_cell[("initial", "middle", seed)], by_cell[("initial", "spread", seed)]
        every, zipped = by_cell[("aux", "all", seed)], by_cell[("aux", "pointtad", seed)]
        assert (middle.config.model.initial_points, spread.config.model.initial_points) == ("middle", "spread")
        assert spread.name == middle.name + "-spread" and middle.config.train.batch_size == 4
        assert every.name == middle.name + "-batch1" and zipped.name == middle.name + "-batch1-auxpointtad"
        for run in (every, zipped):
            assert (run.config.train.batch_size, run.config.model.mamba_blocks, run.config.train.seed) == (1, 2, seed)
        # the comparison exercises the truncation: the zip leaves layers 1 and 2 without a loss
        assert auxiliary_layers(4, 1, True, every.config.train.aux_layers) == [0, 1, 2]
        assert auxiliary_layers(4, 1, True, zipped.config.train.aux_layers) == [0]
    # the batch-1 runs see as many windows as the others
    assert quality.scaled_steps(600, 4, 1) == 2400 and quality.scaled_steps(600, 4, 4) == 600
    assert quality.scaled_steps(None, 4, 1) is None and quality.scaled_steps(1, 1, 4) == 1
    # a base that already starts spread names the middle arm instead
    spread_base = quality.plan(BASE, [*overrides, "model.initial_points=spread"], "initial")
    assert [r.name.endswith("-middle") for r in spread_base] == [True] * 3 + [False] * 3


def test_only_takes_all_or_a_list_of_parts():
    assert quality.parse_only("all") == quality.PARTS
    assert quality.parse_only("aux,initial") == ("initial", "aux")
    for text in ["", "main,nope", "thresholds"]:
        with pytest.raises(Exception, match="comma-separated list of main, ablations"):
            quality.parse_only(text)


def test_budget_compresses_the_schedule_to_the_steps():
    cfg = load_config(None, ["train.epochs=50", "train.lr_step=10", "train.batch_size=2"])
    short = quality.budget(cfg, 600, train_windows=1000)  # 500 steps an epoch: 2 epochs, halved after each
    assert (short.train.max_steps, short.train.epochs, short.train.lr_step) == (600, 2, 1)
    long = quality.budget(cfg, 5000, train_windows=199)  # 100 steps an epoch: 50 epochs, the schedule kept
    assert (long.train.max_steps, long.train.epochs, long.train.lr_step) == (5000, 50, 10)
    assert quality.budget(cfg, None, 1000) is cfg
    with pytest.raises(ValueError, match="positive"):
        quality.budget(cfg, 0, 1000)


def test_mean_std_and_rank_correlation():
    assert quality.mean_std([0.2, 0.4, 0.6]) == pytest.approx((0.4, 0.2))
    assert quality.mean_std([0.3]) == (0.3, 0.0)
    assert quality.spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert quality.spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert math.isnan(quality.spearman([0, 0, 0], [1, 2, 3]))
    assert math.isnan(quality.spearman([1, 2], [1, 2]))


def _result(f1: float, seconds: float = 60.0) -> dict:
    return {"figures": {"f1": f1, "strict_f1": f1 / 2, "map": f1 / 4}, "train_seconds": seconds, "eval_seconds": 0.0}


def test_summary_means_seeds_marks_diverged_runs_and_finds_the_best_values():
    runs = [
        quality.Run("a0", None, [("main", "attention", 0)]),
        quality.Run("a1", None, [("main", "attention", 1)]),
        quality.Run("m0", None, [("main", "mamba", 0), ("ablation", "mamba_blocks", 2)]),
        quality.Run("m1", None, [("main", "mamba", 1)]),
        quality.Run("b1", None, [("ablation", "mamba_blocks", 1)]),
        quality.Run("b3", None, [("ablation", "mamba_blocks", 3)]),
    ]
    results = {"a0": _result(0.2), "a1": _result(0.4), "m0": _result(0.5), "m1": {"diverged": "nan"}, "b1": _result(0.1), "b3": _result(0.3)}
    summary = quality.summarise(runs, results)
    attention, mamba = summary["main"]["attention"], summary["main"]["mamba"]
    assert attention["f1"]["mean"] == pytest.approx(0.3) and attention["f1"]["std"] == pytest.approx(math.sqrt(0.02))
    assert attention["map"]["values"] == [0.05, 0.1]
    assert (mamba["seeds"], mamba["diverged"], mamba["f1"]["values"]) == ([0], [1], [0.5])
    blocks = summary["ablations"]["mamba_blocks"]
    assert list(summary["ablations"]) == ["mamba_blocks"]  # ablations without results are left out
    assert (blocks["best"], blocks["paper_best"]) == (2, 2)
    assert blocks["spearman"] == pytest.approx(1.0)  # 0.1, 0.5, 0.3 ranks like 8.42, 14.34, 9.22
    assert blocks["rows"][1] == {"paper_f1": 0.0842, "f1": 0.1, "strict_f1": 0.05, "map": 0.025}

    results["b3"] = {"diverged": "nan"}
    table = quality.summarise(runs, results)["ablations"]["mamba_blocks"]
    assert table["rows"][3] == {"paper_f1": 0.0922, "diverged": True} and math.isnan(table["spearman"])
    text = quality.format_ablations(quality.summarise(runs, results)["ablations"])
    assert "| Mamba blocks N_m | 3 | diverged |" in text and "| Mamba blocks N_m | 2 | 50.0 (best) |" in text
    assert "| PointTAD self-attention (N_m = 0) | 30.0 +- 14.1 |" in quality.format_main(summary["main"])


def test_the_threshold_experiment_compares_the_choices_on_the_same_models():
    def held_out(f1_val, f1_train, threshold):
        result = _result(f1_val) | {"postprocessing": {"score_threshold": threshold}}
        return result | {"train_choice": {"figures": _result(f1_train)["figures"], "postprocessing": {"score_threshold": threshold + 0.2}}}

    runs = [quality.Run(f"v{seed}", None, [("threshold", "val", seed)]) for seed in quality.SEEDS]
    runs += [quality.Run("m0", None, [("main", "mamba", 0), ("threshold", "all_subjects", 0)])]
    everyone = _result(0.6) | {"postprocessing": {"score_threshold": 0.4}}
    results = {"v0": held_out(0.5, 0.4, 0.3), "v1": held_out(0.7, 0.4, 0.5), "v2": {"diverged": "nan"}, "m0": everyone}
    threshold = quality.summarise(runs, results)["threshold"]
    assert threshold["seeds"] == [0, 1] and threshold["diverged"] == [2]
    assert threshold["val"]["f1"]["mean"] == pytest.approx(0.6) and threshold["val"]["thresholds"] == [0.3, 0.5]
    assert threshold["train"]["f1"]["values"] == [0.4, 0.4] and threshold["train"]["thresholds"] == pytest.approx([0.5, 0.7])
    assert threshold["all_subjects"]["f1"]["values"] == [0.6] and threshold["all_subjects"]["thresholds"] == [0.4]
    text = quality.format_threshold(threshold)
    assert "| held-out validation subjects | 60.0 +- 14.1 | 30.0 +- 7.1 | 15.0 +- 3.5 | 50.0, 70.0 | 0.3, 0.5 |" in text
    assert quality.summarise(runs[3:], results)["threshold"] == {}


def test_the_starts_and_the_auxiliary_layers_are_summarised_with_each_layers_class_loss():
    def run(f1, losses):
        return _result(f1) | {"layer_class_loss": losses}

    runs = [quality.Run(f"m{s}", None, [("main", "mamba", s), ("initial", "middle", s)]) for s in (0, 1)]
    runs += [quality.Run(f"s{s}", None, [("initial", "spread", s)]) for s in (0, 1)]
    runs += [quality.Run(f"p{s}", None, [("aux", "pointtad", s)]) for s in (0, 1, 2)]
    results = {
        "m0": run(0.3, [2.5, 2.2, 1.5, 0.9]), "m1": run(0.4, [2.3, 2.0, 1.3, 0.7]),
        "s0": run(0.5, [0.8, 0.7, 0.6, 0.5]), "s1": run(0.6, [1.0, 0.9, 0.6, 0.3]),
        "p0": run(0.2, [2.0, None, None, 1.0]), "p1": run(0.4, [2.2, None, None, 1.2]), "p2": {"diverged": "nan"},
    }  # fmt: skip
    summary = quality.summarise(runs, results)
    middle, spread = summary["initial"]["middle"], summary["initial"]["spread"]
    assert summary["main"]["mamba"]["f1"]["values"] == middle["f1"]["values"] == [0.3, 0.4]
    assert middle["layer_class_loss"][0]["mean"] == pytest.approx(2.4) and middle["layer_class_loss"][0]["values"] == [2.5, 2.3]
    assert spread["layer_class_loss"][3]["std"] == pytest.approx(math.sqrt(0.02))
    zipped = summary["aux"]["pointtad"]
    assert list(summary["aux"]) == ["pointtad"] and zipped["diverged"] == [2]
    assert zipped["layer_class_loss"][1] == {"mean": None, "std": None, "values": [None, None]}
    table = quality.format_layer_losses(summary["initial"], quality.START_NAMES, "start")
    assert "| start | layer 0 | layer 1 | layer 2 | layer 3 (last) | layer 0 by seed | last layer by seed |" in table
    assert f"| {quality.START_NAMES['middle']} | 2.40 +- 0.14 | 2.10 +- 0.14 | 1.40 +- 0.14 | 0.80 +- 0.14 | 2.50, 2.30 | 0.90, 0.70 |" in table
    assert f"| {quality.AUX_NAMES['pointtad']} | 2.10 +- 0.14 | - | - | 1.10 +- 0.14 | 2.00, 2.20 | 1.00, 1.20 |" in quality.format_layer_losses(summary["aux"], quality.AUX_NAMES, "aux")
    assert f"| {quality.START_NAMES['spread']} | 55.0 +- 7.1 |" in quality.format_arms(summary["initial"], quality.START_NAMES, "start")


# -- --quick end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    code = quality.main(["--quick", "--config", BASE, "--out", str(out), "--threads", "1"])
    return out, code


@pytest.mark.slow
def test_quick_run_scores_every_run_on_the_test_subjects_and_writes_the_report(quick, capsys):
    out, code = quick
    assert code == 0
    document = json.loads((out / "quality.json").read_text())
    train, test = split_subjects(quality.QUICK_SUBJECTS)
    assert document["split"] == {"train": train, "test": test}
    test_gestures = sum(len(seq.gestures) for seq in load_root(out / "data" / "synthetic_hard", test))
    # 20 of (1) and (2), 3 held out, 3 spread starts, 3 + 3 at one window a step (the base trains 2)
    assert len(document["runs"]) == 20 + 3 + 3 + 6 and document["failed"] == {}
    for name, result in document["runs"].items():
        assert (out / "runs" / name / "result.json").exists() and not (out / "runs" / name / "train" / "last.pt").exists()
        batch = result["config"]["train"]["batch_size"]
        assert result["steps"] == quality.QUICK_STEPS * 2 // batch  # the batch-1 runs see as many windows
        losses, aux, layers = result["layer_class_loss"], result["aux_layers_supervised"], result["config"]["model"]["layers"]
        if result["config"]["train"]["aux_layers"] == "pointtad":  # at one window a step: layer 0 and the last
            assert batch == 1 and aux == [0] and losses[1] is None and losses[0] > 0 and losses[2] > 0
        else:
            assert aux == list(range(layers - 1)) and len(losses) == layers and all(v > 0 for v in losses)
        post = result["postprocessing"]
        if name.endswith("-val1"):  # (3): trained on 1-2, the choice made on the held-out 3, and on 1-2 for comparison
            assert (post["chosen_on"], post["subjects"]) == ("val", [3])
            assert result["train_choice"]["postprocessing"]["subjects"] == [1, 2]
            assert result["train_choice"]["figures"]["ground_truth"] == test_gestures
        else:
            assert (post["chosen_on"], post["subjects"]) == ("train", train)
        assert result["figures"]["ground_truth"] == test_gestures  # scored on the test subjects, all of them
        assert all(0 <= result["figures"][key] <= 1 for key in ("f1", "strict_f1", "map"))
        assert result["config"]["data"]["synthetic_difficulty"] == "hard"
    by_seed = {(r["config"]["model"]["mamba_blocks"], r["config"]["train"]["seed"]) for r in document["runs"].values()}
    assert {(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (2, 2), (1, 0), (3, 0)} <= by_seed
    assert [len(document["main"][d]["f1"]["values"]) for d in ("attention", "mamba")] == [3, 3]
    assert {name: list(map(int, t["rows"])) for name, t in document["ablations"].items()} == {a.name: list(a.paper) for a in quality.ABLATIONS}
    assert document["threshold"]["seeds"] == list(quality.SEEDS) and len(document["threshold"]["val"]["f1"]["values"]) == 3
    assert {"all_subjects", "train", "val"} <= set(document["threshold"])
    assert document["initial"]["middle"]["f1"] == document["main"]["mamba"]["f1"]  # shared runs
    assert [len(document[part][arm]["f1"]["values"]) for part, arm in [("initial", "spread"), ("aux", "all"), ("aux", "pointtad")]] == [3, 3, 3]
    starts = {r["config"]["model"]["initial_points"] for r in document["runs"].values() if r["name"].endswith("-spread")}
    assert starts == {"spread"}
    windows = {r["config"]["data"]["window"] for r in document["runs"].values()}
    assert windows == {16, 32, 64, 128, 200}
    text = (out / "quality.md").read_text()
    assert "| Mamba-MHSA (N_m = 2) |" in text and "| window (frames) | 200 |" in text and "14.34 (best)" in text
    assert "| held-out validation subjects |" in text and "| spread (query i on" in text and "| PointTAD's zip (`pointtad`) |" in text
    assert "layer 2 (last)" in text
    assert (out / "ablations.png").stat().st_size > 10_000


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_redoes_a_missing_one_identically(quick, capsys):
    out, _ = quick
    capsys.readouterr()
    name = "nm0-points30-window32-layers3-seed1"
    before = json.loads((out / "runs" / name / "result.json").read_text())
    (out / "runs" / name / "result.json").unlink()
    assert quality.main(["--quick", "--config", BASE, "--out", str(out), "--threads", "1", "--only", "main"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert sum("already done" in line for line in lines) == 5
    assert [line.split()[1] for line in lines if "training" in line] == [name]
    after = json.loads((out / "runs" / name / "result.json").read_text())
    assert after["figures"] == before["figures"] and after["final_loss"] == before["final_loss"]  # the CPU repeats exactly


@pytest.mark.slow
def test_a_changed_configuration_is_refused_in_the_same_folder(quick):
    out, _ = quick
    with pytest.raises(SystemExit, match="train.lr.*choose another --out"):
        quality.main(["--quick", "--config", BASE, "--out", str(out), "--only", "main", "--set", "train.lr=0.5"])


@pytest.mark.slow
def test_a_real_root_runs_with_the_configured_split(quick, tmp_path, capsys):
    out, _ = quick
    root, cache = out / "data" / "synthetic_hard", out / "data" / "synthetic_hard_cache"
    args = ["--quick", "--config", BASE, "--root", str(root), "--out", str(tmp_path), "--only", "main", "--threads", "1",
            "--set", f"data.cache={cache}", "--set", "data.train_subjects=[1, 2]", "--set", "data.test_subjects=[3, 4]"]  # fmt: skip
    assert quality.main(args) == 0
    document = json.loads((tmp_path / "quality.json").read_text())
    assert document["split"] == {"train": [1, 2], "test": [3, 4]} and not (tmp_path / "data").exists()
    assert len(document["runs"]) == 6 and document["ablations"] == {}
    assert not (tmp_path / "ablations.png").exists()


@pytest.mark.slow
def test_shards_split_the_runs_and_a_last_run_without_shard_completes_the_report(quick, capsys):
    out, _ = quick
    main_runs = [r.name for r in quality.plan(BASE, quality.base_overrides(out, None, quick=True), "main")]
    missing = [main_runs[0], main_runs[3]]  # shard 1/2 of 6 runs: indices 0, 2, 4; shard 2/2: 1, 3, 5
    for name in missing:
        (out / "runs" / name / "result.json").unlink()
    common = ["--quick", "--config", BASE, "--out", str(out), "--threads", "1", "--only", "main"]
    capsys.readouterr()
    assert quality.main([*common, "--shard", "2/2"]) == 0
    trained = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("[") and "training" in line]
    assert trained == [missing[1]]
    document = json.loads((out / "quality.json").read_text())
    assert document["pending"] == [missing[0]]
    assert len(document["main"]["attention"]["f1"]["values"]) == 2  # the pending seed is left out, not counted as 0
    assert f"- {missing[0]}" in (out / "quality.md").read_text()
    assert quality.main(common) == 0
    document = json.loads((out / "quality.json").read_text())
    assert document["pending"] == [] and len(document["main"]["attention"]["f1"]["values"]) == 3
    assert "Not yet run" not in (out / "quality.md").read_text()


def test_shard_argument_is_checked():
    assert quality.parse_shard("2/3") == (2, 3)
    for text in ["0/2", "3/2", "2", "a/b"]:
        with pytest.raises(Exception, match="K/N"):
            quality.parse_shard(text)
