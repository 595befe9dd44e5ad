"""``ricl eval`` runs: append-and-resume, failures kept and retried (never scored as empty),
configuration checks on resume, predict-only then re-score, and the experiment grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ricl.agent import GroundingAgent
from ricl.vlm.errors import VLMTransportError
from ricl.vlm.knn import KNNBackend
from ricl_apps.evaluation.experiment import ExperimentConfig, run_experiment
from ricl_apps.evaluation.run_config import EvalConfig, EvalConfigError
from ricl_apps.evaluation.runner import (
    RunAborted,
    RunIncomplete,
    last_rows,
    prepare_run_dir,
    read_rows,
    run_eval,
    score_run,
)
from tests.agent_fixtures import make_phantom_index


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalrun")
    index, ds = make_phantom_index(tmp, n=40)
    return index, ds


def _config(phantom, runs: Path, **over) -> EvalConfig:
    index, ds = phantom
    data = {
        "run_id": "r1",
        "runs_dir": str(runs),
        "dataset": {"name": "phantom", "root": str(ds.root), "split": "test"},
        "agent": {"index": str(index), "selector": "random", "k": 2, "codec": "json"},
        "report": False,
        "rodeo": False,
    }
    for key, value in over.items():
        data[key] = value
    return EvalConfig.load(data)


class FlakyKNN(KNNBackend):
    """knn that raises a transport error for chosen calls (by call number or phrase)."""

    def __init__(self, fail_calls=(), fail_phrases=()):
        super().__init__()
        self.calls = 0
        self.fail_calls = set(fail_calls)
        self.fail_phrases = set(fail_phrases)

    def generate(self, request):
        self.calls += 1
        if self.calls in self.fail_calls or request.phrase in self.fail_phrases:
            raise VLMTransportError("http://127.0.0.1:9/v1: cannot reach the server")
        return super().generate(request)


def _agent(config: EvalConfig, backend) -> GroundingAgent:
    return GroundingAgent(config.agent, backend=backend)


def _n_instances(config: EvalConfig) -> int:
    from ricl_apps.evaluation.runner import load_instances

    return len(load_instances(config)[1])


def test_a_complete_run_writes_rows_metrics_and_tables(phantom, tmp_path):
    config = _config(phantom, tmp_path)
    summary = run_eval(config, progress=False)
    run_dir = config.run_dir
    rows = read_rows(run_dir / "predictions.jsonl")
    n = _n_instances(config)
    assert len(rows) == n == summary["n_instances"] and summary["complete"]
    assert {r["status"] for r in rows} <= {"ok", "empty"}
    assert all(len(r["exemplars"]) == 2 and r["prompt_hash"] for r in rows)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_instances"] == n and metrics["n_errors"] == 0
    md = (run_dir / "per_label_group.md").read_text()
    assert md.count("\n") == len(metrics["per_label_group"]) + 3  # header, rule, groups, all
    again = score_run(run_dir, rodeo=False)  # re-score without the model
    assert again["union_iou_micro"] == metrics["union_iou_micro"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["agent"]["k"] == 2


def test_a_server_that_goes_away_stops_the_run_and_resume_finishes_it(phantom, tmp_path):
    config = _config(phantom, tmp_path, max_consecutive_failures=3, concurrency=1)
    n = _n_instances(config)
    with pytest.raises(RunAborted, match="failures in a row.*--resume"):
        run_eval(config, agent=_agent(config, FlakyKNN(fail_calls=range(5, 10**6))), progress=False)
    rows = read_rows(config.run_dir / "predictions.jsonl")
    assert sum(r["status"] == "error" for r in rows) == 3 and len(rows) == 4 + 3
    assert not (config.run_dir / "metrics.json").exists()
    # a kill cut the last line in half
    with (config.run_dir / "predictions.jsonl").open("a") as f:
        f.write('{"instance_id": "half a li')
    summary = run_eval(config, resume=True, agent=_agent(config, FlakyKNN()), progress=False)
    rows = read_rows(config.run_dir / "predictions.jsonl")
    final = last_rows(rows)
    assert summary["complete"] and len(final) == n
    assert all(r["status"] != "error" for r in final.values())
    ok_rows = [r for r in rows if r["status"] != "error"]
    assert len(ok_rows) == n  # every instance answered exactly once
    retried = [r for r in ok_rows if r["attempt"] == 2]
    assert len(retried) == 3


def test_failed_instances_are_kept_counted_and_never_scored_silently(phantom, tmp_path):
    config = _config(phantom, tmp_path)
    from ricl_apps.evaluation.runner import load_instances

    victim = load_instances(config)[1][0]
    agent = _agent(config, FlakyKNN(fail_phrases={victim.phrase}))
    with pytest.raises(RunIncomplete, match="--resume"):
        run_eval(config, agent=agent, progress=False)
    metrics = score_run(config.run_dir, allow_incomplete=True, rodeo=False)
    assert metrics["n_errors"] >= 1 and metrics["complete"] is False
    run_eval(config, resume=True, agent=_agent(config, FlakyKNN()), progress=False)
    assert json.loads((config.run_dir / "metrics.json").read_text())["n_errors"] == 0


def test_resume_refuses_another_configuration_and_reruns_need_resume(phantom, tmp_path):
    config = _config(phantom, tmp_path, dataset={"name": "phantom", "root": str(phantom[1].root),
                                                 "limit": 3})  # fmt: skip
    run_eval(config, progress=False)
    with pytest.raises(EvalConfigError, match="--resume"):
        run_eval(config, progress=False)
    changed = EvalConfig.load({**config.model_dump(), "agent": {**config.agent.model_dump(),
                                                                "k": 3}})  # fmt: skip
    with pytest.raises(EvalConfigError, match=r"agent\.k"):
        run_eval(changed, resume=True, progress=False)
    before = len(read_rows(config.run_dir / "predictions.jsonl"))
    run_eval(config, resume=True, progress=False)  # nothing left to do: re-scores only
    assert len(read_rows(config.run_dir / "predictions.jsonl")) == before == 3


def test_predict_only_then_score(phantom, tmp_path):
    config = _config(phantom, tmp_path)
    summary = run_eval(config, predict_only=True, progress=False)
    assert "metrics" not in summary and not (config.run_dir / "metrics.json").exists()
    metrics = score_run(config.run_dir, rodeo=False)
    assert (config.run_dir / "metrics.json").exists() and metrics["n_instances"] > 0


def test_eval_config_from_yaml_with_overrides(tmp_path, phantom):
    p = tmp_path / "cfg.yaml"
    p.write_text(
        yaml.safe_dump(_config(phantom, tmp_path).model_dump(mode="json") | {"run_id": None})
    )
    cfg = EvalConfig.from_yaml(p, ["agent.k=4", "dataset.limit=5"])
    assert cfg.agent.k == 4 and cfg.dataset.limit == 5 and cfg.run_id == "cfg"
    with pytest.raises(EvalConfigError, match="colour"):
        EvalConfig.from_yaml(p, ["colour=red"])


def test_experiment_grid_aggregates_over_seeds_caches_and_plots(phantom, tmp_path):
    base = _config(phantom, tmp_path).model_dump(mode="json")
    exp = ExperimentConfig(
        name="exp",
        base=base | {"dataset": base["dataset"] | {"limit": 6}},
        arms={"random": {}, "last": {"agent.strategy_options.order": "most-similar-last"},
              "zero-shot": {"agent.strategy": "zero-shot", "agent.k": 0}},
        grid={"agent.k": [1, 2], "agent.seed": [0, 1]},
        metrics=["union_iou_micro", "f1@0.5"],
    )  # fmt: skip
    cells = exp.cells()
    assert len(cells) == 4 + 4 + 2  # zero-shot cells collapse over k
    out = run_experiment(exp, progress=False)
    rows = {(r["arm"], r["agent.k"]): r for r in out.rows}
    assert len(rows) == 5 and all(r["n_seeds"] == 2 for r in out.rows)
    assert rows[("zero-shot", 0)]["union_iou_micro_std"] == 0.0  # knn without exemplars
    assert rows[("random", 1)]["union_iou_micro_std"] > 0.0  # seeds change the exemplars
    assert out.table_md_path.read_text().count("±") == 5 * 2
    assert out.plot_path is not None and out.plot_path.stat().st_size > 5000
    sizes = {c.run_id: (c.run_dir / "predictions.jsonl").stat().st_size for _, _, c in cells}
    run_experiment(exp, progress=False)  # cached: no model call, no new rows
    assert sizes == {
        c.run_id: (c.run_dir / "predictions.jsonl").stat().st_size for _, _, c in cells
    }


def test_an_unreadable_image_fails_its_instance_only_and_config_errors_stop_at_once(tmp_path):
    index, ds = make_phantom_index(tmp_path / "p", n=40)
    config = _config((index, ds), tmp_path / "runs")
    from ricl_apps.evaluation.runner import load_instances

    victim = load_instances(config)[1][0]
    (ds.images_root / victim.image_path).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(RunIncomplete):
        run_eval(config, progress=False)
    final = last_rows(read_rows(config.run_dir / "predictions.jsonl"))
    assert final[victim.instance_id]["status"] == "error"
    assert "ImageLoadError" in final[victim.instance_id]["error"]
    assert sum(r["status"] == "error" for r in final.values()) == 1

    from ricl.retrieval.errors import IndexStoreError

    needs_encoder = _config((index, ds), tmp_path / "runs2",
                            agent={"index": str(index), "selector": "text", "k": 2})  # fmt: skip
    with pytest.raises(IndexStoreError, match="cannot load the query encoder"):
        run_eval(needs_encoder, progress=False)
    assert len(read_rows(needs_encoder.run_dir / "predictions.jsonl")) == 0


def test_a_scored_run_writes_its_report_page(phantom, tmp_path):
    config = _config(phantom, tmp_path, report=True,
                     dataset={"name": "phantom", "root": str(phantom[1].root), "limit": 4})  # fmt: skip
    run_eval(config, progress=False)
    html = (config.run_dir / "report.html").read_text()
    assert html.count('class="instance"') == 4
    assert "data:image/jpeg;base64," in html


def test_a_resumed_run_may_talk_to_the_server_on_another_port(phantom, tmp_path):
    config = _config(phantom, tmp_path)
    moved = EvalConfig.load({**config.model_dump(), "agent": {
        **config.agent.model_dump(), "backend_options": {"min_similarity": 0.0}}})  # fmt: skip
    assert moved.semantic() != config.semantic()  # a real option: another configuration
    a = config.model_dump()
    a["agent"] = {
        **a["agent"],
        "backend": "openai",
        "backend_options": {"base_url": "http://h:1/v1"},
    }
    b = {**a, "agent": {**a["agent"], "backend_options": {"base_url": "http://h:2/v1"}}}
    assert EvalConfig.load(a).semantic() == EvalConfig.load(b).semantic()


def test_a_run_saved_without_its_selector_options_is_not_reused(phantom, tmp_path):
    """A config.yaml written before runs recorded the effective selector options (``{}``)
    would read as made under today's defaults: it is refused, naming the missing keys."""
    import yaml

    index, _ = phantom
    config = _config(phantom, tmp_path, agent={"index": str(index), "selector": "fused", "k": 1})
    assert config.agent.selector_options["pool"] == 1024  # filled in
    config.run_dir.mkdir(parents=True)
    old = config.model_dump(mode="json")
    old["agent"]["selector_options"] = {"pool": 64}  # the old way: only what the user set
    (config.run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(EvalConfigError, match=r"agent\.selector_options\.image.*another run_id"):
        prepare_run_dir(config, resume=True)
    # a run saved with its options is compared as before
    (config.run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert prepare_run_dir(config, resume=True) == config.run_dir
    # the first pass's selector options too
    two = _config(phantom, tmp_path / "two", agent={
        "index": str(index), "selector": "fused", "k": 1,
        "first_pass": {"backend": "knn", "selector": "fused", "k": 1}})  # fmt: skip
    two.run_dir.mkdir(parents=True)
    old = two.model_dump(mode="json")
    old["agent"]["first_pass"]["selector_options"] = {}
    (two.run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(EvalConfigError, match=r"agent\.first_pass\.selector_options\.pool"):
        prepare_run_dir(two, resume=True)
