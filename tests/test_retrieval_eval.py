"""Tests for ricl.evaluation.retrieval: exact answers on hand-built embeddings."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ricl.encoders.base import Encoder, ImageEncoding
from ricl.evaluation.retrieval import (
    evaluate_retrieval,
    finding_keys,
    image_text_recall,
    location_precision_at_k,
    recall_at_k,
    region_precision_at_k,
    study_keys,
    topk_indices,
)
from ricl.types import Box, Finding, Study

EYE = np.eye(5, dtype=np.float32)


# ---------------------------------------------------------------------------- ranking
def test_recall_one_hot_known_answer() -> None:
    q = EYE[[3]]
    assert recall_at_k(q, EYE, [{3}], ks=(1, 5))["R@1"] == 1.0
    r = recall_at_k(q, EYE, [{2}], ks=(1, 5))
    assert r == {"R@1": 0.0, "R@5": 1.0}


def test_recall_skips_queries_without_relevant_items() -> None:
    q = EYE[[3, 1]]
    assert recall_at_k(q, EYE, [{3}, set()], ks=(1,))["R@1"] == 1.0
    assert math.isnan(recall_at_k(q, EYE, [set(), set()], ks=(1,))["R@1"])


def test_tie_breaking_is_stable_lower_index_first() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.6, 0.8])
    gallery = np.stack([b, a, b, a, a])
    top = topk_indices(a[None], gallery, 5)
    assert top.tolist() == [[1, 3, 4, 0, 2]]
    same = np.ones((7, 3))
    assert topk_indices(same[:1], same, 4).tolist() == [[0, 1, 2, 3]]
    # k-th value tied with items past k: the lower indices win.
    assert topk_indices(a[None], gallery, 2).tolist() == [[1, 3]]


def test_exclusion_removes_best_match_and_pads() -> None:
    gallery = np.array([[0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [1.0, 0.0]])
    q = np.array([[1.0, 0.0]])
    assert topk_indices(q, gallery, 1).tolist() == [[3]]
    assert topk_indices(q, gallery, 1, exclude=[{3}]).tolist() == [[2]]
    assert topk_indices(q, gallery, 4, exclude=[{3, 0}]).tolist() == [[2, 1, -1, -1]]
    assert topk_indices(q, gallery, 6).tolist() == [[3, 2, 1, 0, -1, -1]]
    assert recall_at_k(q, gallery, [{3}], ks=(1, 3), exclude=[{3}]) == {"R@1": 0.0, "R@3": 0.0}


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        topk_indices(np.array([[np.nan, 0.0]]), EYE[:, :2], 1)
    with pytest.raises(ValueError, match="exclude"):
        topk_indices(EYE[:2], EYE, 1, exclude=[set()])
    with pytest.raises(ValueError, match="dimension"):
        topk_indices(EYE[:1], EYE[:, :3], 1)
    assert topk_indices(np.zeros((2, 5)), np.zeros((0, 5)), 3).tolist() == [[-1] * 3] * 2


def _reference_topk(q: np.ndarray, g: np.ndarray, k: int, ex: list[set[int]]) -> list[list[int]]:
    out = []
    for qi, row in enumerate(q):
        sims = [(-float(row @ g[i]), i) for i in range(len(g)) if i not in ex[qi]]
        top = [i for _, i in sorted(sims)[:k]]
        out.append(top + [-1] * (k - len(top)))
    return out


@settings(max_examples=60, deadline=None)
@given(
    nq=st.integers(1, 9),
    ng=st.integers(0, 12),
    k=st.integers(1, 14),
    chunk=st.integers(1, 10),
    seed=st.integers(0, 2**31 - 1),
)
def test_chunked_equals_unchunked_and_reference(
    nq: int, ng: int, k: int, chunk: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    # Small integer values: exact products and many ties.
    q = rng.integers(-1, 2, size=(nq, 3)).astype(np.float32)
    g = rng.integers(-1, 2, size=(ng, 3)).astype(np.float32)
    ex = [set(rng.choice(max(ng, 1), size=rng.integers(0, 3)).tolist()) for _ in range(nq)]
    full = topk_indices(q, g, k, exclude=ex, chunk_size=10_000)
    assert np.array_equal(topk_indices(q, g, k, exclude=ex, chunk_size=chunk), full)
    assert full.tolist() == _reference_topk(q, g, k, ex)


# ---------------------------------------------------------------------------- image <-> text
def test_image_text_recall_identical_text() -> None:
    img = np.eye(3, dtype=np.float32)
    # image 0: "effusion" ; image 1: "no change" ; image 2: "no change" (verbatim repeat)
    texts = ["effusion", "no change", "no change"]
    txt = np.array([[1, 0, 0], [0, 0.6, 0.8], [0, 0.6, 0.8]], dtype=np.float32)
    text_image = [0, 1, 2]
    strict = image_text_recall(
        img, txt, text_image, ks=(1,), texts=texts, identical_text_is_relevant=False
    )
    # sentence 2 ties with sentence 1 -> image 2 retrieves sentence 1 first (lower index).
    assert strict["i2t_R@1"] == pytest.approx(2 / 3)
    # both "no change" sentences prefer image 2 (0.8 > 0.6): sentence 1 misses.
    assert strict["t2i_R@1"] == pytest.approx(2 / 3)
    lenient = image_text_recall(img, txt, text_image, ks=(1,), texts=texts)
    assert lenient == {"i2t_R@1": 1.0, "t2i_R@1": 1.0}
    # Without texts, identity falls back to identical embeddings: same answer here.
    assert image_text_recall(img, txt, text_image, ks=(1,)) == lenient


def test_image_text_recall_skips_images_without_sentences() -> None:
    img = np.eye(3, dtype=np.float32)
    res = image_text_recall(img, img[[0]], [0], ks=(1,))
    assert res == {"i2t_R@1": 1.0, "t2i_R@1": 1.0}
    with pytest.raises(ValueError, match="outside"):
        image_text_recall(img, img[[0]], [5], ks=(1,))


# ---------------------------------------------------------------------------- precision
def test_location_vs_label_precision_differ() -> None:
    g = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    gallery = [{("nodule", "right")}, {("nodule", "left")}, set()]
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    queries = [{("nodule", "left")}, set()]  # the second query has no finding: skipped
    res = location_precision_at_k(q, g, queries, gallery, ks=(1, 2, 3))
    assert res["loc_P@1"] == 0.0 and res["label_P@1"] == 1.0
    assert res["loc_P@2"] == 0.5 and res["label_P@2"] == 1.0
    assert res["loc_P@3"] == pytest.approx(1 / 3) and res["label_P@3"] == pytest.approx(2 / 3)
    # Exclusion: drop the wrong-location neighbour -> precision over what is returned.
    ex = location_precision_at_k(q, g, queries, gallery, ks=(1,), exclude=[{0}, set()])
    assert ex == {"loc_P@1": 1.0, "label_P@1": 1.0}
    # Everything excluded -> no query left -> NaN.
    none = location_precision_at_k(q, g, queries, gallery, ks=(1,), exclude=[{0, 1, 2}, set()])
    assert math.isnan(none["loc_P@1"])


def test_region_precision_on_constructed_keys() -> None:
    g = np.eye(4)
    g_keys = [("nodule", "left"), ("nodule", "right"), {("mass", "left"), ("x", "y")}, ("a", "")]
    q = np.array([[1.0, 0.9, 0.0, 0.0], [0.0, 0.0, 1.0, 0.9]])
    q_keys = [("nodule", "left"), {("mass", "left")}]
    res = region_precision_at_k(q, g, q_keys, g_keys, ks=(1, 2))
    assert res["region_P@1"] == 1.0
    assert res["region_P@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert res["region_label_P@2"] == pytest.approx((1.0 + 0.5) / 2)
    res_ex = region_precision_at_k(q, g, q_keys, g_keys, ks=(1,), exclude=[{0}, {2}])
    assert res_ex == {"region_P@1": 0.0, "region_label_P@1": 0.5}


def test_finding_and_study_keys() -> None:
    box = (Box(0.1, 0.1, 0.3, 0.3),)
    f = Finding(0, "s", abnormal=True, boxes=box, labels=("a", "b"), locations=("l", "r"))
    assert finding_keys(f) == {("a", "l"), ("a", "r"), ("b", "l"), ("b", "r")}
    assert finding_keys(Finding(1, "s", abnormal=True, boxes=box, labels=("a",))) == {("a", "")}
    assert finding_keys(Finding(2, "s", abnormal=True, labels=("a",))) == set()  # no boxes
    assert finding_keys(Finding(3, "normal")) == set()
    study = Study("s", "i", "p", "test", "x.png", findings=(f, Finding(3, "normal")))
    assert study_keys(study) == finding_keys(f)
    assert study_keys(Study("t", "j", "p", "test", "y.png")) == set()


# ---------------------------------------------------------------------------- driver
KEYS = [("nodule", "left"), ("nodule", "right"), ("effusion", "left"), ("cardiomegaly", "")]


class FakeEncoder:
    """Deterministic protocol implementation: vectors come from callbacks, never files."""

    name = "fake"
    embed_dim = 8

    def __init__(
        self,
        image_vec: Callable[[str], np.ndarray],
        text_vec: Callable[[str], np.ndarray],
        region_vec: Callable[[str, Box], np.ndarray],
    ) -> None:
        self.image_vec, self.text_vec, self.region_vec = image_vec, text_vec, region_vec

    @staticmethod
    def _norm(rows: list[np.ndarray]) -> np.ndarray:
        arr = np.stack(rows).astype(np.float32)
        return arr / np.linalg.norm(arr, axis=1, keepdims=True)

    def encode_images(self, images: Sequence[object], batch_size: int = 16) -> ImageEncoding:
        return ImageEncoding(embeddings=self._norm([self.image_vec(str(p)) for p in images]))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._norm([self.text_vec(t) for t in texts])

    def encode_regions(
        self, images: Sequence[object], boxes: Sequence[Sequence[Box]], batch_size: int = 16
    ) -> np.ndarray:
        assert len(images) == len(boxes) and all(boxes)
        return self._norm([self.region_vec(str(p), b) for p, bs in zip(images, boxes) for b in bs])

    def fingerprint(self) -> str:
        return "0" * 16


def one_hot(i: int) -> np.ndarray:
    v = np.zeros(FakeEncoder.embed_dim)
    v[i] = 1.0
    return v


def make_studies(n: int, split: str, rng: np.random.Generator, start: int = 0) -> list[Study]:
    out = []
    for i in range(start, start + n):
        ki = int(rng.integers(len(KEYS)))
        label, loc = KEYS[ki]
        box = Box(0.1 + 0.01 * (i % 50), 0.2, 0.6, 0.7)
        findings = (
            Finding(
                0,
                f"{label} {loc} #{ki}",
                abnormal=True,
                boxes=(box, Box(0.0, 0.0, 0.1, 0.1)),
                labels=(label,),
                locations=(loc,) if loc else (),
            ),
            Finding(1, "no pleural effusion"),
        )
        out.append(Study(f"s{i}", f"i{i}", f"p{i}", split, f"img/{i}|{ki}.png", findings))
    # A normal study (no keys, no regions) must be handled everywhere.
    out.append(Study(f"n{split}", f"in{split}", f"pn{split}", split, "img/normal|-1.png"))
    return out


def key_of_path(path: str) -> int:
    return int(path.rsplit("|", 1)[1].split(".")[0])


def key_encoder() -> FakeEncoder:
    def image_vec(path: str) -> np.ndarray:
        ki = key_of_path(path)
        return one_hot(ki) if ki >= 0 else one_hot(7)

    return FakeEncoder(
        image_vec,
        text_vec=lambda t: one_hot(int(t.rsplit("#", 1)[1])),
        region_vec=lambda p, b: image_vec(p),
    )


def test_driver_with_key_one_hot_encoder_is_perfect() -> None:
    rng = np.random.default_rng(0)
    gallery, queries = make_studies(12, "train", rng), make_studies(6, "test", rng, start=100)
    enc = key_encoder()
    assert isinstance(enc, Encoder)
    res = evaluate_retrieval(enc, gallery, queries, lambda s: s.image_path, ks=(1, 3))
    for k in (1, 3):
        for m in ("loc_P", "label_P", "region_P", "region_label_P", "i2t_R", "t2i_R"):
            assert res[f"{m}@{k}"] == 1.0, (m, k, res)
    assert res["n_query_images"] == 7 and res["n_gallery_images"] == 13
    assert res["n_query_regions"] == 12 and res["n_gallery_regions"] == 24
    assert res["n_query_sentences"] == 6
    json.dumps(res)


def keyed_study(sid: str, patient: str, path: str, key: tuple[str, str]) -> Study:
    f = Finding(
        0,
        f"{key[0]} #0",
        abnormal=True,
        boxes=(Box(0.1, 0.1, 0.5, 0.5),),
        labels=(key[0],),
        locations=(key[1],),
    )
    return Study(sid, sid, patient, "train", path, (f,))


@pytest.mark.parametrize("query_patient", ["pq", "other"])
def test_driver_excludes_same_patient(query_patient: str) -> None:
    # leak: same patient as the query, identical embedding, but another key; it wins the
    # tie with twin (lower index) unless the same-patient guard removes it.
    leak = keyed_study("leak", "pq", "img/leak|-2.png", KEYS[2])
    twin = keyed_study("twin", "pt", "img/twin|0.png", KEYS[0])
    query = keyed_study("q", query_patient, "img/q|0.png", KEYS[0])

    def image_vec(path: str) -> np.ndarray:
        return one_hot(max(key_of_path(path), 0))

    enc = FakeEncoder(image_vec, lambda t: one_hot(0), lambda p, b: image_vec(p))
    res = evaluate_retrieval(enc, [leak, twin], [query], lambda s: s.image_path, ks=(1,))
    expected = 1.0 if query_patient == "pq" else 0.0
    assert res["loc_P@1"] == expected and res["region_P@1"] == expected


def test_driver_random_encoder_is_near_chance() -> None:
    rng = np.random.default_rng(2)
    gallery, queries = make_studies(80, "train", rng), make_studies(40, "test", rng, start=500)
    vec_rng = np.random.default_rng(3)
    cache: dict[object, np.ndarray] = {}

    def rand(key: object) -> np.ndarray:
        return cache.setdefault(key, vec_rng.normal(size=FakeEncoder.embed_dim))

    enc = FakeEncoder(rand, rand, lambda p, b: rand((p, b)))
    res = evaluate_retrieval(enc, gallery, queries, lambda s: s.image_path, ks=(10,))
    # 4 keys drawn uniformly -> chance 0.25 for location; 0.375 for label ("nodule" x2).
    assert 0.1 < res["loc_P@10"] < 0.45
    assert 0.2 < res["label_P@10"] < 0.55
    assert 0.1 < res["region_P@10"] < 0.45
    assert res["loc_P@10"] <= res["label_P@10"]


def test_driver_empty_query_split() -> None:
    rng = np.random.default_rng(4)
    res = evaluate_retrieval(
        key_encoder(), make_studies(3, "train", rng), [], lambda s: s.image_path
    )
    assert res["n_query_images"] == 0 and math.isnan(res["loc_P@1"])
    assert math.isnan(res["i2t_R@1"]) and math.isnan(res["region_P@1"])


def test_driver_rejects_wrong_embedding_shape() -> None:
    enc = key_encoder()
    enc.embed_dim = 4  # the encoder lies about its dimension
    with pytest.raises(ValueError, match="expected"):
        evaluate_retrieval(enc, make_studies(2, "train", np.random.default_rng(5)), [], str)
