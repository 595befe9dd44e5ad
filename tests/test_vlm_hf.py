"""The in-process transformers backend on a tiny random Qwen2-VL built offline: the model
sees the images exactly as the openai backend encodes them, the chat template places one
image block per image, greedy answers are deterministic, and the agent turns whatever the
model says into a status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ricl.agent import GroundingAgent
from ricl.agent_config import AgentConfig
from ricl.vlm.errors import VLMConfigError
from ricl.vlm.hf import HFBackend, decode_data_url, messages_to_hf
from ricl.vlm.payload import image_data_url
from tests.fakes import make_request

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from ricl.vlm.tiny_qwen2vl import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tinyqwen") / "model", seed=0)


@pytest.fixture(scope="module")
def backend(tiny_model) -> HFBackend:
    return HFBackend(str(tiny_model), max_tokens=8)


def test_images_reach_the_model_as_the_server_would_decode_them(tmp_path):
    request = make_request(tmp_path)
    messages, images = messages_to_hf(
        request.prompt.messages, lambda ref: decode_data_url(image_data_url(ref, "png"))
    )
    assert len(images) == 3 and all(im.mode == "RGB" for im in images)
    assert np.array_equal(np.asarray(images[-1]), np.asarray(request.prompt.query.render()))
    assert messages[1]["content"][0] == {"type": "image"}
    assert isinstance(messages[2]["content"], str)  # the assistant's answer turn
    with pytest.raises(ValueError, match="data URL"):
        decode_data_url("http://example.org/x.png")


def test_the_chat_template_places_one_image_block_per_image(backend, tmp_path):
    text, tensors = backend.inputs(make_request(tmp_path))
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 3
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|box_start|>" in text  # the demonstrations' answers in Qwen2-VL syntax
    assert tensors["pixel_values"].shape[0] > 0 and "image_grid_thw" in tensors
    assert tensors["image_grid_thw"].shape[0] == 3


def test_greedy_generation_is_deterministic(backend, tmp_path):
    request = make_request(tmp_path)
    first, second = backend.generate(request), backend.generate(request)
    assert isinstance(first.text, str) and first.text == second.text
    assert first.model == backend.model_id


def test_the_agent_turns_a_random_model_answer_into_a_status(backend, tmp_path):
    from PIL import Image

    image = tmp_path / "q.png"
    Image.new("L", (80, 64), 100).save(image)
    agent = GroundingAgent(AgentConfig(strategy="zero-shot", k=0, codec="qwen2vl"), backend=backend)
    result = agent.ground(image, "nodule")
    assert result.status in {"ok", "empty", "parse_error"}
    assert result.raw == backend.generate(agent.request(_q(image))[0]).text


def _q(image):
    from ricl.agent import GroundingQuery

    return GroundingQuery(image, "nodule")


def test_bad_settings_and_missing_models_are_config_errors(tmp_path):
    with pytest.raises(VLMConfigError, match="dtype"):
        HFBackend("x", dtype="float8")
    with pytest.raises(VLMConfigError, match="cannot load"):
        _ = HFBackend(str(tmp_path / "missing")).model


def test_concurrent_first_calls_load_the_model_once(tiny_model, monkeypatch):
    """Worker threads asking for the model at once wait for one load (transformers'
    from_pretrained is not thread-safe, and each thread would hold its own copy)."""
    import threading
    import time

    from transformers import AutoModelForImageTextToText

    real = AutoModelForImageTextToText.from_pretrained.__func__
    calls: list[int] = []

    def slow_load(cls, *args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.2)  # wide window: without the lock every thread enters here
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", classmethod(slow_load))
    b = HFBackend(str(tiny_model), max_tokens=8)
    models: list[object] = []
    threads = [threading.Thread(target=lambda: models.append(b.model)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(models) == 4 and all(m is models[0] for m in models)
