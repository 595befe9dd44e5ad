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
    def __init__(self):
        self.calls = []

    def chat(self, conversations, sampling_params, use_tqdm=False):
        self.calls.append((conversations, sampling_params))
        out = types.SimpleNamespace(text="[]")
        return [types.SimpleNamespace(outputs=[out]) for _ in conversations]


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
