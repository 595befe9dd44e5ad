"""``ricl train-vlm`` on a tiny phantom pool: episodes are the agent's own prompts, labels
cover the answer only, training lowers the loss, resume continues the same batches, and the
result loads as an ordinary Hugging Face model that the hf backend answers with."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ricl.boxes.codecs import get_codec
from ricl.prompting.strategies import load_strategy
from ricl_apps.train.vlm.config import VLMTrainConfig, VLMTrainConfigError
from tests.agent_fixtures import make_phantom_index


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vlmtrain")
    index, ds = make_phantom_index(tmp, n=40)
    return index, ds


def _cfg(pool, out, **over) -> VLMTrainConfig:
    index, ds = pool
    data = {
        "out_dir": str(out),
        "sources": [{"root": str(ds.root), "index": str(index)}],
        "model": {"hidden_size": 128, "num_layers": 1, "num_heads": 2, "vision_depth": 1,
                  "vision_embed_dim": 64, "vocab_size": 400},
        "episodes": {"k_max": 2},
        "steps": 6, "batch_size": 3, "lr": 3e-3, "warmup_steps": 1,
        "log_every": 1, "checkpoint_every": 3,
    }  # fmt: skip
    data.update(over)
    return VLMTrainConfig.load(data)


def test_episodes_are_the_agents_prompts_with_the_answer_as_the_only_label(pool, tmp_path):
    from ricl.vlm.tiny_qwen2vl import build_tiny_qwen2vl, load_qwen2vl_processor
    from ricl_apps.train.vlm.episodes import EpisodeSampler, encode_episode, load_pools

    cfg = _cfg(pool, tmp_path / "run")
    codec = get_codec("qwen2vl")
    sampler = EpisodeSampler(cfg, load_strategy("k-shot"), codec, load_pools(cfg))
    rng = np.random.default_rng(0)
    episodes = [sampler.sample(rng) for _ in range(30)]
    assert {e.k for e in episodes} == {0, 1, 2}
    assert {e.selector for e in episodes} == {"location", "fine-grained", "random"}
    processor = load_qwen2vl_processor(build_tiny_qwen2vl(tmp_path / "m"))
    for ep in episodes[:6]:
        assert len(ep.images) == ep.k + 1
        assert ep.answer.startswith("<|object_ref_start|>") and "<|box_start|>" in ep.answer
        item = encode_episode(ep, processor)
        labelled = [t for t in item["labels"] if t != -100]
        assert processor.tokenizer.decode(labelled) == ep.answer + "<|im_end|>"
        assert item["image_grid_thw"].shape[0] == ep.k + 1
        # the system prompt and each demonstration are in the context, as the agent sends them
        text = processor.tokenizer.decode(item["input_ids"])
        assert text.count("<|im_start|>assistant") == ep.k + 1


def test_training_lowers_the_loss_resumes_and_saves_a_servable_model(pool, tmp_path):
    from ricl_apps.train.vlm.trainer import train_vlm

    cfg = _cfg(pool, tmp_path / "run")
    train_vlm(cfg, progress=False, stop_after=3)
    assert json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text()) == {
        "step": 3
    }
    model_dir = train_vlm(cfg, resume=True, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["loss"] < log[0]["loss"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja",
                 "preprocessor_config.json", "generation_config.json"):  # fmt: skip
        assert (model_dir / name).is_file()

    # the same 6 steps without interruption, batches built by 2 DataLoader workers, give the
    # same weights
    from safetensors.numpy import load_file

    straight = train_vlm(_cfg(pool, tmp_path / "straight", workers=2), progress=False)
    a, b = (
        load_file(str(model_dir / "model.safetensors")),
        load_file(str(straight / "model.safetensors")),
    )
    assert all(np.allclose(a[k], b[k], atol=1e-5) for k in a)

    from ricl.agent import GroundingAgent
    from ricl.agent_config import AgentConfig
    from ricl.retrieval.retriever import Retriever
    from tests.fakes import FakeEncoder

    index, ds = pool
    agent = GroundingAgent(
        AgentConfig(index=str(index), k=2, selector="random", codec="qwen2vl", backend="hf",
                    backend_options={"model": str(model_dir), "max_tokens": 24},
                    max_image_side=112),
        retriever=Retriever(index, FakeEncoder()),
    )  # fmt: skip
    inst = next(i for i in ds.select("test") if i.boxes)
    result = agent.ground(ds.images_root / inst.image_path, inst.phrase, study_id=inst.study_id)
    assert result.status in {"ok", "empty", "parse_error"}


def test_config_errors_name_the_key(pool, tmp_path):
    with pytest.raises(VLMTrainConfigError, match="k_weights"):
        _cfg(pool, tmp_path, episodes={"k_max": 2, "k_weights": [1, 1]})
    with pytest.raises(VLMTrainConfigError, match="colour"):
        _cfg(pool, tmp_path, colour=1)


def test_curriculum_selectors_demonstrate_the_matching_finding(pool, tmp_path):
    from ricl_apps.train.vlm.episodes import EpisodeSampler, load_pools

    cfg = _cfg(pool, tmp_path / "run", episodes={"k_max": 2, "k_weights": [0, 0, 1],
                                                 "selectors": {"self": 1}})  # fmt: skip
    sampler = EpisodeSampler(cfg, load_strategy("k-shot"), get_codec("json"), load_pools(cfg))
    p = sampler.pools[0]
    for i in range(5):
        inst = p.instances[i]
        own, *rest = p.candidates(i, "self", 2, 0)
        assert own.study_id == inst.study_id
        assert own.findings[own.matched_region[0]].index == inst.finding_index
        for e in rest + p.candidates(i, "same-finding", 3, 0):
            f = e.findings[e.matched_region[0]]
            assert e.patient_id != inst.patient_id
            assert set(f.labels) & set(inst.labels) and set(f.locations) & set(inst.locations)


def test_fused_episodes_show_what_the_agent_retrieves(pool, tmp_path):
    """``fused`` in training draws the exemplars the agent's default selector returns for the
    same query (global vector + phrase), under the leakage guard."""
    from ricl.retrieval.retriever import Query
    from ricl_apps.train.vlm.episodes import EpisodeSampler, load_pools

    cfg = _cfg(pool, tmp_path / "run", episodes={"k_max": 3, "k_weights": [0, 0, 0, 1],
                                                 "selectors": {"fused": 1}})  # fmt: skip
    sampler = EpisodeSampler(cfg, load_strategy("k-shot"), get_codec("json"), load_pools(cfg))
    p = sampler.pools[0]
    r = p.retriever
    by_study = {e.study_id: e.exemplar_id for e in r.exemplars}
    for i in range(4):
        inst = p.instances[i]
        got = p.candidates(i, "fused", 3, 0)
        vec = r.store.vectors("global", np.array([by_study[inst.study_id]]))[0]
        want = r.retrieve(Query(embedding=vec, phrase=inst.phrase, study_id=inst.study_id,
                                patient_id=inst.patient_id), k=3, selector="fused")  # fmt: skip
        assert [e.exemplar_id for e in got] == [e.exemplar_id for e in want]
        assert len(got) == 3 and all(e.patient_id != inst.patient_id for e in got)
    episode = sampler.sample(np.random.default_rng(0))
    assert episode.selector == "fused" and episode.k == 3
