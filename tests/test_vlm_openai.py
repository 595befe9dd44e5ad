"""The OpenAI-compatible backend without a server: payloads by equality, retries only on
retryable failures, the too-many-images hint, the response cache, bounded concurrency."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx2
import openai
import pytest

from ricl.vlm import create_backend
from ricl.vlm.base import VLMRequest
from ricl.vlm.errors import TooManyImagesError, VLMConfigError, VLMServerError, VLMTransportError
from ricl.vlm.openai import OpenAIBackend
from ricl.vlm.payload import build_chat_payload, data_url, payload_hash
from tests.agent_fixtures import exemplar  # noqa: F401
from tests.fakes import make_request

ANSWER = "<|object_ref_start|>nodule<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>"


def _completion(text: str = ANSWER) -> dict:
    return {
        "id": "c1", "object": "chat.completion", "created": 0, "model": "tiny",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }  # fmt: skip


@pytest.fixture
def request_k2(tmp_path: Path) -> VLMRequest:
    return make_request(tmp_path)


def _backend(handler, **kw) -> OpenAIBackend:
    client = openai.OpenAI(base_url="http://test/v1", api_key="x", max_retries=kw.pop("retries", 2),
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))  # fmt: skip
    return OpenAIBackend("tiny", "http://test/v1", client=client, **kw)


def test_payload_is_a_pure_function_of_the_messages(request_k2):
    payload = build_chat_payload("tiny", request_k2.prompt.messages, max_tokens=32, seed=3,
                                 image_url=lambda ref: f"img:{ref.path.name}")  # fmt: skip
    system, *turns = payload["messages"]
    assert payload["model"] == "tiny" and payload["max_tokens"] == 32 and payload["seed"] == 3
    assert system == {"role": "system", "content": request_k2.prompt.messages[0].text}
    assert turns[0] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "img:img0.png"}},
                    {"type": "text", "text": "Locate: nodule right upper"}],
    }  # fmt: skip
    assert turns[1] == {"role": "assistant", "content": request_k2.prompt.messages[2].text}
    assert turns[-1]["content"][0] == {"type": "image_url", "image_url": {"url": "img:img2.png"}}
    with pytest.raises(ValueError, match="override"):
        build_chat_payload("tiny", [], extra_body={"model": "other"})


def test_images_go_as_png_data_urls_of_the_pixels_as_sent(request_k2):
    backend = _backend(lambda r: httpx2.Response(200, json=_completion()))
    payload = backend.payload(request_k2)
    urls = [p["image_url"]["url"] for m in payload["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p["type"] == "image_url"]  # fmt: skip
    assert len(urls) == 3
    assert urls[2] == data_url(request_k2.prompt.query.render())
    assert payload_hash(payload) == payload_hash(backend.payload(request_k2))


def test_generate_returns_the_text_and_sends_three_images(request_k2):
    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        return httpx2.Response(200, json=_completion())

    gen = _backend(handler).generate(request_k2)
    assert gen.text == ANSWER and gen.model == "tiny" and gen.usage["finish_reason"] == "stop"
    n_images = sum(1 for m in seen[0]["messages"] if isinstance(m["content"], list)
                   for p in m["content"] if p["type"] == "image_url")  # fmt: skip
    assert n_images == 3


def test_retryable_failures_are_retried_then_succeed(request_k2):
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) < 3:
            return httpx2.Response(503, json={"message": "busy"}, headers={"retry-after-ms": "1"})
        return httpx2.Response(200, json=_completion())

    assert _backend(handler, retries=3).generate(request_k2).text == ANSWER
    assert len(calls) == 3


def test_client_errors_are_not_retried(request_k2):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx2.Response(400, json={"message": "bad sampling parameter"})

    with pytest.raises(VLMServerError, match="HTTP 400 \\(not retryable\\)") as err:
        _backend(handler, retries=3).generate(request_k2)
    assert len(calls) == 1 and err.value.status == 400


def test_persistent_5xx_ends_in_a_server_error_after_the_retries(request_k2):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx2.Response(500, json={"message": "boom"}, headers={"retry-after-ms": "1"})

    with pytest.raises(VLMServerError, match="after 2 retries"):
        _backend(handler, retries=2).generate(request_k2)
    assert len(calls) == 3


def test_too_many_images_names_the_server_flag(request_k2):
    msg = "At most 1 image(s) may be provided in one prompt."
    backend = _backend(lambda r: httpx2.Response(400, json={"message": msg}))
    with pytest.raises(TooManyImagesError, match="--limit-mm-per-prompt"):
        backend.generate(request_k2)


def test_an_unreachable_server_is_a_transport_error(request_k2):
    def handler(request):
        raise httpx2.ConnectError("connection refused")

    with pytest.raises(VLMTransportError, match="cannot reach"):
        _backend(handler, retries=0).generate(request_k2)


def test_the_cache_answers_greedy_repeats_without_calling(request_k2, tmp_path):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx2.Response(200, json=_completion())

    backend = _backend(handler, cache_dir=tmp_path / "cache")
    first, second = backend.generate(request_k2), backend.generate(request_k2)
    assert len(calls) == 1 and not first.cached and second.cached and second.text == first.text
    sampling = _backend(handler, cache_dir=tmp_path / "cache2", temperature=0.7)
    sampling.generate(request_k2), sampling.generate(request_k2)
    assert len(calls) == 3 and not (tmp_path / "cache2").exists()


def test_generate_many_keeps_order_and_bounds_concurrency(tmp_path):
    state = {"now": 0, "max": 0, "n": 0}

    async def handler(request):
        state["now"] += 1
        state["n"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        body = json.loads(request.content)
        return httpx2.Response(200, json=_completion(body["messages"][-1]["content"][-1]["text"]))

    aclient = openai.AsyncOpenAI(base_url="http://test/v1", api_key="x",
                                 http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))  # fmt: skip
    backend = OpenAIBackend("tiny", "http://test/v1", async_client=aclient, max_concurrency=3)
    requests = [make_request(tmp_path, f"finding {i}") for i in range(10)]
    gens = backend.generate_many(requests)
    assert state["n"] == 10 and state["max"] == 3
    assert [g.text for g in gens] == [f"Locate: finding {i}" for i in range(10)]


def test_create_backend_rejects_unknown_options():
    with pytest.raises(VLMConfigError, match="base_url"):
        create_backend("openai", base_ur="http://x")
    with pytest.raises(VLMConfigError, match="max_concurrency"):
        OpenAIBackend("m", max_concurrency=0)
