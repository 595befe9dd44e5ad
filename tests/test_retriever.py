"""The retriever: selectors, leakage guards, de-duplication by image, query kinds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ricl.errors import UnknownNameError
from ricl.retrieval.build import build_index
from ricl.retrieval.errors import IndexStoreError, QueryError
from ricl.retrieval.exemplars import Exemplar
from ricl.retrieval.retriever import Query, Retriever
from ricl.types import Box
from tests.fakes import FakeEncoder, make_dataset, unit


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retr")
    build_index(FakeEncoder(), make_dataset(tmp), "train", tmp / "idx", progress=False)
    return tmp / "idx"


@pytest.fixture
def retriever(index):
    return Retriever(index, FakeEncoder())


def _brute(r: Retriever, vec: np.ndarray, which: str = "global") -> list[str]:
    """Study ids by descending inner product, de-duplicated by image, no exclusions."""
    ids = np.arange(len(r.exemplars) if which == "global" else len(r.store.regions))
    sims = r.store.vectors(which, ids) @ vec
    owners = ids if which == "global" else r.store.regions[:, 0]
    out, seen = [], set()
    for i in np.argsort(-sims, kind="stable"):
        e = r.exemplars[int(owners[i])]
        if e.image_id not in seen:
            seen.add(e.image_id)
            out.append(e.study_id)
    return out


def test_leakage_guard_never_returns_the_study_or_the_patient_and_still_fills_k(retriever):
    for e in retriever.exemplars:
        got = retriever.retrieve(Path(e.image_path), 15, study_id=e.study_id, patient_id=e.patient_id)  # fmt: skip
        assert len(got) == 15  # over-fetched past the exclusions
        assert all(x.patient_id != e.patient_id and x.study_id != e.study_id for x in got)
        assert [x.score for x in got] == sorted((x.score for x in got), reverse=True)
    assert retriever.settings()["allow_same_patient"] is False


def test_the_guard_is_off_only_with_the_explicit_flag(index):
    r = Retriever(index, FakeEncoder(), allow_same_patient=True)
    target = r.exemplars[5]
    got = r.retrieve(Path(target.image_path), 3, study_id=target.study_id, patient_id=target.patient_id)  # fmt: skip
    assert got[0].study_id == target.study_id and got[0].score == pytest.approx(1.0, abs=1e-5)
    assert r.settings()["allow_same_patient"] is True


def test_results_are_deduplicated_by_image(retriever):
    # studies S0 and S1 share img0.png: one of them at most
    got = retriever.retrieve(Query(image=Path("img0.png")), 10)
    assert [e.image_id for e in got].count("img0.png") == 1
    assert len({e.image_id for e in got}) == len(got) == 10


def test_fine_grained_and_precomputed_embeddings_rank_like_brute_force(retriever):
    vec = unit("img7.png")
    want = _brute(retriever, vec)[:6]
    assert [e.study_id for e in retriever.retrieve(Path("img7.png"), 6)] == want
    assert [e.study_id for e in retriever.retrieve(vec, 6)] == want
    assert [e.study_id for e in retriever.retrieve(vec[None, :] * 3.0, 6)] == want  # normalized


def test_location_queries_search_the_region_index(retriever):
    box = Box(0.1, 0.2, 0.4, 0.6)
    got = retriever.retrieve(Path("img3.png"), 5, "location", box=box)
    vec = FakeEncoder().encode_regions(["img3.png"], [[box]])[0]
    assert [e.study_id for e in got] == _brute(retriever, vec, "regions")[:5]
    for e in got:  # the matched region is a real gold box of that exemplar
        fi, bi = e.matched_region
        assert e.findings[fi].boxes[bi] in e.boxes
    assert retriever.retrieve(Path("img3.png"), 2, "location", box=[0.1, 0.2, 0.4, 0.6]) == got[:2]  # fmt: skip
    with pytest.raises(QueryError, match="needs a box"):
        retriever.retrieve(Path("img3.png"), 5, "location")


def test_text_queries_embed_the_phrase(retriever):
    got = retriever.retrieve("nodule number 3", 4, "text")
    assert [e.study_id for e in got] == _brute(retriever, unit("text:nodule number 3"))[:4]
    with pytest.raises(QueryError, match="needs a phrase"):
        retriever.retrieve(Path("img3.png"), 4, "text")


def test_a_bare_string_is_a_phrase_not_a_path(retriever):
    with pytest.raises(QueryError, match="Path"):
        retriever.retrieve("img3.png", 4)  # fine-grained needs an image
    with pytest.raises(QueryError, match="dim 16"):
        retriever.retrieve(np.ones(5, np.float32), 4)


def test_random_is_seeded_guarded_and_differs_between_queries(retriever, index):
    q = Query(image=Path("img3.png"), study_id="S3", patient_id="P1")
    a = retriever.retrieve(q, 6, "random")
    assert [e.study_id for e in a] == [e.study_id for e in Retriever(index).retrieve(q, 6, "random")]  # fmt: skip
    assert all(e.score is None and e.patient_id != "P1" for e in a)
    other = retriever.retrieve(Query(study_id="S9", patient_id="P3"), 6, "random")
    reseeded = retriever.retrieve(q, 6, "random", seed=1)
    assert [e.study_id for e in a] != [e.study_id for e in other]
    assert [e.study_id for e in a] != [e.study_id for e in reseeded]
    assert len({e.image_id for e in retriever.retrieve(Query(), 23, "random")}) == 23


def test_random_draws_do_not_depend_on_where_the_release_lives(retriever):
    """The same query over the same index draws the same exemplars whether its image is
    read from one folder or another (a release copied to another machine), and a different
    image file draws differently."""
    here = Query(image=Path("/data/a/images/img3.png"), study_id="S3", patient_id="P1",
                 phrase="nodule")  # fmt: skip
    there = Query(image=Path("/mnt/copy/images/img3.png"), study_id="S3", patient_id="P1",
                  phrase="nodule")  # fmt: skip
    assert here.key() == there.key()
    ids = [e.exemplar_id for e in retriever.retrieve(here, 6, "random")]
    assert ids == [e.exemplar_id for e in retriever.retrieve(there, 6, "random")]
    other = Query(image=Path("/data/a/images/img4.png"), study_id="S3", patient_id="P1",
                  phrase="nodule")  # fmt: skip
    assert other.key() != here.key()


def test_label_oracle_needs_labels_and_returns_only_label_sharing_exemplars(retriever):
    with pytest.raises(QueryError, match="gold labels"):
        retriever.retrieve(Path("img3.png"), 5, "label-oracle")
    got = retriever.retrieve(Query(labels=("nodule",), study_id="S0", patient_id="P0"), 50, "label-oracle")  # fmt: skip
    sharing = {e.study_id for e in retriever.exemplars if "nodule" in e.labels and e.patient_id != "P0"}  # fmt: skip
    assert {e.study_id for e in got} == sharing and all(e.score == 1.0 for e in got)
    both = retriever.retrieve(Query(image=Path("img7.png"), labels=("nodule", "cardiomegaly")), 50, "label-oracle")  # fmt: skip
    scores = [e.score for e in both]
    assert scores == sorted(scores, reverse=True) and set(scores) <= {0.5, 1.0}
    ranked = _brute(retriever, unit("img7.png"))
    halves = [e.study_id for e in both if e.score == 0.5]  # ties ordered by image similarity
    assert halves == [s for s in ranked if s in set(halves)]


def test_unknown_selectors_get_a_suggestion(retriever):
    with pytest.raises(UnknownNameError, match="fine-grained"):
        retriever.retrieve(Path("img3.png"), 5, "fine_grained")


def test_no_encoder_is_loaded_for_queries_that_need_none(index, monkeypatch):
    import ricl.encoders

    def no_hub(spec):
        raise OSError(f"{spec}: no such encoder here")

    monkeypatch.setattr(ricl.encoders, "load", no_hub)
    r = Retriever(index)  # the manifest's spec ("fake:fake") cannot be loaded, nor is it needed
    assert len(r.retrieve(unit("img3.png"), 3)) == 3
    assert len(r.retrieve(Query(labels=("nodule",)), 3, "label-oracle")) == 3
    assert r.settings()["n_unguarded"] == 2
    with pytest.raises(IndexStoreError, match="cannot load the query encoder 'fake:fake'"):
        r.retrieve(Path("img3.png"), 3)


def test_exemplars_round_trip_through_json(retriever):
    e = retriever.retrieve(Path("img3.png"), 1, "location", box=Box(0.1, 0.2, 0.4, 0.6))[0]
    d = json.loads(json.dumps(e.to_dict()))
    assert Exemplar.from_dict(d) == e
    assert d["findings"][0]["boxes"][0] == e.findings[0].boxes[0].to_list()
    assert not d["image_path"].startswith("/")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_serve_every_selector(tmp_path, kind):
    from ricl.retrieval.store import IndexConfig

    build_index(FakeEncoder(), make_dataset(tmp_path), "train", tmp_path / kind,
                IndexConfig(type=kind), progress=False)  # fmt: skip
    r = Retriever(tmp_path / kind, FakeEncoder())
    exact = _brute(r, unit("img7.png"))
    assert [e.study_id for e in r.retrieve(Path("img7.png"), 5, study_id="S7")] == [s for s in exact if s != "S7"][:5]  # fmt: skip
    oracle = r.retrieve(Query(image=Path("img7.png"), labels=("nodule",)), 3, "label-oracle")
    labels = {e.study_id: e.labels for e in r.exemplars}
    assert [e.study_id for e in oracle] == [s for s in exact if "nodule" in labels[s]][:3]
    box = Box(0.1, 0.2, 0.4, 0.6)
    assert len(r.retrieve(Path("img3.png"), 4, "location", box=box)) == 4
