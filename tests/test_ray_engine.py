"""The ``ray`` evaluation engine (Ray Data on a local CPU cluster) writes the same rows as
the local engine: with the knn backend, with deterministic fake OpenAI servers spread over
several endpoints, and through ``ray.data.llm`` (its processor replaced by a fake that
answers like the fake server); failures are kept and ``--resume`` retries them."""

from __future__ import annotations

import hashlib
import json
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest

pytest.importorskip("ray.data")

from ricl_apps.evaluation.run_config import EvalConfig
from ricl_apps.evaluation.runner import RunIncomplete, last_rows, read_rows, run_eval
from tests.agent_fixtures import make_phantom_index
from tests.fake_openai import fake_server, parts


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_phantom_index(tmp_path_factory.mktemp("rayeval"), n=60)


def _config(phantom, runs: Path, run_id: str, agent: dict, engine: dict) -> EvalConfig:
    index, ds = phantom
    return EvalConfig.load({
        "run_id": run_id, "runs_dir": str(runs),
        "dataset": {"name": "phantom", "root": str(ds.root), "split": "test"},
        "agent": {"index": str(index), "selector": "random", "k": 2, "codec": "json", **agent},
        "engine": engine, "report": False, "rodeo": False, "concurrency": 4,
    })  # fmt: skip


def _answer_for(text: str) -> str:
    """A deterministic box from all the text of a request."""
    h = hashlib.sha256(text.encode()).digest()
    x, y = h[0] / 255 * 0.5, h[1] / 255 * 0.5
    return json.dumps([[round(x, 3), round(y, 3), round(x + 0.3, 3), round(y + 0.4, 3)]])


def _same_rows(a: Path, b: Path) -> None:
    """Same instances, and per instance the same row apart from how long it took."""
    ra, rb = last_rows(read_rows(a)), last_rows(read_rows(b))
    assert ra and sorted(ra) == sorted(rb)
    for i in ra:
        left = {k: v for k, v in ra[i].items() if k != "timings"}
        right = {k: v for k, v in rb[i].items() if k != "timings"}
        assert left == right, i


def test_knn_predictions_and_metrics_equal_the_local_engine(ray_cluster, phantom, tmp_path):
    agent = {"backend": "knn"}
    local = run_eval(_config(phantom, tmp_path, "local", agent, {"name": "local"}), progress=False)
    ray = run_eval(_config(phantom, tmp_path, "ray", agent,
                           {"name": "ray", "actors": 2, "batch_size": 3}), progress=False)  # fmt: skip
    _same_rows(tmp_path / "local/predictions.jsonl", tmp_path / "ray/predictions.jsonl")
    assert ray["metrics"] == {**local["metrics"], "run_id": "ray"}
    assert ray["engine"] == {"name": "ray", "actors": 2, "batch_size": 3}
    assert len(read_rows(tmp_path / "ray/predictions.jsonl")) == ray["n_instances"]  # once each


def _answerer(lock: threading.Lock, failing: set[str] | None = None):
    def answer(body):
        text, sizes = parts(body)
        assert len(sizes) == 3  # two exemplars and the query
        with lock:
            hit = {p for p in failing or () if p in text}
            if hit:  # each failing phrase fails only the first request that names it
                failing.difference_update(hit)
                return 503, "overloaded"
        return _answer_for(text), "stop"

    return answer


def test_two_endpoints_share_the_load_and_answer_as_one_server(ray_cluster, phantom, tmp_path):
    lock = threading.Lock()
    with ExitStack() as stack:
        one, seen_one = stack.enter_context(fake_server(_answerer(lock)))
        a, seen_a = stack.enter_context(fake_server(_answerer(lock)))
        b, seen_b = stack.enter_context(fake_server(_answerer(lock)))
        agent = {"backend": "openai", "backend_options": {"base_url": one, "model": "fake"}}
        run_eval(_config(phantom, tmp_path, "local", agent, {}), progress=False)
        summary = run_eval(_config(phantom, tmp_path, "ray", agent,
                                   {"name": "ray", "endpoints": [a, b], "batch_size": 2}),
                           progress=False)  # fmt: skip
    _same_rows(tmp_path / "local/predictions.jsonl", tmp_path / "ray/predictions.jsonl")
    n = summary["n_instances"]
    assert len(seen_a) + len(seen_b) == n == len(seen_one)
    assert seen_a and seen_b  # both replicas answered
    key = lambda body: json.dumps(body, sort_keys=True)
    assert sorted(map(key, seen_a + seen_b)) == sorted(map(key, seen_one))  # same payloads


