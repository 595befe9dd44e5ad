"""``max_tokens`` derived from the codec and the largest gold box count (``auto``), and
answers cut at max_tokens counted as truncated in results, rows, run.json and metrics."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ricl.agent import GroundingAgent
from ricl.agent_config import AgentConfigError
from ricl.boxes.codecs import CODECS, get_codec
from ricl.types import Box
from ricl.vlm.base import Generation
from ricl.vlm.budget import answer_token_budget, dataset_token_budget
from ricl.vlm.knn import KNNBackend
from ricl_apps.evaluation.run_config import EvalConfig
from ricl_apps.evaluation.runner import load_instances, read_rows, resolve_agent_config, run_eval
from tests.agent_fixtures import make_phantom_index

from .strategies import boxes

# four-decimal floats the first worst case missed (it wrote 0.123 where json writes 0.5625)
_SIXTEENTHS = [Box(a / 16, b / 16, c / 16, d / 16) for a, b, c, d in
               [(0, 0, 12, 1), (0, 0, 14, 11), (0, 0, 9, 11), (0, 0, 9, 2), (0, 0, 15, 2),
                (0, 9, 9, 9.5), (0, 9, 13, 13), (0, 15, 15, 15.5), (10, 13, 13, 13.5),
                (14, 15, 15, 15.5), (14, 15, 15, 15.5), (9, 15, 15, 15.5)]]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(CODECS.names()),
    found=st.lists(boxes(), min_size=1, max_size=12),
    size=st.tuples(st.integers(64, 4096), st.integers(64, 4096)),
)
@example(name="json", found=_SIXTEENTHS, size=(64, 64))
@example(name="qwen2vl", found=[Box(0.0, 0.0, 1.0, 1.0)] * 6, size=(4096, 4096))  # "1000"
@example(name="qwen25vl", found=[Box(0.5, 0.5, 1.0, 1.0)] * 6, size=(4096, 1024))  # 4-digit x
def test_the_budget_bounds_every_answer_of_that_many_boxes(name, found, size):
    """Bytes bound byte-level BPE tokens: the codec's answer for any n boxes on any image
    up to 4096 px fits the budget for n, with the slack for prose left over."""
    codec = get_codec(name)
    phrase = "small nodule in the right upper lobe"
    text = codec.format(found, image_size=size, phrase=phrase)
    slack = 48
    assert len(text.encode()) <= answer_token_budget(codec, len(found), phrase=phrase) - slack + 8


def test_the_budget_grows_with_boxes_and_phrase():
    codec = get_codec("qwen2vl")
    sizes = [answer_token_budget(codec, n, phrase="effusion") for n in range(10)]
    assert sizes == sorted(sizes) and sizes[9] > sizes[1] > sizes[0]
    assert answer_token_budget(codec, 2, phrase="x" * 200) > answer_token_budget(codec, 2)
    assert all(s % 16 == 0 for s in sizes)
    with pytest.raises(ValueError, match="n_boxes"):
        answer_token_budget(codec, -1)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_phantom_index(tmp_path_factory.mktemp("budget"), n=40)


def _config(phantom, runs, max_tokens) -> EvalConfig:
    index, ds = phantom
    return EvalConfig.load({
        "run_id": "b", "runs_dir": str(runs), "report": False, "rodeo": False,
        "dataset": {"name": "phantom", "root": str(ds.root), "split": "test"},
        "agent": {"index": str(index), "selector": "random", "k": 1, "codec": "qwen2vl",
                  "backend": "openai", "backend_options": {"max_tokens": max_tokens}},
    })  # fmt: skip


def test_auto_is_the_budget_of_the_splits_largest_box_count(phantom, tmp_path):
    config = _config(phantom, tmp_path, "auto")
    _, instances = load_instances(config)
    most = max(len(i.boxes) for i in instances)
    resolved = resolve_agent_config(config, instances)
    budget = resolved.backend_options["max_tokens"]
    longest = max((i.phrase for i in instances), key=len)
    assert budget == answer_token_budget(get_codec("qwen2vl"), most, phrase=longest)
    assert budget == dataset_token_budget(get_codec("qwen2vl"), instances)
    assert resolved.backend_options == {"max_tokens": budget}
    fixed = _config(phantom, tmp_path, 77)
    assert resolve_agent_config(fixed, instances) is fixed.agent
    with pytest.raises(AgentConfigError, match="'auto' is resolved by `ricl eval`"):
        GroundingAgent(config.agent)


class CutKNN(KNNBackend):
    """knn whose every second answer is reported as stopped at max_tokens."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def generate(self, request):
        self.calls += 1
        gen = super().generate(request)
        reason = "length" if self.calls % 2 == 0 else "stop"
        return dataclasses.replace(gen, usage={"finish_reason": reason})


def test_truncated_answers_are_counted_in_rows_run_and_metrics(phantom, tmp_path):
    config = _config(phantom, tmp_path, 64)
    agent = GroundingAgent(config.agent, backend=CutKNN())
    summary = run_eval(config, agent=agent, progress=False)
    rows = read_rows(config.run_dir / "predictions.jsonl")
    cut = sum(r["truncated"] for r in rows)
    assert cut == len(rows) // 2 and cut > 0
    assert summary["n_truncated"] == cut
    assert summary["metrics"]["n_truncated"] == cut


def test_a_result_is_truncated_only_when_the_server_said_length():
    agent = GroundingAgent({"backend": "knn", "strategy": "zero-shot", "k": 0})
    from PIL import Image

    from ricl.agent import GroundingQuery

    q = GroundingQuery(Image.new("L", (64, 64), 90), "nodule")
    request, timings = agent.request(q)
    stop = agent.finish(
        q, request, Generation("Not present.", "m", usage={"finish_reason": "stop"}), timings
    )
    cut = agent.finish(
        q, request, Generation("[[0.1, 0.2", "m", usage={"finish_reason": "length"}), timings
    )
    assert (stop.truncated, cut.truncated) == (False, True)
    assert cut.to_dict()["truncated"] is True
