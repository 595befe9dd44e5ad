"""GroundingAgent.astream: results as they finish, bounded concurrency, a stop condition,
per-query failures yielded in place of results, configuration failures raised."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from ricl.agent import GroundingAgent, GroundingQuery
from ricl.agent_config import AgentConfig
from ricl.errors import ImageLoadError
from ricl.vlm.base import Generation, VLMBackend
from ricl.vlm.errors import VLMTransportError

SIDE = 32


class Scripted(VLMBackend):
    """Answers ``[[0.1,0.1,0.5,0.5]]`` after a per-phrase delay; phrases starting with
    ``fail`` raise a transport error and ``boom`` a programming error. Records how many
    requests were in flight at once."""

    name = "scripted"

    def __init__(self, delays: dict[str, float] | None = None) -> None:
        self.delays = delays or {}
        self.in_flight = 0
        self.peak = 0
        self.started: list[str] = []

    def generate(self, request):  # pragma: no cover - async path only
        raise NotImplementedError

    async def agenerate(self, request):
        self.started.append(request.phrase)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delays.get(request.phrase, 0.01))
            if request.phrase.startswith("fail"):
                raise VLMTransportError(f"server gone for {request.phrase}")
            if request.phrase.startswith("boom"):
                raise RuntimeError("a bug, not a query failure")
            return Generation('[{"box": [0.1, 0.1, 0.5, 0.5]}]', "scripted")
        finally:
            self.in_flight -= 1


def _agent(backend: VLMBackend) -> GroundingAgent:
    return GroundingAgent(
        AgentConfig(strategy="zero-shot", k=0, codec="json", max_image_side=None),
        backend=backend,
    )


def _image():
    from PIL import Image

    return Image.new("RGB", (SIDE, SIDE), 128)


def _queries(phrases):
    return [GroundingQuery(_image(), p, query_id=p) for p in phrases]


async def _collect(agent, queries, **kw):
    stream = agent.astream(queries, **kw)
    async with contextlib.aclosing(stream):
        return [(q.query_id, r) async for q, r in stream]


def test_results_come_back_as_they_finish_not_in_input_order():
    backend = Scripted({"slow": 0.3, "fast": 0.01})
    got = asyncio.run(_collect(_agent(backend), _queries(["slow", "fast"]), max_concurrency=2))
    assert [qid for qid, _ in got] == ["fast", "slow"]
    assert all(r.status == "ok" and r.boxes for _, r in got)


@pytest.mark.parametrize("limit", [1, 3])
def test_at_most_max_concurrency_in_flight_and_every_query_once(limit):
    backend = Scripted()
    phrases = [f"q{i}" for i in range(10)]
    got = asyncio.run(_collect(_agent(backend), _queries(phrases), max_concurrency=limit))
    assert backend.peak == limit
    assert sorted(qid for qid, _ in got) == sorted(phrases)


def test_queries_are_read_lazily_one_per_free_slot():
    backend = Scripted()
    pulled = []

    def source():
        for q in _queries([f"q{i}" for i in range(6)]):
            pulled.append(q.query_id)
            yield q

    async def first_two():
        stream = _agent(backend).astream(source(), max_concurrency=2)
        async with contextlib.aclosing(stream):
            out = []
            async for q, _ in stream:
                out.append(q.query_id)
                if len(out) == 2:
                    break
        return out

    asyncio.run(first_two())
    assert len(pulled) <= 4  # 2 in flight at the start, at most one refill each after


def test_stop_condition_stops_new_queries_and_in_flight_ones_still_return():
    backend = Scripted()
    seen = []

    def stop():
        return len(seen) >= 2

    async def run():
        stream = _agent(backend).astream(_queries([f"q{i}" for i in range(10)]),
                                         max_concurrency=2, stop=stop)  # fmt: skip
        async with contextlib.aclosing(stream):
            async for q, _ in stream:
                seen.append(q.query_id)

    asyncio.run(run())
    assert 2 <= len(seen) <= 3 and len(backend.started) == len(seen)


def test_per_query_failures_are_yielded_and_the_rest_answered():
    backend = Scripted()
    queries = _queries(["ok1", "fail1", "ok2"])
    queries.append(GroundingQuery("/nonexistent/x.png", "unreadable", query_id="unreadable"))
    got = dict(asyncio.run(_collect(_agent(backend), queries, max_concurrency=4)))
    assert isinstance(got["fail1"], VLMTransportError)
    assert isinstance(got["unreadable"], ImageLoadError)
    assert got["ok1"].status == got["ok2"].status == "ok"


def test_a_programming_error_propagates_and_cancels_the_rest():
    backend = Scripted({"slow": 5.0})
    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(_collect(_agent(backend), _queries(["slow", "boom"]), max_concurrency=2))
    assert backend.in_flight == 0  # the slow one was cancelled, not left running


def test_aground_many_keeps_input_order_and_turns_failures_into_error_results():
    backend = Scripted({"a": 0.2, "b": 0.01})
    agent = _agent(backend)
    out = asyncio.run(agent.aground_many(_queries(["a", "fail", "b"]), raise_errors=False))
    assert [r.query_id for r in out] == ["a", "fail", "b"]
    assert out[1].status == "error" and "VLMTransportError: server gone" in out[1].error
    with pytest.raises(VLMTransportError):
        asyncio.run(agent.aground_many(_queries(["a", "fail"])))


def test_error_result_serializes_like_any_result():
    agent = _agent(Scripted())
    q = _queries(["x"])[0]
    d = agent.error_result(q, VLMTransportError("down")).to_dict()
    ok = asyncio.run(agent.aground_many([q]))[0].to_dict()
    assert set(d) == set(ok) and d["status"] == "error" and d["error"] == "VLMTransportError: down"
