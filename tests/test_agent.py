"""The grounding agent end to end on a phantom index: retrieve -> prompt -> backend ->
codec, with the knn backend and with an OpenAI-compatible server mocked at HTTP level."""

from __future__ import annotations

import asyncio
import json

import httpx2
import openai
import pytest

from ricl.agent import GroundingAgent, GroundingQuery
from ricl.agent_config import AgentConfig, AgentConfigError
from ricl.retrieval.retriever import Retriever
from ricl.types import Box
from ricl.vlm.openai import OpenAIBackend
from tests.fakes import FakeEncoder


@pytest.fixture(scope="module")
def phantom(phantom_index):
    return phantom_index


def _queries(ds, n=4):
    out = []
    for s in ds.studies:
        if s.split != "test":
            continue
        for f in s.findings:
            if f.abnormal and f.boxes:
                out.append((s, f))
                break
        if len(out) == n:
            break
    return out


def _agent(index, **cfg) -> GroundingAgent:
    backend = cfg.pop("backend_obj", None)
    config = AgentConfig(index=str(index), **cfg)
    return GroundingAgent(config, retriever=Retriever(index, FakeEncoder()), backend=backend)


def test_knn_agent_transfers_the_best_matching_exemplar_boxes(phantom):
    index, ds = phantom
    agent = _agent(index, k=3, codec="json")
    for study, finding in _queries(ds):
        image = ds.images_root / study.image_path
        r = agent.ground(image, finding.sentence_en, study_id=study.study_id,
                         patient_id=study.patient_id)  # fmt: skip
        assert r.status in {"ok", "empty"}
        assert len(r.exemplars) == 3
        assert all(e["study_id"] != study.study_id for e in r.exemplars)
        patients = {e.patient_id for e in agent.retriever.exemplars
                    if e.study_id in {x["study_id"] for x in r.exemplars}}  # fmt: skip
        assert study.patient_id not in patients
        best = max(r.exemplars, key=lambda e: (e["similarity"], e["score"]))
        if r.status == "ok":
            for got, want in zip(r.boxes, sorted(best["boxes"]), strict=True):
                assert got.to_list() == pytest.approx(want, abs=1e-4)
        assert sum(len(m.images) for m in r.messages) == 4
        assert set(r.timings) >= {"retrieve", "prompt", "generate", "parse", "total"}
        assert r.prompt_hash and r.model == "knn"


def _mock_openai(answers, seen):
    def handler(request):
        body = json.loads(request.content)
        seen.append(body)
        return httpx2.Response(200, json={
            "id": "c", "object": "chat.completion", "created": 0, "model": "tiny",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answers(body)}}]})  # fmt: skip

    client = openai.OpenAI(base_url="http://t/v1", api_key="x", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))  # fmt: skip
    return OpenAIBackend("tiny", "http://t/v1", client=client)


def test_openai_agent_sends_k_plus_one_images_and_parses_the_answer(phantom):
    index, ds = phantom
    seen: list[dict] = []
    answer = "<|object_ref_start|>x<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>"
    agent = _agent(index, k=2, codec="qwen2vl", backend_obj=_mock_openai(lambda b: answer, seen))
    study, finding = _queries(ds, 1)[0]
    r = agent.ground(ds.images_root / study.image_path, finding.sentence_en,
                     study_id=study.study_id, patient_id=study.patient_id)  # fmt: skip
    images = [p for m in seen[0]["messages"] if isinstance(m["content"], list)
              for p in m["content"] if p["type"] == "image_url"]  # fmt: skip
    assert len(images) == 3
    assert r.status == "ok" and r.raw == answer
    assert r.boxes[0].to_list() == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=1e-9)
    assert r.to_prediction(study.image_id).boxes == r.boxes


