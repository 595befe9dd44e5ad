"""The on-disk index: atomic + resumable builds, manifest checks, safe files, index types."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from ricl.evaluation.retrieval import topk_indices
from ricl.retrieval.build import build_index
from ricl.retrieval.errors import IndexFormatError, IndexMismatchError, IndexStoreError
from ricl.retrieval.store import IndexConfig, load_index, make_faiss_index
from ricl.types import Finding, Study
from tests.fakes import DIM, FakeEncoder, make_dataset

SAFE_SUFFIXES = {".faiss", ".json", ".jsonl", ".npy"}


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path)


def test_build_writes_only_safe_files_and_a_complete_manifest(tmp_path, dataset):
    enc = FakeEncoder()
    out = tmp_path / "indexes" / "idx"
    build_index(enc, dataset, "train", out, batch_size=7, progress=False)
    files = sorted(p.name for p in out.rglob("*"))
    assert files == ["exemplars.jsonl", "global.faiss", "manifest.json", "regions.faiss", "regions.npy"]  # fmt: skip
    assert {p.suffix for p in out.rglob("*")} <= SAFE_SUFFIXES
    for p in out.iterdir():  # no pickle stream anywhere (protocol 2+ starts with 0x80)
        assert not p.read_bytes().startswith(b"\x80"), p
    assert not (out.parent / ".idx.building").exists()  # the work folder is cleaned up
    m = json.loads((out / "manifest.json").read_text())
    assert m["encoder"] == {"name": "fake:fake", "fingerprint": enc.fingerprint(), "spec": "fake:fake"}  # fmt: skip
    assert m["embed_dim"] == DIM and m["metric"] == "ip" and m["ricl_version"] and m["built_at"]
    assert m["dataset"]["name"] == "synthetic" and len(m["dataset"]["fingerprint"]) == 16
    assert m["index"]["type"] == "flat" and m["indexes"]["global"]["type"] == "flat"
    studies = dataset.studies_of("train")
    positive = [s for s in studies if not s.is_normal]
    n_boxes = sum(len(f.boxes) for s in positive for f in s.findings)
    assert m["counts"] == {"exemplars": len(positive), "regions": n_boxes,
                           "findings": sum(sum(f.abnormal for f in s.findings) for s in positive),
                           "normal_skipped": len(studies) - len(positive)}  # fmt: skip
    store = load_index(out, enc)
    assert [e.study_id for e in store.exemplars] == [s.study_id for s in positive]
    assert all(not f.phrase.startswith("No ") for e in store.exemplars for f in e.findings)
    # region rows point at real boxes, in order
    e_id, fi, bi = store.regions[3]
    box = store.exemplars[e_id].findings[fi].boxes[bi]
    want = enc.encode_regions([store.exemplars[e_id].image_path], [[box]])[0]
    np.testing.assert_allclose(store.vectors("regions", np.array([3]))[0], want, atol=1e-6)
    with_normal = build_index(enc, dataset, "train", tmp_path / "all", include_normal=True, progress=False)  # fmt: skip
    assert with_normal.counts.exemplars == len(studies) and with_normal.dataset.include_normal


def test_crash_mid_build_leaves_no_index_and_a_rerun_embeds_only_the_rest(
    tmp_path, dataset, caplog
):
    out = tmp_path / "idx"
    crashing = FakeEncoder(fail_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(crashing, dataset, "train", out, batch_size=5, progress=False)
    assert "2 of 5 batches are saved" in caplog.text and "rerun the same build" in caplog.text
    assert not out.exists()
    with pytest.raises(IndexStoreError, match="no manifest.json"):
        load_index(out)
    work = tmp_path / ".idx.building"
    with pytest.raises(IndexStoreError):  # the work folder never loads either
        load_index(work)
    assert len(list((work / "shards").glob("*-regions.npy"))) == 2
    resumed = FakeEncoder()
    build_index(resumed, dataset, "train", out, batch_size=5, progress=False)
    names = [e.image_id for e in load_index(out).exemplars]
    done = [n for b in crashing.image_batches for n in b]
    assert done == names[:10]  # two batches of 5 finished before the crash
    assert [n for b in resumed.image_batches for n in b] == names[10:]  # only the rest
    fresh = FakeEncoder()
    build_index(fresh, dataset, "train", tmp_path / "ref", batch_size=5, progress=False)
    a, b = load_index(out), load_index(tmp_path / "ref")
    ids = np.arange(a.manifest.counts.exemplars)
    np.testing.assert_array_equal(a.vectors("global", ids), b.vectors("global", ids))
    assert not work.exists()


def test_a_changed_plan_discards_old_shards(tmp_path, dataset):
    out = tmp_path / "idx"
    with pytest.raises(RuntimeError):
        build_index(FakeEncoder(fail_after=1), dataset, "train", out, batch_size=5, progress=False)
    enc = FakeEncoder()
    build_index(enc, dataset, "train", out, batch_size=6, progress=False)  # other batch size
    assert sum(len(b) for b in enc.image_batches) == load_index(out).manifest.counts.exemplars


def test_an_index_built_with_another_encoder_is_refused_naming_both(tmp_path, dataset):
    out = tmp_path / "idx"
    built = FakeEncoder("alpha")
    build_index(built, dataset, "train", out, progress=False)
    other = FakeEncoder("beta")
    with pytest.raises(IndexMismatchError) as err:
        load_index(out, other)
    msg = str(err.value)
    assert "fake:alpha" in msg and "fake:beta" in msg
    assert built.fingerprint() in msg and other.fingerprint() in msg and str(out) in msg
    load_index(out, FakeEncoder("alpha"))  # same encoder: fine


def test_exact_search_is_the_numpy_brute_force_top_k(tmp_path, dataset):
    enc = FakeEncoder()
    out = tmp_path / "idx"
    build_index(enc, dataset, "train", out, progress=False)
    store = load_index(out)
    gallery = enc.encode_images([e.image_path for e in store.exemplars]).embeddings
    queries = np.stack([np.random.default_rng(i).standard_normal(DIM) for i in range(8)])
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    scores, ids = store.search("global", queries, 10)
    sim = queries @ gallery.T
    # the same values as the brute force, and the returned ids do score them (exemplars 0
    # and 1 share an image, so their order among equal scores is free)
    brute = topk_indices(queries, gallery, 10)
    np.testing.assert_allclose(scores, np.take_along_axis(sim, brute, axis=1), atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(sim, ids, axis=1), scores, atol=1e-5)
    untied = [r for r in range(len(queries)) if not {0, 1} & set(ids[r])]
    np.testing.assert_array_equal(ids[untied], brute[untied])


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("config", [IndexConfig(type="hnsw", M=16), IndexConfig(type="ivf")])
def test_approximate_indexes_recall_at_10_against_flat(config):
    rng = np.random.default_rng(0)
    centres = _unit_rows(rng.standard_normal((40, 32)))  # random unit vectors around 40 centres
    x = _unit_rows(centres[rng.integers(0, 40, 2000)] + 0.07 * rng.standard_normal((2000, 32)))
    q = _unit_rows(centres[rng.integers(0, 40, 50)] + 0.07 * rng.standard_normal((50, 32)))
    exact, _ = make_faiss_index(x, IndexConfig())
    approx, info = make_faiss_index(x, config)
    _, want = exact.search(q, 10)
    _, got = approx.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want, strict=True)])
    assert recall >= 0.9, (info, recall)
    assert info["type"] == config.type and all(v is not None for v in info["params"].values())


def test_index_config_is_strict_and_the_manifest_records_the_parameters(tmp_path, dataset):
    with pytest.raises(ValidationError, match="bogus"):
        IndexConfig.model_validate({"type": "flat", "bogus": 1})
    with pytest.raises(ValidationError, match="parameter of index type 'ivf', not 'hnsw'"):
        IndexConfig(type="hnsw", nlist=8)
    assert IndexConfig.model_validate({"type": "hnsw", "efSearch": 40}).params() == {
        "M": 32, "ef_construction": 200, "ef_search": 40}  # fmt: skip
    m = build_index(FakeEncoder(), dataset, "train", tmp_path / "ivf",
                    IndexConfig(type="ivf", nprobe=2), progress=False)  # fmt: skip
    assert m.index.type == "ivf" and m.indexes["global"].params == {"nlist": 1, "nprobe": 2}
    store = load_index(tmp_path / "ivf", search={"nprobe": 1})
    assert store.global_index.nprobe == 1
    m = build_index(FakeEncoder(), dataset, "train", tmp_path / "hnsw",
                    IndexConfig(type="hnsw", M=8), progress=False)  # fmt: skip
    assert m.indexes["regions"].params == {"M": 8, "ef_construction": 200, "ef_search": 128}


def test_ivf_without_any_box_falls_back_to_flat_for_regions(tmp_path):
    finding = Finding(index=0, sentence_en="Cardiomegaly.", abnormal=True, labels=("cardiomegaly",))
    studies = tuple(Study(f"S{i}", f"i{i}.png", f"P{i}", "train", f"i{i}.png", (finding,)) for i in range(3))  # fmt: skip
    ds = make_dataset(tmp_path)
    ds.studies = studies
    m = build_index(FakeEncoder(), ds, "train", tmp_path / "idx", IndexConfig(type="ivf"), progress=False)  # fmt: skip
    assert m.counts.regions == 0 and m.indexes["regions"].type == "flat"
    assert m.indexes["global"].type == "ivf" and load_index(tmp_path / "idx").region_index.ntotal == 0  # fmt: skip


def test_publish_never_replaces_a_folder_that_is_not_an_index(tmp_path, dataset):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    with pytest.raises(IndexStoreError, match="not a ricl index"):
        build_index(FakeEncoder(), dataset, "train", out, progress=False)
    assert (out / "thesis.tex").read_text() == "keep me"
    idx = tmp_path / "idx"
    build_index(FakeEncoder("a"), dataset, "train", idx, progress=False)
    build_index(FakeEncoder("b"), dataset, "train", idx, progress=False)  # an index is replaced
    assert load_index(idx).manifest.encoder.name == "fake:b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "precious", "release"]


def test_damaged_indexes_are_refused_with_the_file_named(tmp_path, dataset):
    out = tmp_path / "idx"
    build_index(FakeEncoder(), dataset, "train", out, progress=False)
    (out / "regions.faiss").unlink()
    with pytest.raises(IndexFormatError, match="regions.faiss"):
        load_index(out)
    (out / "manifest.json").write_text('{"format": 1, "bogus": true}')
    with pytest.raises(IndexFormatError, match="manifest.json"):
        load_index(out)
