import csv
import json

import pytest
from typer.testing import CliRunner

from ricl.data import load_dataset
from ricl.evaluation.predictions import read_predictions
from ricl_apps.cli import app, main

from .release_fixture import write_release

runner = CliRunner()


@pytest.fixture
def release(tmp_path):
    return write_release(tmp_path / "release")


@pytest.mark.parametrize(
    "args", [[], ["data"], ["data", "stats"], ["phantom"], ["score"], ["baseline"], ["demo"]]
)
def test_every_command_has_help(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_data_stats_json(release):
    result = runner.invoke(
        app, ["data", "stats", "--dataset", "padchest-gr", "--root", str(release), "--json"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["splits"]["train"]["grounding_instances"] == 2
    assert stats["splits"]["all"]["boxes"] == 3
    table = runner.invoke(
        app,
        ["data", "stats", "--dataset", "padchest-gr", "--root", str(release)],
        env={"COLUMNS": "200"},
    )
    assert table.exit_code == 0
    assert "instances" in table.output and "train" in table.output


def test_baseline_then_score_json(release, tmp_path):
    preds = tmp_path / "p.jsonl"
    r = runner.invoke(app, ["baseline", "phrase-knn", "--dataset", "padchest-gr", "--root", str(release),
                            "--out", str(preds), "--split", "train"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(read_predictions(preds)) == 2
    r = runner.invoke(app, ["score", "--dataset", "padchest-gr", "--root", str(release), "--split", "train",
                            "--predictions", str(preds), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.output)
    # phrase-knn on its own training split copies each instance's own boxes: perfect
    assert metrics["union_iou_micro"] == pytest.approx(1.0)
    assert metrics["f1@0.5"] == pytest.approx(1.0)
    assert metrics["n_instances"] == 2 and metrics["n_missing_predictions"] == 0


def test_errors_are_one_clear_line(release, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["ricl", "score", "--dataset", "padchest-gr", "--root", str(release),
                                     "--predictions", str(tmp_path / "none.jsonl")])  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert "none.jsonl: predictions file not found" in capsys.readouterr().err
    monkeypatch.setattr(
        "sys.argv", ["ricl", "data", "stats", "--dataset", "padchest", "--root", str(release)]
    )
    with pytest.raises(SystemExit) as e:
        main()
    assert "Did you mean 'padchest-gr'" in capsys.readouterr().err


def test_phantom_command_writes_a_release_the_reader_reads(tmp_path):
    out = tmp_path / "ph"
    r = runner.invoke(
        app, ["phantom", "--out", str(out), "--studies", "30", "--seed", "3", "--size", "128"]
    )
    assert r.exit_code == 0, r.output
    assert "wrote 30 studies" in r.output
    stats = json.loads(
        runner.invoke(
            app, ["data", "stats", "--dataset", "phantom", "--root", str(out), "--json"]
        ).output
    )
    assert stats["splits"]["all"]["studies"] == 30
    assert stats["splits"]["all"]["grounding_instances"] > 0


def test_demo_runs_end_to_end(tmp_path):
    args = ["demo", "--workdir", str(tmp_path / "d"), "--studies", "120", "--size", "96",
            "--site-studies", "80", "--in-process"]  # fmt: skip
    r = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    runs = tmp_path / "d" / "runs"
    knn = json.loads((runs / "baseline-phrase-knn" / "metrics.json").read_text())
    mean = json.loads((runs / "baseline-mean-box" / "metrics.json").read_text())
    # the phrase names type and location on phantoms: copying the nearest phrase's boxes
    # must beat one mean box for everything
    assert knn["union_iou_micro"] > mean["union_iou_micro"] + 0.1
    assert "IoU micro" in r.output
    # the agent's run: complete, scored, with its report
    run = runs / "phantom_knn"
    assert json.loads((run / "run.json").read_text())["complete"]
    agent = json.loads((run / "metrics.json").read_text())
    assert agent["n_errors"] == 0 and agent["n_parse_failures"] == 0
    assert (run / "report.html").stat().st_size > 10_000
    # the project's VLM on the external site X: every arm answered every test query, in
    # process, on the same instances, with its paired CI against zero-shot and kNN transfer
    vlm_rows = list(csv.DictReader((runs / "demo_site_x-hf" / "comparison.csv").open()))
    assert [r["arm"] for r in vlm_rows] == ["zero-shot", "random", "lofi", "fused", "two-pass",
                                            "knn-transfer"]  # fmt: skip
    n_test = len(load_dataset("phantom", tmp_path / "d" / "site-X").select("test"))
    for row in vlm_rows:
        assert int(row["n_paired_vs_zero-shot"]) == int(row["n_paired_vs_knn-transfer"]) == n_test
        assert float(row["ci_low"]) <= float(row["diff_vs_baseline"]) <= float(row["ci_high"])
    for arm in ("zero-shot", "random", "lofi", "fused", "two-pass"):
        run_json = json.loads((runs / "demo_site_x-hf" / f"{arm}__seed0" / "run.json")
                              .read_text())  # fmt: skip
        assert run_json["complete"] and run_json["agent"]["backend"]["backend"] == "hf"
    assert "the VLM answers in process" in r.output
    assert "external site X" in r.output and "vs knn-transfer" in r.output
    # the grid: every arm in the table, and the oracle location arm beats random exemplars
    table = (runs / "phantom_selectors" / "comparison.csv").read_text()
    for arm in ("zero-shot", "random", "global-encoder", "lofi-encoder", "location-oracle"):
        assert f"\n{arm}," in table
    rows = {(r["arm"], r["agent.k"]): r for r in csv.DictReader(table.splitlines())}
    assert float(rows[("location-oracle", "3")]["union_iou_micro_mean"]) > float(
        rows[("random", "3")]["union_iou_micro_mean"]
    )
    assert float(rows[("zero-shot", "0")]["union_iou_micro_mean"]) == 0.0  # knn, no exemplars
    assert (runs / "phantom_selectors" / "comparison.png").stat().st_size > 10_000
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "reusing" in again.output and "cached" in again.output
