"""Two-pass RICL: the first answer's hull conditions the second pass's retrieval; both
passes are traced; the leakage guard holds in both; the fallback without a box."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from ricl.agent import GroundingAgent, GroundingQuery
from ricl.agent_config import AgentConfig, AgentConfigError
from ricl.prompting.messages import codec_frame
from ricl.retrieval.retriever import Query, Retriever
from ricl.two_pass import hull
from ricl.types import Box
from ricl.vlm.base import Generation, VLMBackend
from tests.fakes import FakeEncoder

FIRST = {"backend": "knn", "selector": "fine-grained", "k": 3}


class ScriptedBackend(VLMBackend):
    """Zero-shot requests get ``zero_shot`` boxes, requests with demonstrations
    ``with_demos``; every request is counted."""

    name = "scripted"

    def __init__(self, zero_shot: tuple[Box, ...], with_demos: tuple[Box, ...]) -> None:
        self.zero_shot, self.with_demos, self.calls = zero_shot, with_demos, []

    def generate(self, request):
        demos = request.prompt.demos
        self.calls.append(len(demos))
        boxes = self.with_demos if demos else self.zero_shot
        frame = codec_frame(request.codec, request.prompt.query)
        return Generation(request.codec.format(boxes, image_size=frame, phrase=request.phrase),
                          "scripted", 0.0)  # fmt: skip


@pytest.fixture(scope="module")
def phantom(phantom_index):
    return phantom_index


def _agent(index, backend=None, **cfg):
    config = AgentConfig(index=str(index), codec="json", **cfg)
    return GroundingAgent(config, retriever=Retriever(index, FakeEncoder()), backend=backend)


def _cases(ds, n=3):
    out = []
    for s in ds.studies:
        f = next((f for f in s.findings if f.abnormal and f.boxes), None)
        if s.split == "test" and f is not None:
            out.append((s, f))
        if len(out) == n:
            return out
    return out


def _ground(agent, ds, study, finding):
    return agent.ground(ds.images_root / study.image_path, finding.sentence_en,
                        study_id=study.study_id, patient_id=study.patient_id)  # fmt: skip


def test_second_pass_retrieves_with_the_first_answers_hull(phantom):
    index, ds = phantom
    agent = _agent(index, k=3, selector="location", first_pass=FIRST)
    r = agent.retriever
    for study, finding in _cases(ds):
        res = _ground(agent, ds, study, finding)
        fp = res.first_pass
        image = ds.images_root / study.image_path
        q = Query(image=image, phrase=finding.sentence_en, study_id=study.study_id,
                  patient_id=study.patient_id)  # fmt: skip
        first_ids = [e.exemplar_id for e in r.retrieve(q, k=3, selector="fine-grained")]
        assert [e["exemplar_id"] for e in fp["exemplars"]] == first_ids
        # the first answer is kNN transfer: the best-matching first-pass exemplar's boxes
        best = max(fp["exemplars"], key=lambda e: (e["similarity"], e["score"]))
        got, want = sorted(map(tuple, fp["boxes"])), sorted(map(tuple, best["boxes"]))
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=1e-4)
        box = hull(tuple(Box.from_list(b) for b in fp["boxes"]))
        assert fp["box"] == pytest.approx(box.to_list())
        assert fp["second_selector"] == "location"
        second = r.retrieve(q, k=3, selector="location", box=Box.from_list(fp["box"]))
        assert [e["exemplar_id"] for e in res.exemplars] == [e.exemplar_id for e in second]
        patients = {e.patient_id for e in r.exemplars
                    if e.exemplar_id in {x["exemplar_id"] for x in fp["exemplars"] + list(res.exemplars)}}  # fmt: skip
        assert study.patient_id not in patients  # the guard holds in both passes
        assert res.timings["first_pass"] == pytest.approx(fp["timings"]["total"])
        row = json.loads(json.dumps(res.to_dict()))
        assert row["first_pass"]["box"] == pytest.approx(fp["box"])


def test_async_stream_equals_sync_ground(phantom):
    index, ds = phantom
    agent = _agent(index, k=2, selector="fused", first_pass=FIRST)
    cases = _cases(ds)
    sync = [_ground(agent, ds, s, f) for s, f in cases]
    qs = [GroundingQuery(ds.images_root / s.image_path, f.sentence_en, study_id=s.study_id,
                         patient_id=s.patient_id) for s, f in cases]  # fmt: skip
    async_ = asyncio.run(agent.aground_many(qs, max_concurrency=2))
    for a, b in zip(sync, async_, strict=True):
        assert a.boxes == b.boxes and a.first_pass["box"] == b.first_pass["box"]
        assert [e["exemplar_id"] for e in a.exemplars] == [e["exemplar_id"] for e in b.exemplars]


def test_model_first_pass_and_the_fallback_without_a_box(phantom):
    index, ds = phantom
    study, finding = _cases(ds, 1)[0]
    # zero-shot first answer from the agent's own model: a box -> location retrieval
    backend = ScriptedBackend((Box(0.1, 0.1, 0.3, 0.3), Box(0.6, 0.5, 0.9, 0.8)),
                              (Box(0.2, 0.2, 0.4, 0.4),))  # fmt: skip
    agent = _agent(index, backend, k=2, selector="location",
                   first_pass={"backend": "agent", "k": 0})  # fmt: skip
    res = _ground(agent, ds, study, finding)
    assert backend.calls == [0, 2]  # two model calls: zero-shot, then with 2 exemplars
    assert res.first_pass["box"] == pytest.approx([0.1, 0.1, 0.9, 0.8], abs=1e-3)
    assert len(res.boxes) == 1
    assert res.boxes[0].to_list() == pytest.approx([0.2, 0.2, 0.4, 0.4], abs=1e-3)
    # no box in the first answer -> the second pass retrieves with the fallback selector
    empty = ScriptedBackend((), (Box(0.2, 0.2, 0.4, 0.4),))
    agent = _agent(index, empty, k=2, selector="location",
                   first_pass={"backend": "agent", "k": 0, "fallback_selector": "random"})  # fmt: skip
    res = _ground(agent, ds, study, finding)
    assert res.first_pass["box"] is None and res.first_pass["second_selector"] == "random"
    q = Query(image=ds.images_root / study.image_path, phrase=finding.sentence_en,
              study_id=study.study_id, patient_id=study.patient_id)  # fmt: skip
    want = agent.retriever.retrieve(q, k=2, selector="random")
    assert [e["exemplar_id"] for e in res.exemplars] == [e.exemplar_id for e in want]


def test_a_given_box_skips_the_first_pass(phantom):
    index, ds = phantom
    study, finding = _cases(ds, 1)[0]
    backend = ScriptedBackend((Box(0.1, 0.1, 0.3, 0.3),), (Box(0.2, 0.2, 0.4, 0.4),))
    agent = _agent(index, backend, k=2, selector="location",
                   first_pass={"backend": "agent", "k": 0})  # fmt: skip
    res = agent.ground(ds.images_root / study.image_path, finding.sentence_en,
                       study_id=study.study_id, box=finding.boxes[0])  # fmt: skip
    assert backend.calls == [2] and res.first_pass is None


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"selector": "fine-grained", "first_pass": FIRST}, "does not read one"),
        ({"selector": "location", "first_pass": {"backend": "knn", "k": 0}}, "k >= 1"),
        ({"selector": "location", "first_pass": {"selector": "location"}}, "no box yet"),
        ({"selector": "location", "k": 0, "first_pass": FIRST}, "second pass with exemplars"),
        ({"selector": "location", "first_pass": {"passes": 2}}, "passes"),
    ],
)
def test_first_pass_config_errors_are_one_line(cfg, match):
    with pytest.raises(AgentConfigError, match=match) as err:
        AgentConfig.load({"index": "idx", **cfg}, "run.yaml")
    assert "\n" not in str(err.value) and "run.yaml" in str(err.value)


def test_first_pass_timing_is_part_of_the_total(phantom):
    index, ds = phantom
    study, finding = _cases(ds, 1)[0]
    agent = _agent(index, k=2, selector="location", first_pass=FIRST)
    t0 = time.perf_counter()
    res = _ground(agent, ds, study, finding)
    wall = (time.perf_counter() - t0) * 1e3
    assert 0 < res.timings["first_pass"] <= res.timings["total"] <= wall + 1


def test_an_eval_run_keeps_both_passes_in_rows_and_report(phantom, tmp_path):
    from ricl_apps.evaluation.rows import read_rows
    from ricl_apps.evaluation.run_config import EvalConfig
    from ricl_apps.evaluation.runner import run_eval

    index, ds = phantom
    config = EvalConfig.load({
        "run_id": "two-pass", "runs_dir": str(tmp_path),
        "dataset": {"name": "phantom", "root": str(ds.root), "split": "test", "limit": 6},
        "agent": {"index": str(index), "selector": "location", "k": 2, "codec": "json",
                  "first_pass": FIRST},
        "rodeo": False,
    })  # fmt: skip
    agent = GroundingAgent(config.agent, retriever=Retriever(index, FakeEncoder()))
    run_eval(config, agent=agent, progress=False)
    rows = read_rows(config.run_dir / "predictions.jsonl")
    assert rows and all(len(r["first_pass"]["exemplars"]) == 3 for r in rows)
    assert all(r["first_pass"]["second_selector"] in {"location", "fine-grained"} for r in rows)
    html = (config.run_dir / "report.html").read_text()
    assert html.count("first pass (knn, fine-grained, k=3)") == len(rows)
