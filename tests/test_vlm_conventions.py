"""Per-episode annotation conventions (``episodes.conventions`` of ``ricl train-vlm``): one
drawn convention moves the exemplars' answers and the target together, episodes without
exemplars keep the real boxes, and bad ranges are one config error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ricl.boxes.codecs import get_codec
from ricl.prompting.strategies import load_strategy
from ricl.retrieval.exemplars import Exemplar, ExemplarFinding
from ricl.types import Box
from ricl_apps.train.vlm.config import VLMTrainConfig, VLMTrainConfigError
from ricl_apps.train.vlm.conventions import Convention, ConventionSpec
from tests.agent_fixtures import make_phantom_index


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return make_phantom_index(tmp_path_factory.mktemp("conventions"), n=40)


def _cfg(pool, out, episodes) -> VLMTrainConfig:
    index, ds = pool
    return VLMTrainConfig.load({
        "out_dir": str(out), "sources": [{"root": str(ds.root), "index": str(index)}],
        "episodes": episodes, "steps": 1,
    })  # fmt: skip


def _text(message) -> str:
    c = message["content"]
    return c if isinstance(c, str) else "".join(x.get("text", "") for x in c)


def test_convention_geometry_clips_and_keeps_degenerate_boxes():
    c = Convention(margin=0.05, dx=0.1, dy=-0.02)
    b = c.box(Box(0.2, 0.3, 0.4, 0.5))
    assert (b.x_min, b.y_min, b.x_max, b.y_max) == pytest.approx((0.25, 0.23, 0.55, 0.53))
    edge = c.box(Box(0.8, 0.0, 0.95, 0.1))  # pushed past the right and top edges: clipped
    assert edge.x_max == 1.0 and edge.y_min == 0.0 and edge.x_min == pytest.approx(0.85)
    tight = Convention(margin=-0.06)
    small = Box(0.5, 0.5, 0.6, 0.6)
    assert tight.box(small) == small  # would have no area: the original is kept
    two = [Box(0.1, 0.4, 0.3, 0.6), Box(0.6, 0.45, 0.9, 0.7)]
    assert Convention(merge=True).boxes(two) == (Box(0.1, 0.4, 0.9, 0.7),)
    assert Convention().boxes(two) == tuple(two)


def test_merged_exemplar_keeps_a_valid_matched_region():
    f = ExemplarFinding(0, "bilateral effusion", (Box(0.1, 0.6, 0.3, 0.8), Box(0.7, 0.6, 0.9, 0.8)))
    e = Exemplar(0, "s", "i", "p", "train", "a.png", (f,), matched_region=(0, 1))
    m = Convention(margin=0.01, merge=True).exemplar(e)
    assert m.matched_region == (0, 0) and len(m.findings[0].boxes) == 1
    assert m.findings[0].boxes[0].x_min == pytest.approx(0.09)
    assert e.findings[0].boxes[1].x_min == 0.7  # the stored exemplar is not modified


def test_spec_draws_within_its_ranges_and_rejects_bad_ones():
    spec = ConventionSpec(p=0.6, margin=(-0.01, 0.03), shift=0.02, merge_p=0.5)
    rng = np.random.default_rng(0)
    drawn = [spec.draw(rng) for _ in range(2000)]
    got = [c for c in drawn if c is not None]
    assert 0.55 < len(got) / len(drawn) < 0.65
    assert all(-0.01 <= c.margin <= 0.03 and abs(c.dx) <= 0.02 and abs(c.dy) <= 0.02 for c in got)
    assert 0.45 < np.mean([c.merge for c in got]) < 0.55
    assert ConventionSpec(p=0.0).draw(rng) is None
    with pytest.raises(ValueError, match="margin"):
        ConventionSpec(margin=(0.05, 0.01))


def test_episodes_share_one_convention_between_exemplars_and_target(pool, tmp_path):
    from ricl_apps.train.vlm.episodes import EpisodeSampler, load_pools

    conv = {"p": 1.0, "margin": [0.03, 0.03], "shift": 0.0, "merge_p": 0.0}
    cfg = _cfg(pool, tmp_path / "run", episodes={"k_max": 1, "k_weights": [1, 2],
               "selectors": {"self": 1}, "conventions": conv})  # fmt: skip
    codec = get_codec("json")
    sampler = EpisodeSampler(cfg, load_strategy("k-shot"), codec, load_pools(cfg))
    p = sampler.pools[0]
    rng = np.random.default_rng(0)
    seen = {0: 0, 1: 0}
    for _ in range(40):
        ep = sampler.sample(rng)
        seen[ep.k] += 1
        target = np.array(json.loads(ep.answer), dtype=float)
        if ep.k == 0:  # zero-shot episodes keep the real annotation
            assert ep.convention is None
            continue
        assert ep.convention == Convention(margin=0.03)
        # the exemplar is the query's own study: its shown answer IS the target
        shown = [_text(m) for m in ep.conversation if m["role"] == "assistant"]
        assert np.allclose(np.array(json.loads(shown[0]), dtype=float), target, atol=2e-3)
        # and the target is the gold annotation grown by the margin (clipped to the image)
        phrase = _text(ep.conversation[-1]).split("Locate: ", 1)[1].strip()
        grown = [
            np.clip(np.array([[b.x_min - 0.03, b.y_min - 0.03, b.x_max + 0.03, b.y_max + 0.03]
                              for b in i.boxes]), 0, 1)
            for i in p.instances if i.phrase == phrase
        ]  # fmt: skip
        assert any(g.shape == target.shape and np.allclose(g, target, atol=2e-3) for g in grown)
    assert seen[0] > 0 and seen[1] > 0


def test_bad_convention_config_is_one_error(pool, tmp_path):
    with pytest.raises(VLMTrainConfigError, match="conventions"):
        _cfg(pool, tmp_path, episodes={"k_max": 1, "conventions": {"p": 2}})
    with pytest.raises(VLMTrainConfigError, match="conventions"):
        _cfg(pool, tmp_path, episodes={"k_max": 1, "conventions": {"colour": 1}})