@pytest.mark.parametrize(
    ("answer", "status"),
    [("I cannot tell.", "parse_error"), ("There is no such finding.", "empty")],
)
def test_a_bad_model_answer_is_a_status_not_an_exception(phantom, answer, status):
    index, ds = phantom
    agent = _agent(index, k=1, codec="qwen2vl", backend_obj=_mock_openai(lambda b: answer, []))
    study, finding = _queries(ds, 1)[0]
    r = agent.ground(ds.images_root / study.image_path, finding.sentence_en)
    assert r.status == status and r.boxes == () and r.raw == answer


def test_ground_many_can_record_transport_failures_as_error_results(phantom):
    index, ds = phantom

    def handler(request):
        raise httpx2.ConnectError("refused")

    aclient = openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", max_retries=0,
                                 http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))  # fmt: skip
    backend = OpenAIBackend("tiny", "http://t/v1", async_client=aclient, max_retries=0)
    agent = _agent(index, k=1, codec="json", backend_obj=backend)
    qs = [GroundingQuery(ds.images_root / s.image_path, f.sentence_en) for s, f in _queries(ds, 2)]
    results = agent.ground_many(qs, raise_errors=False)
    assert [r.status for r in results] == ["error", "error"]
    assert all("cannot reach" in (r.error or "") for r in results)


def test_async_and_runnable_views_agree_with_ground(phantom):
    index, ds = phantom
    agent = _agent(index, k=2, codec="json")
    study, finding = _queries(ds, 1)[0]
    image = ds.images_root / study.image_path
    direct = agent.ground(image, finding.sentence_en, study_id=study.study_id)
    via_async = asyncio.run(agent.aground(image, finding.sentence_en, study_id=study.study_id))
    from ricl.integrations.langchain import grounding_runnable

    runnable = grounding_runnable(agent)
    via_chain = runnable.invoke({"image": image, "phrase": finding.sentence_en,
                                 "study_id": study.study_id})  # fmt: skip
    batch = runnable.batch([{"image": image, "phrase": finding.sentence_en,
                             "study_id": study.study_id}] * 2)  # fmt: skip
    many = asyncio.run(agent.aground_many([GroundingQuery(image, finding.sentence_en,
                                                          study_id=study.study_id)] * 3,
                                           max_concurrency=2))  # fmt: skip
    for r in (via_async, via_chain, *batch, *many):
        assert r.boxes == direct.boxes and r.prompt_hash == direct.prompt_hash


def test_zero_shot_needs_no_index_and_knn_then_answers_empty(phantom):
    _, ds = phantom
    study, finding = _queries(ds, 1)[0]
    agent = GroundingAgent({"strategy": "zero-shot", "codec": "json"})
    r = agent.ground(ds.images_root / study.image_path, finding.sentence_en)
    assert r.status == "empty" and r.exemplars == ()
    assert sum(len(m.images) for m in r.messages) == 1


def test_config_is_validated_in_one_place(tmp_path):
    with pytest.raises(AgentConfigError, match="colour"):
        AgentConfig.load({"colour": 1})
    with pytest.raises(AgentConfigError, match="needs an index"):
        AgentConfig.load({"strategy": "k-shot", "k": 3})
    p = tmp_path / "agent.yaml"
    p.write_text("index: idx\nk: 2\ncodec: json\nbackend_options: {min_similarity: 0.1}\n")
    cfg = AgentConfig.from_yaml(p, ["k=5", "backend_options.min_similarity=0.5"])
    assert cfg.k == 5 and cfg.backend_options == {"min_similarity": 0.5} and cfg.codec == "json"
    with pytest.raises(AgentConfigError, match="key=value"):
        AgentConfig.from_yaml(p, ["k"])


def test_box_type_round_trip_in_results(phantom):
    index, ds = phantom
    agent = _agent(index, k=1, codec="json")
    study, finding = _queries(ds, 1)[0]
    r = agent.ground(ds.images_root / study.image_path, finding.sentence_en)
    d = r.to_dict()
    assert json.loads(json.dumps(d))["boxes"] == [b.to_list() for b in r.boxes]
    assert all(isinstance(b, Box) for b in r.boxes)
