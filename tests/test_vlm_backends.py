"""The in-process backends without their heavy libraries: the registry is lazy, the vLLM
backend sends the same OpenAI-format conversations (engine faked), knn transfers boxes."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from ricl.errors import UnknownNameError
from ricl.vlm import BACKENDS, create_backend
from ricl.vlm.errors import VLMConfigError
from ricl.vlm.payload import to_openai_messages
from ricl.vlm.vllm_offline import VLLMBackend
from tests.fakes import make_request


def test_registry_names_and_suggestions():
    assert BACKENDS.names() == ["hf", "knn", "openai", "vllm"]
    with pytest.raises(UnknownNameError, match="openai"):
        create_backend("openia")


def test_importing_the_backends_package_imports_no_heavy_library():
    code = (
        "import sys, ricl.vlm, ricl.agent, ricl.prompting.builder;"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'openai', 'faiss', 'jinja2')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _FakeLLM:
    """vLLM's ``LLM.chat``: every answer is ``text``, stopped for ``finish_reason``, with
    five completion tokens after a prompt of seven."""

    def __init__(self, text: str = "[]", finish_reason: str = "stop"):
        self.calls = []
        self.text, self.finish_reason = text, finish_reason

    def chat(self, conversations, sampling_params, use_tqdm=False):
        self.calls.append((conversations, sampling_params))
        out = types.SimpleNamespace(text=self.text, finish_reason=self.finish_reason,
                                    token_ids=[1] * 5)  # fmt: skip
        return [types.SimpleNamespace(outputs=[out], prompt_token_ids=[0] * 7)
                for _ in conversations]  # fmt: skip


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_vllm_backend_batches_the_openai_conversations(fake_vllm, tmp_path):
    llm = _FakeLLM()
    backend = VLLMBackend("tiny", max_images=3, max_tokens=16, seed=1, llm=llm)
    requests = [make_request(tmp_path, f"finding {i}") for i in range(2)]
    gens = backend.generate_many(requests)
    assert [g.text for g in gens] == ["[]", "[]"]
    conversations, params = llm.calls[0]
    assert conversations == [to_openai_messages(r.prompt.messages) for r in requests]
    assert params == {"temperature": 0.0, "max_tokens": 16, "seed": 1}


def test_vllm_backend_reports_answers_stopped_at_max_tokens(fake_vllm, tmp_path):
    """vLLM's finish_reason reaches the usage, so the agent marks a cut answer truncated
    (and ``ricl eval`` counts it) as it does for the openai and hf backends."""
    from PIL import Image

    from ricl.agent import GroundingAgent

    stop = VLLMBackend("tiny", llm=_FakeLLM()).generate(make_request(tmp_path))
    assert stop.usage == {"finish_reason": "stop", "prompt_tokens": 7, "completion_tokens": 5}
    cut_llm = _FakeLLM("<|box_start|>(100,2", "length")
    cut = VLLMBackend("tiny", llm=cut_llm).generate(make_request(tmp_path))
    assert cut.usage["finish_reason"] == "length"
    image = Image.new("L", (64, 64), 90)
    for llm, truncated in ((_FakeLLM("Not present."), False), (cut_llm, True)):
        agent = GroundingAgent({"strategy": "zero-shot", "k": 0, "codec": "qwen2vl"},
                               backend=VLLMBackend("tiny", llm=llm))  # fmt: skip
        result = agent.ground(image, "nodule")
        assert result.truncated is truncated
        assert result.to_dict()["truncated"] is truncated


def test_vllm_backend_refuses_prompts_over_its_image_limit(fake_vllm, tmp_path):
    backend = VLLMBackend("tiny", max_images=2, llm=_FakeLLM())
    with pytest.raises(VLMConfigError, match="3 images"):
        backend.generate(make_request(tmp_path))


def test_vllm_backend_explains_how_to_install_vllm(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails
    with pytest.raises(VLMConfigError, match="setup_vllm_cpu"):
        VLLMBackend("tiny").generate(make_request(tmp_path))


def test_knn_writes_its_transfer_in_the_request_codec(tmp_path):
    request = make_request(tmp_path, "nodule right upper")
    gen = create_backend("knn").generate(request)
    demo = request.prompt.demos[0]
    parsed = request.codec.parse(gen.text, image_size=request.prompt.query.sent_size)
    assert parsed.status == "ok"
    for got, want in zip(parsed.boxes, demo.finding.boxes, strict=True):
        assert got.to_list() == pytest.approx(want.to_list(), abs=1e-3)
    strict = create_backend("knn", min_similarity=1.0).generate(make_request(tmp_path, "effusion"))
    assert request.codec.parse(strict.text, image_size=(64, 48)).status == "empty"