def test_failures_are_kept_and_resume_retries_only_them(ray_cluster, phantom, tmp_path):
    _index, ds = phantom
    phrases = sorted({i.phrase for i in ds.select("test")})[:2]
    lock = threading.Lock()
    with fake_server(_answerer(lock, failing=set(phrases))) as (url, seen):
        agent = {"backend": "openai",
                 "backend_options": {"base_url": url, "model": "fake", "max_retries": 0}}  # fmt: skip
        cfg = _config(phantom, tmp_path, "flaky", agent, {"name": "ray", "endpoints": [url]})
        with pytest.raises(RunIncomplete):
            run_eval(cfg, progress=False)
        rows = read_rows(tmp_path / "flaky/predictions.jsonl")
        failed = [r for r in rows if r["status"] == "error"]
        assert 1 <= len(failed) <= 2 and all("503" in r["error"] or "overloaded" in r["error"]
                                             for r in failed)  # fmt: skip
        n_first = len(seen)
        summary = run_eval(cfg, resume=True, progress=False)
    assert summary["complete"] and len(seen) == n_first + len(failed)  # only the failed ran
    rows = read_rows(tmp_path / "flaky/predictions.jsonl")
    final = last_rows(rows)
    assert len(final) == summary["n_instances"] and all(r["status"] == "ok" for r in final.values())
    assert {r["instance_id"]: r["attempt"] for r in rows if r["attempt"] == 2} == {
        r["instance_id"]: 2 for r in failed
    }


def test_ray_data_llm_processor_is_configured_and_parsed_like_the_server(
    ray_cluster, phantom, tmp_path, monkeypatch
):
    import ray.data.llm

    built = {}

    def fake_build_processor(config, preprocess=None, postprocess=None, **_):
        built["config"] = config

        def processor(ds):
            def generate(row):
                req = preprocess(row)
                body = {"messages": req["messages"]}
                text, _sizes = parts(body)
                # this runs in a Ray worker: the sampling parameters it got come back as the
                # finish reason (anything but the agent's own marks the answer truncated)
                ok = req["sampling_params"] == {"temperature": 0.0, "max_tokens": 64}
                return postprocess({**row, "generated_text": _answer_for(text),
                                    "finish_reason": "stop" if ok else "length"})  # fmt: skip

            return ds.map(generate)

        return processor

    monkeypatch.setattr(ray.data.llm, "build_processor", fake_build_processor)
    lock = threading.Lock()
    with fake_server(_answerer(lock)) as (url, _):
        agent = {"backend": "openai",
                 "backend_options": {"base_url": url, "model": "fake", "max_tokens": 64}}  # fmt: skip
        run_eval(_config(phantom, tmp_path, "local", agent, {}), progress=False)
    llm = {"model_source": "/models/qwen2.5-vl-7b", "concurrency": 2,
           "engine_kwargs": {"max_model_len": 8192}}  # fmt: skip
    run_eval(_config(phantom, tmp_path, "llm", agent, {"name": "ray", "llm": llm}), progress=False)
    config = built["config"]
    assert config.model_source == "/models/qwen2.5-vl-7b" and config.concurrency == 2
    kwargs = config.engine_kwargs  # Ray adds its own (task_type)
    assert kwargs["limit_mm_per_prompt"] == {"image": 3} and kwargs["max_model_len"] == 8192
    a = last_rows(read_rows(tmp_path / "local/predictions.jsonl"))
    b = last_rows(read_rows(tmp_path / "llm/predictions.jsonl"))
    assert sorted(a) == sorted(b)
    for i in a:
        for key in ("boxes", "status", "raw", "exemplars", "messages", "prompt_hash", "union_iou"):
            assert a[i][key] == b[i][key], (i, key)
        assert b[i]["model"] == "/models/qwen2.5-vl-7b" and b[i]["truncated"] is False


def test_engine_options_are_validated_with_the_file_and_key(phantom, tmp_path):
    from ricl_apps.evaluation.run_config import EvalConfigError

    with pytest.raises(EvalConfigError, match="engine.name.*Did you mean 'ray'"):
        _config(phantom, tmp_path, "x", {"backend": "knn"}, {"name": "rays"})
    with pytest.raises(EvalConfigError, match="options of engine.name: ray"):
        _config(phantom, tmp_path, "x", {"backend": "knn"}, {"endpoints": ["http://a/v1"]})
    with pytest.raises(EvalConfigError, match="OpenAI-compatible servers"):
        _config(phantom, tmp_path, "x", {"backend": "knn"},
                {"name": "ray", "endpoints": ["http://a/v1"]})  # fmt: skip
