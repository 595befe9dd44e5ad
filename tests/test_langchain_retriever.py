"""The LangChain retriever over a ricl index: the langchain-tests standard suite, documents
per finding, k, search kwargs, the leakage guard, async, LCEL composition, import lightness.

Indexes are built with the fake encoder (no torch); the whole module runs in seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda, RunnableParallel

from ricl.errors import UnknownNameError
from ricl.integrations.langchain import RiclExemplarRetriever
from ricl.retrieval.build import build_index
from ricl.retrieval.retriever import Retriever
from ricl.types import Box
from tests.fakes import FakeEncoder, make_dataset

PHRASE = "pleural effusion number 3"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lc")
    build_index(FakeEncoder(), make_dataset(tmp), "train", tmp / "idx", progress=False)
    return tmp / "idx"


@pytest.fixture(scope="module")
def ricl_retriever(index_dir) -> Retriever:
    return Retriever(index_dir, FakeEncoder())


@pytest.fixture
def lc(ricl_retriever) -> RiclExemplarRetriever:
    return RiclExemplarRetriever(retriever=ricl_retriever, k=4)


# ---------------------------------------------------------------------------- standard suite
try:
    from langchain_tests.integration_tests.retrievers import RetrieversIntegrationTests
except ImportError:  # pragma: no cover - langchain-tests is a test dependency
    RetrieversIntegrationTests = None


if RetrieversIntegrationTests is None:  # pragma: no cover

    def test_standard_retriever_suite():
        pytest.skip("langchain-tests is not installed: the standard retriever suite did not run")

else:
    # The suite's one async test needs the asyncio mark (pytest-asyncio runs in strict
    # mode here); a class mark also reaches the sync tests, which pytest-asyncio warns about.
    @pytest.mark.asyncio
    @pytest.mark.filterwarnings(
        "ignore:The test <Function .* is marked with '@pytest.mark.asyncio'"
    )
    class TestStandardRetrieverSuite(RetrieversIntegrationTests):
        """``langchain_tests.integration_tests.RetrieversIntegrationTests``, unmodified."""

        ricl: Retriever

        @pytest.fixture(autouse=True, scope="class")
        @classmethod
        def _ricl(cls, ricl_retriever):
            cls.ricl = ricl_retriever

        @property
        def retriever_constructor(self) -> type[RiclExemplarRetriever]:
            return RiclExemplarRetriever

        @property
        def retriever_constructor_params(self) -> dict:
            return {"retriever": self.ricl, "k": 4}

        @property
        def retriever_query_example(self) -> str:
            return PHRASE


# ---------------------------------------------------------------------------- documents
def test_one_document_per_finding_with_its_grounding_and_provenance(lc, ricl_retriever):
    docs = lc.invoke(PHRASE, k=6)
    assert len(docs) == 6 and all(isinstance(d, Document) for d in docs)
    exemplars = ricl_retriever.retrieve(PHRASE, 6, "text")
    by_study = {e.study_id: e for e in exemplars}
    ranks = [d.metadata["rank"] for d in docs]
    assert ranks == sorted(ranks) and ranks[0] == 1
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    for rank, group in itertools.groupby(docs, lambda d: d.metadata["rank"]):
        group = list(group)
        e = by_study[group[0].metadata["study_id"]]
        assert e is not None and exemplars[rank - 1].study_id == e.study_id
        for d, f in zip(group, e.findings, strict=False):  # report order (last may be cut)
            m = d.metadata
            assert d.page_content == f.phrase and d.id == f"{e.study_id}/{f.index}"
            assert m["boxes"] == [b.to_list() for b in f.boxes]
            assert all(len(b) == 4 and b[0] < b[2] and b[1] < b[3] for b in m["boxes"])
            assert m["labels"] == list(f.labels) and m["locations"] == list(f.locations)
            assert m["label_group"] == f.label_group and m["finding_index"] == f.index
            assert (m["image_id"], m["patient_id"]) == (e.image_id, e.patient_id)
            assert m["exemplar_id"] == e.exemplar_id and m["split"] == "train"
            assert m["image_path"] == e.image_path == m["source"]
            assert m["image_file"] is None  # the recorded images folder does not exist
            assert m["score"] == pytest.approx(e.score) and m["selector"] == "text"
            assert m["image_size"] == [100, 80] and m["matched_box"] is None
    json.dumps([d.metadata for d in docs])  # plain JSON types only


def test_k_counts_documents_and_cuts_the_last_exemplar(lc, ricl_retriever):
    ranked = ricl_retriever.retrieve(PHRASE, 10, "text")
    j = next(i for i, e in enumerate(ranked) if len(e.findings) > 1)  # a two-finding exemplar
    n = sum(len(e.findings) for e in ranked[: j + 1])
    docs = lc.invoke(PHRASE, k=n - 1)  # one finding short: that exemplar is cut
    assert len(docs) == n - 1
    assert [d.metadata["study_id"] for d in docs][-1] == ranked[j].study_id
    assert [d.metadata["rank"] for d in docs][-1] == j + 1
    _assert_every_finding_of_every_image(lc.invoke(PHRASE, k=1000), ricl_retriever)


def _assert_every_finding_of_every_image(docs: list[Document], r: Retriever) -> None:
    """k beyond the index: all findings of one exemplar per distinct image (S0 and S1 share
    an image, so one of them is de-duplicated away)."""
    images = {e.image_id for e in r.exemplars if e.findings}
    studies = {d.metadata["study_id"] for d in docs}
    assert {d.metadata["image_id"] for d in docs} == images and len(studies) == len(images)
    assert (
        len(docs)
        == len({d.id for d in docs})
        == sum(len(e.findings) for e in r.exemplars if e.study_id in studies)
    )


def test_exemplars_without_findings_give_no_document_and_k_is_still_filled(tmp_path):
    build_index(
        FakeEncoder(), make_dataset(tmp_path), "train", tmp_path / "idx",
        include_normal=True, progress=False,
    )  # fmt: skip
    r = Retriever(tmp_path / "idx", FakeEncoder())
    assert any(not e.findings for e in r.exemplars)
    lc = RiclExemplarRetriever(retriever=r)
    for k in (1, 5, 17):
        assert len(lc.invoke(PHRASE, k=k)) == k
    _assert_every_finding_of_every_image(lc.invoke(PHRASE, k=10_000), r)


def test_absolute_image_paths_under_the_images_root(ricl_retriever, tmp_path):
    lc = RiclExemplarRetriever(retriever=ricl_retriever, images_root=tmp_path)
    for d in lc.invoke(PHRASE):
        want = (tmp_path / d.metadata["image_path"]).resolve()
        assert d.metadata["image_file"] == d.metadata["source"] == str(want)


# ---------------------------------------------------------------------------- parameters
def test_the_leakage_guard_through_invoke_kwargs_and_search_kwargs(lc, ricl_retriever):
    top = lc.invoke(PHRASE, k=1)[0].metadata
    guarded = lc.invoke(PHRASE, k=30, patient_id=top["patient_id"])
    assert len(guarded) == 30
    assert all(d.metadata["patient_id"] != top["patient_id"] for d in guarded)
    by_default = RiclExemplarRetriever(
        retriever=ricl_retriever, search_kwargs={"study_id": top["study_id"], "k": 2}
    )
    got = by_default.invoke(PHRASE)
    assert len(got) == 2 and all(d.metadata["study_id"] != top["study_id"] for d in got)
    assert len(by_default.invoke(PHRASE, k=5)) == 5  # invoke overrides search_kwargs


def test_other_selectors(lc):
    rand = lc.invoke(PHRASE, selector="random", seed=1)
    assert len(rand) == 4 and all(d.metadata["score"] is None for d in rand)
    assert [d.id for d in rand] == [d.id for d in lc.invoke(PHRASE, selector="random", seed=1)]
    oracle = lc.invoke(PHRASE, selector="label-oracle", labels="cardiomegaly", k=3)
    assert len(oracle) == 3
    assert all("cardiomegaly" in lc.retriever.exemplars[d.metadata["exemplar_id"]].labels for d in oracle)  # fmt: skip
    loc = lc.invoke(PHRASE, selector="location", image="img3.png", box=[0.1, 0.2, 0.4, 0.6], k=8)
    firsts = [next(g) for _, g in itertools.groupby(loc, lambda d: d.metadata["rank"])]
    assert all(d.metadata["matched_box"] is not None for d in firsts)
    assert all(
        d.metadata["matched_box"] < len(d.metadata["boxes"]) for d in loc if d.metadata["matched_box"] is not None
    )  # fmt: skip
    also_box = lc.invoke(PHRASE, selector="location", image="img3.png", box=Box(0.1, 0.2, 0.4, 0.6))
    assert [d.id for d in also_box] == [d.id for d in loc[:4]]


def test_bad_parameters_are_refused_with_a_clear_message(ricl_retriever, lc):
    with pytest.raises(ValueError, match="unknown search parameter.*top_k"):
        lc.invoke(PHRASE, top_k=2)
    with pytest.raises(ValueError, match="unknown search parameter"):
        RiclExemplarRetriever(retriever=ricl_retriever, search_kwargs={"kk": 2})
    with pytest.raises(UnknownNameError, match="location"):
        RiclExemplarRetriever(retriever=ricl_retriever, selector="locaton")
    with pytest.raises(UnknownNameError, match="fine-grained"):
        lc.invoke(PHRASE, selector="fine-graned")
    with pytest.raises(ValueError, match="k must be"):
        lc.invoke(PHRASE, k=0)
    with pytest.raises(ValueError):
        RiclExemplarRetriever(retriever=ricl_retriever, k=0)
    with pytest.raises(ValueError):  # a typo in a constructor field
        RiclExemplarRetriever(retriever=ricl_retriever, top_k=3)
    with pytest.raises(ValueError, match="needs a phrase"):
        lc.invoke("   ")


def test_from_index(index_dir):
    lc = RiclExemplarRetriever.from_index(index_dir, FakeEncoder(), k=2, selector="text")
    assert len(lc.invoke(PHRASE)) == 2
    assert lc.retriever.allow_same_patient is False


# ---------------------------------------------------------------------------- async, LCEL
def test_async_passes_the_call_kwargs_and_batches(lc):
    async def main():
        one = await lc.ainvoke(PHRASE, k=2, patient_id="P0")
        many = await lc.abatch([PHRASE, "nodule number 7", "cardiomegaly"])
        return one, many

    one, many = asyncio.run(main())
    assert len(one) == 2 and all(d.metadata["patient_id"] != "P0" for d in one)
    assert [len(m) for m in many] == [4, 4, 4]
    assert [d.id for d in many[0]] == [d.id for d in lc.invoke(PHRASE)]


def test_composes_in_an_lcel_pipeline(lc):
    def prompt(docs: list[Document]) -> str:
        return "\n".join(f"{d.page_content} -> {d.metadata['boxes']}" for d in docs)

    chain = lc | RunnableLambda(prompt)
    text = chain.invoke(PHRASE)
    assert text.count("\n") == 3 and text.splitlines()[0].startswith(lc.invoke(PHRASE)[0].page_content)  # fmt: skip
    fan = RunnableParallel(exemplars=lc.with_config(run_name="exemplars"), phrase=lambda q: q)
    out = (fan | RunnableLambda(lambda d: (d["phrase"], len(d["exemplars"])))).invoke(PHRASE)
    assert out == (PHRASE, 4)
    assert chain.batch([PHRASE, "nodule number 7"])[0] == text


def test_import_ricl_does_not_import_langchain():
    code = (
        "import sys, json, ricl, ricl.integrations, ricl.retrieval; "
        "print(json.dumps([m for m in ('langchain_core', 'langchain_tests', 'faiss') "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# ---------------------------------------------------------------------------- index defaults
# (the size-based default of build_index, changed with the scale benchmark; these belong in
# tests/test_index_store.py, kept here while that file is edited elsewhere)
def test_default_index_config_is_exact_up_to_the_threshold_then_hnsw():
    from ricl.retrieval.store import FLAT_MAX_VECTORS, default_index_config

    assert default_index_config(0).type == "flat"
    assert default_index_config(FLAT_MAX_VECTORS).type == "flat"
    big = default_index_config(FLAT_MAX_VECTORS + 1)
    assert big.type == "hnsw" and big.params() == {
        "M": 32,
        "ef_construction": 200,
        "ef_search": 128,
    }


def test_build_index_picks_the_default_per_file_and_records_it(tmp_path, monkeypatch):
    from ricl.retrieval import store

    ds = make_dataset(tmp_path)
    m = build_index(FakeEncoder(), ds, "train", tmp_path / "small", progress=False)
    assert m.index.type == "flat" and {i.type for i in m.indexes.values()} == {"flat"}
    monkeypatch.setattr(store, "FLAT_MAX_VECTORS", m.counts.exemplars)  # regions: more rows
    assert m.counts.regions > m.counts.exemplars
    m = build_index(FakeEncoder(), ds, "train", tmp_path / "mixed", progress=False)
    assert m.index.type == "flat" and m.indexes["global"].type == "flat"
    assert m.indexes["regions"].type == "hnsw" and m.indexes["regions"].params["ef_search"] == 128
    r = Retriever(tmp_path / "mixed", FakeEncoder())
    assert len(r.retrieve(Path("img3.png"), 5, "location", box=Box(0.1, 0.2, 0.4, 0.6))) == 5
    m = build_index(FakeEncoder(), ds, "train", tmp_path / "given", store.IndexConfig(type="flat"), progress=False)  # fmt: skip
    assert {i.type for i in m.indexes.values()} == {"flat"}  # an explicit config: both files
