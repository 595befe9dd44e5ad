"""The ``fused`` selector and the location words it reads: numbers by hand, rankings
checked against a brute-force re-ranking of the same pool, the leakage guard kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from ricl.agent_config import AgentConfig, AgentConfigError
from ricl.retrieval.errors import QueryError
from ricl.retrieval.fusion import FusionOptions
from ricl.retrieval.location_words import location_agreement, location_terms
from ricl.retrieval.phrases import phrase_similarity
from ricl.retrieval.retriever import Query, Retriever
from ricl.types import Box
from tests.fakes import FakeEncoder

RIGHT_UPPER = Box(0.15, 0.15, 0.35, 0.35)  # the patient's right = the image's left
LEFT_LOWER = Box(0.6, 0.65, 0.85, 0.9)


def test_location_terms_read_side_level_and_bilateral():
    t = location_terms("Small nodule in the right upper lobe.")
    assert t.side == "right" and t.levels == ((0.0, 0.45),) and not t.medial
    assert location_terms("bilateral pleural effusion").side == "bilateral"
    assert location_terms("opacities in the right and left bases").side == "bilateral"
    assert location_terms("left hilar enlargement").medial
    assert location_terms("cardiomegaly").empty


def test_location_agreement_by_hand():
    ru = location_terms("nodule in the right upper lobe")
    assert location_agreement([RIGHT_UPPER], ru) == 1.0
    assert location_agreement([LEFT_LOWER], ru) == 0.0
    assert location_agreement([Box(0.6, 0.1, 0.8, 0.3)], ru) == 0.5  # upper, wrong side
    assert location_agreement([RIGHT_UPPER, LEFT_LOWER], ru) == 0.5  # mean over boxes
    assert location_agreement([], ru) == 0.0
    assert location_agreement([], location_terms("cardiomegaly")) == 1.0
    bil = location_terms("bilateral effusion")
    assert location_agreement([RIGHT_UPPER, LEFT_LOWER], bil) == 1.0
    assert location_agreement([RIGHT_UPPER], bil) == 0.0
    assert location_agreement([Box(0.2, 0.6, 0.8, 0.9)], bil) == 1.0  # spans the midline
    bil_low = location_terms("bilateral basal atelectasis")
    assert location_agreement([RIGHT_UPPER, LEFT_LOWER], bil_low) == pytest.approx(0.75)


@pytest.fixture(scope="module")
def retriever(phantom_index):
    index, ds = phantom_index
    return Retriever(index, FakeEncoder()), ds


def _query(ds, phrase=None):
    study = next(s for s in ds.studies if s.split == "test" and s.findings)
    finding = next(f for f in study.findings if f.abnormal and f.boxes)
    return study, Query(image=Path(ds.images_root / study.image_path),
                        phrase=phrase or finding.sentence_en, study_id=study.study_id,
                        patient_id=study.patient_id)  # fmt: skip


def _brute(r, q, pool_ids, opts):
    """The fused ranking recomputed from the pool's image scores."""
    terms = location_terms(q.phrase)
    pool = [r.exemplars[i] for i in pool_ids]
    scores = [e.score for e in r.search(r.embed(q, "image"), len(pool_ids), r.excluded(q))]
    lo, hi = min(scores), max(scores)
    out = []
    for e, s in zip(pool, scores, strict=True):
        best = max(opts.phrase * phrase_similarity(q.phrase, f.phrase)
                   + opts.location * location_agreement(f.boxes, terms) - (0 if f.boxes else 1e-6)
                   for f in e.findings)  # fmt: skip
        out.append((opts.image * (s - lo) / (hi - lo) + best, e.exemplar_id))
    return out


def test_fused_is_the_brute_force_reranking_of_its_pool(retriever):
    r, ds = retriever
    study, q = _query(ds)
    opts = FusionOptions(image=1.0, phrase=0.7, location=0.4, pool=12)
    got = r.retrieve(q, k=5, selector="fused", options=opts.model_dump())
    pool = [e.exemplar_id for e in r.search(r.embed(q, "image"), 12, r.excluded(q))]
    want = _brute(r, q, pool, opts)
    want.sort(key=lambda t: -t[0])
    assert [e.exemplar_id for e in got] == [i for _, i in want[:5]]
    assert [e.score for e in got] == pytest.approx([s for s, _ in want[:5]])
    assert all(e.patient_id != study.patient_id for e in got)  # the leakage guard holds


def test_fused_with_image_weight_only_is_fine_grained(retriever):
    r, ds = retriever
    _, q = _query(ds)
    only_image = {"image": 1.0, "phrase": 0.0, "location": 0.0, "pool": 30}
    fused = r.retrieve(q, k=4, selector="fused", options=only_image)
    plain = r.retrieve(q, k=4, selector="fine-grained")
    assert [e.exemplar_id for e in fused] == [e.exemplar_id for e in plain]


def test_fused_phrase_weight_brings_the_matching_finding_forward(retriever):
    r, ds = retriever
    _, q = _query(ds)
    opts = {"image": 0.01, "phrase": 1.0, "location": 0.0, "pool": 64}
    got = r.retrieve(q, k=3, selector="fused", options=opts)
    pool = r.search(r.embed(q, "image"), 64, r.excluded(q))
    best_in_pool = max(max(phrase_similarity(q.phrase, f.phrase) for f in e.findings) for e in pool)
    top = got[0]
    shown = top.findings[top.matched_region[0]]  # what the demonstration shows
    assert phrase_similarity(q.phrase, shown.phrase) == pytest.approx(best_in_pool)


def test_selector_options_are_validated(retriever, tmp_path):
    r, ds = retriever
    _, q = _query(ds)
    with pytest.raises(QueryError, match="takes no options"):
        r.retrieve(q, k=2, selector="fine-grained", options={"phrase": 1})
    with pytest.raises(QueryError, match="phras"):
        r.retrieve(q, k=2, selector="fused", options={"phrases": 1})
    with pytest.raises(QueryError, match="needs the query phrase"):
        r.retrieve(Query(image=q.image), k=2, selector="fused")
    with pytest.raises(AgentConfigError, match="selector_options"):
        AgentConfig.load({"index": "x", "selector": "fused", "selector_options": {"bogus": 1}})
    with pytest.raises(AgentConfigError, match="at least one"):
        AgentConfig.load({"index": "x", "selector": "fused",
                          "selector_options": {"image": 0, "phrase": 0, "location": 0}})  # fmt: skip


def test_configs_record_the_effective_options():
    """A config holds the selector's options with defaults filled in (what a run's
    config.yaml saves), so a run made under one default no longer equals a config made
    under another (a cached eval cell is re-run, not silently reused)."""

    cfg = AgentConfig.load({"index": "x", "selector": "fused", "selector_options": {"pool": 64},
                            "first_pass": {"selector": "fused"}})  # fmt: skip
    assert cfg.selector_options == {"image": 1.0, "phrase": 0.5, "location": 0.5, "pool": 64}
    assert cfg.first_pass.selector_options["pool"] == FusionOptions().pool == 1024
    assert AgentConfig.load(cfg.model_dump()) == cfg  # saved and reloaded: the same config
    assert AgentConfig.load({"index": "x"}).selector_options == {}  # fine-grained: none
    # a run saved under the pool-64 default states pool 64, so it differs from today's
    saved = AgentConfig.load({"index": "x", "selector": "fused", "selector_options": {"pool": 64}})
    today = AgentConfig.load({"index": "x", "selector": "fused"})
    assert today.model_dump()["selector_options"] == FusionOptions().model_dump()
    assert AgentConfig.load(saved.model_dump()).model_dump() != today.model_dump()
