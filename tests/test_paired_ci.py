"""Paired bootstrap CIs: the library function against hand-computed cases, and the
``ricl experiment`` column comparing every arm to a named baseline on the same instances."""

from __future__ import annotations

import numpy as np
import pytest

from ricl.config import ConfigError
from ricl.evaluation.bootstrap import paired_bootstrap_ci
from ricl_apps.evaluation.experiment import ExperimentConfig, run_experiment
from ricl_apps.evaluation.paired import instance_ious
from tests.agent_fixtures import make_phantom_index


def test_a_shift_is_found_and_pairing_narrows_the_interval():
    rng = np.random.default_rng(0)
    base = rng.random(300)
    better = np.clip(base + 0.05 + rng.normal(0, 0.02, 300), 0, 1)
    ci = paired_bootstrap_ci(better, base, seed=1)
    assert ci.difference == pytest.approx(float(np.mean(better - base)))
    assert ci.low < ci.difference < ci.high and ci.excludes_zero and ci.n == 300
    # the paired interval is far narrower than the unpaired spread of either arm
    assert ci.high - ci.low < 0.2 * float(np.std(base))
    # same seed, same interval; no real difference: the interval holds 0
    assert paired_bootstrap_ci(better, base, seed=1) == ci
    noise = np.clip(base + rng.normal(0, 0.05, 300), 0, 1)
    noise = noise - (noise.mean() - base.mean())  # exactly the same mean
    same = paired_bootstrap_ci(noise, base)
    assert same.low < 0 < same.high and not same.excludes_zero


def test_degenerate_inputs():
    ci = paired_bootstrap_ci([0.5, 0.7, 0.2], [0.4, 0.6, 0.1])  # every difference 0.1
    assert (ci.low, ci.high) == pytest.approx((0.1, 0.1)) and ci.text() == "+0.100 [+0.100, +0.100]"
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap_ci([1.0], [0.0])


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_phantom_index(tmp_path_factory.mktemp("paired"), n=60)


def _exp(phantom, tmp_path, **extra) -> ExperimentConfig:
    index, ds = phantom
    base = {
        "run_id": "x", "runs_dir": str(tmp_path), "report": False, "rodeo": False,
        "dataset": {"name": "phantom", "root": str(ds.root), "split": "test", "limit": 12},
        "agent": {"index": str(index), "selector": "random", "k": 2, "codec": "json"},
    }  # fmt: skip
    return ExperimentConfig(
        name="ci", base=base, metrics=["union_iou_micro"], plot=None,
        arms={"zero-shot": {"agent.strategy": "zero-shot", "agent.k": 0},
              "knn": {}, "knn-last": {"agent.strategy_options.order": "most-similar-last"}},
        grid={"agent.k": [1, 3], "agent.seed": [0, 1]}, **extra,
    )  # fmt: skip


def test_every_arm_gets_its_ci_against_the_baseline_on_the_same_instances(phantom, tmp_path):
    exp = _exp(phantom, tmp_path, baseline="zero-shot", bootstrap={"n_resamples": 500})
    out = run_experiment(exp, progress=False)
    rows = {(r["arm"], r["agent.k"]): r for r in out.rows}
    zero = rows[("zero-shot", 0)]
    assert zero["diff_vs_baseline"] == 0.0 and zero["vs_zero-shot"] == "+0.000 [+0.000, +0.000]"
    cells = {(a, p["agent.k"], p["agent.seed"]): c for a, p, c in exp.cells()}
    for k in (1, 3):
        row = rows[("knn", k)]
        # recomputed by hand from the runs' rows: mean over seeds per instance, then paired
        runs = [instance_ious(cells[("knn", k, s)]) for s in (0, 1)]
        base = instance_ious(cells[("zero-shot", 0, 0)])
        mine = {i: (runs[0][i] + runs[1][i]) / 2 for i in runs[0]}
        ids = sorted(mine)
        assert row["n_paired"] == len(ids) == 12
        want = paired_bootstrap_ci([mine[i] for i in ids], [base[i] for i in ids], n_resamples=500)
        assert (row["diff_vs_baseline"], row["ci_low"], row["ci_high"]) == pytest.approx(
            (want.difference, want.low, want.high))  # fmt: skip
        # the difference of means is the difference of the runs' union_iou_micro
        assert row["diff_vs_baseline"] == pytest.approx(
            row["union_iou_micro_mean"] - zero["union_iou_micro_mean"])  # fmt: skip
    table = out.table_md_path.read_text()
    assert "Δ union IoU vs zero-shot (95% CI, n)" in table and table.count("(n=12)") == 5
    assert "ci_low" in out.table_csv_path.read_text().splitlines()[0]


def test_an_unknown_baseline_is_a_config_error(phantom, tmp_path):
    with pytest.raises(ValueError, match="baseline 'zeroshot' is not an arm"):
        _exp(phantom, tmp_path, baseline="zeroshot")
    path = tmp_path / "e.yaml"
    path.write_text("name: e\nbase: {}\narms: {a: {}}\nbaseline: b\n")
    with pytest.raises(ConfigError, match="e.yaml.*baseline 'b' is not an arm"):
        ExperimentConfig.from_yaml(path)


def test_several_baselines_give_one_ci_column_each_and_the_first_stays_primary(phantom, tmp_path):
    exp = _exp(phantom, tmp_path, baseline=["zero-shot", "knn"], bootstrap={"n_resamples": 300})
    assert exp.baselines == ["zero-shot", "knn"]
    out = run_experiment(exp, progress=False)
    rows = {(r["arm"], r["agent.k"]): r for r in out.rows}
    for row in rows.values():
        # the first baseline keeps the unprefixed keys; every baseline has its own
        assert row["diff_vs_baseline"] == row["diff_vs_zero-shot"]
        assert row["ci_low"] == row["ci_low_vs_zero-shot"]
        assert row["n_paired_vs_knn"] == 12
    for k in (1, 3):
        assert rows[("knn", k)]["diff_vs_knn"] == 0.0  # paired with itself at the same k
        last = rows[("knn-last", k)]
        assert last["diff_vs_knn"] == pytest.approx(
            last["union_iou_micro_mean"] - rows[("knn", k)]["union_iou_micro_mean"])  # fmt: skip
    table = out.table_md_path.read_text()
    assert "vs zero-shot (95% CI, n)" in table and "vs knn (95% CI, n)" in table
    assert table.splitlines()[2].count("|") == table.splitlines()[3].count("|")
    assert "vs_knn" not in table.splitlines()[2]  # CI keys are not grid columns


def test_a_baseline_named_twice_is_a_config_error(phantom, tmp_path):
    with pytest.raises(ValueError, match="names an arm twice"):
        _exp(phantom, tmp_path, baseline=["knn", "knn"])
