"""A LangChain retriever over a ricl exemplar index: documents are exemplar FINDINGS.

>>> from ricl.integrations.langchain import RiclExemplarRetriever
>>> retriever = RiclExemplarRetriever.from_index("indexes/padchest", k=6)  # doctest: +SKIP
>>> retriever.invoke("left pleural effusion", patient_id="P12")  # doctest: +SKIP
[Document(id='S8/2', page_content='pleural effusion in the left base', metadata={...}), ...]

What a document is
    One :class:`~langchain_core.documents.Document` per positive finding of a retrieved
    exemplar (the issue's "documents are exemplar findings"): ``page_content`` is the
    finding's phrase, ``metadata`` its grounding and where it comes from (below). The
    findings of one exemplar are consecutive and share ``rank``, ``score`` and ``study_id``
    (group them back with ``itertools.groupby(docs, lambda d: d.metadata["rank"])``).
    Within an exemplar the findings keep their report order, except that for the
    ``location`` selector the finding whose box matched comes first. Exemplars without a
    positive finding (indexes built with ``include_normal=True``) yield no document.

What ``k`` counts
    DOCUMENTS (findings), as everywhere in LangChain: exemplars are retrieved best first
    until ``k`` findings are collected, and the last exemplar may be cut (its remaining
    findings dropped). Exactly ``k`` come back unless the index (after the leakage guard)
    holds fewer findings.

Metadata of each document
    ``source`` (the absolute image file when known, else the relative path),
    ``image_path`` (relative to the images folder), ``image_file`` (absolute, or None when
    no images folder is known: the ``images_root`` field, else the one recorded at build
    time when it exists on this machine), ``boxes`` (``[[x_min, y_min, x_max, y_max], ...]``
    normalized to the original image, possibly empty), ``labels``, ``locations``,
    ``label_group``, ``finding_index`` (position in the study's findings), ``study_id``,
    ``image_id``, ``patient_id``, ``exemplar_id``, ``split``, ``image_size``
    (``[width, height]`` or None), ``score`` (similarity; None for ``random``), ``rank``
    (1-based rank of the exemplar), ``selector``, ``matched_box`` (``location`` only: the
    position in ``boxes`` of the region that matched, else None). ``Document.id`` is
    ``"{study_id}/{finding_index}"``.

Parameters of a search
    Fields of the retriever (``k``, ``selector``), overridden by the retriever's
    ``search_kwargs`` dict, overridden by keyword arguments of ``invoke``/``ainvoke``
    (``retriever.invoke("nodule", k=3, patient_id="P1")``). Keys: ``k``, ``selector``
    (``text`` by default: the query string is a phrase; ``random``; ``label-oracle`` with
    ``labels``; ``fine-grained`` with ``image``; ``location`` with ``image`` and ``box``),
    ``study_id`` / ``patient_id`` (the leakage guard: nothing of that study or patient is
    returned), ``labels``, ``seed``, ``image`` (a path), ``box``. Unknown keys are refused.

Concurrency
    ``ainvoke`` / ``abatch`` run the synchronous search in the default executor (with the
    call's keyword arguments, which LangChain's default async path would drop). Calls on
    the same ricl :class:`~ricl.retrieval.retriever.Retriever` are serialized by a lock:
    its query encoder loads lazily and is not assumed thread-safe. Each call counts as one
    query in that retriever's ``settings()`` (more when exemplars without findings force a
    wider search).

``import ricl`` does not import LangChain; importing this module does (``langchain-core``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
    from langchain_core.runnables.config import run_in_executor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ricl.integrations.langchain needs langchain-core: pip install langchain-core"
    ) from exc
from pydantic import ConfigDict, Field, field_validator

from ricl.retrieval.errors import QueryError
from ricl.retrieval.retriever import Query, Retriever

if TYPE_CHECKING:
    from langchain_core.callbacks.manager import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )

    from ricl.encoders.base import Encoder
    from ricl.retrieval.exemplars import Exemplar, ExemplarFinding

__all__ = ["SEARCH_KEYS", "RiclExemplarRetriever", "exemplar_documents"]

SEARCH_KEYS = frozenset(
    {"k", "selector", "study_id", "patient_id", "labels", "seed", "image", "box"}
)
_IGNORED = frozenset({"verbose"})  # passed through by BaseRetriever.invoke, not a search key

_LOCKS: weakref.WeakKeyDictionary[Retriever, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_of(retriever: Retriever) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(retriever)
        if lock is None:
            lock = _LOCKS[retriever] = threading.Lock()
        return lock


def _check_keys(params: dict[str, Any], where: str) -> None:
    unknown = set(params) - SEARCH_KEYS - _IGNORED
    if unknown:
        raise ValueError(
            f"{where}: unknown search parameter(s) {sorted(unknown)}; known: {sorted(SEARCH_KEYS)}"
        )


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return k


def _findings_in_order(e: Exemplar) -> list[tuple[ExemplarFinding, int | None]]:
    """``(finding, matched box position or None)``, the matched finding first."""
    order = list(e.findings)
    matched: tuple[int, int] | None = e.matched_region
    if matched is None or not 0 <= matched[0] < len(order):
        return [(f, None) for f in order]
    first = order.pop(matched[0])
    return [(first, matched[1])] + [(f, None) for f in order]


def exemplar_documents(
    exemplars: Sequence[Exemplar],
    image_file: Any = None,
    selector: str | None = None,
    limit: int | None = None,
) -> list[Document]:
    """One Document per finding of ``exemplars`` (best first), at most ``limit``.

    ``image_file``: ``fn(exemplar) -> Path | None`` giving the absolute image file.
    See the module docstring for the metadata.
    """
    docs: list[Document] = []
    for rank, e in enumerate(exemplars, start=1):
        file = image_file(e) if image_file is not None else None
        for f, matched_box in _findings_in_order(e):
            if limit is not None and len(docs) >= limit:
                return docs
            docs.append(
                Document(
                    id=f"{e.study_id}/{f.index}",
                    page_content=f.phrase,
                    metadata={
                        "source": str(file) if file is not None else e.image_path,
                        "image_path": e.image_path,
                        "image_file": str(file) if file is not None else None,
                        "boxes": [b.to_list() for b in f.boxes],
                        "labels": list(f.labels),
                        "locations": list(f.locations),
                        "label_group": f.label_group,
                        "finding_index": f.index,
                        "study_id": e.study_id,
                        "image_id": e.image_id,
                        "patient_id": e.patient_id,
                        "exemplar_id": e.exemplar_id,
                        "split": e.split,
                        "image_size": list(e.image_size) if e.image_size else None,
                        "score": e.score,
                        "rank": rank,
                        "selector": selector,
                        "matched_box": matched_box,
                    },
                )
            )
    return docs


class RiclExemplarRetriever(BaseRetriever):
    """LangChain retriever of exemplar findings from a ricl index (see the module docstring).

    Build it around a ricl :class:`~ricl.retrieval.retriever.Retriever`
    (``RiclExemplarRetriever(retriever=Retriever(...), k=6)``) or from an index directory
    (:meth:`from_index`). The leakage guard is the ricl retriever's: on unless that was
    built with ``allow_same_patient=True``; pass ``study_id`` / ``patient_id`` per call.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    retriever: Retriever
    """The ricl retriever (index, query encoder, leakage guard)."""
    k: int = Field(4, ge=1, strict=True)
    """Number of documents (findings) to return."""
    selector: str = "text"
    """ricl selector; ``text`` embeds the query string as a phrase."""
    images_root: Path | None = None
    """Images folder for absolute paths; None: the one recorded at build time, if present."""
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Default search parameters (keys: :data:`SEARCH_KEYS`), overriding ``k``/``selector``."""

    @field_validator("selector")
    @classmethod
    def _known_selector(cls, name: str) -> str:
        from ricl.retrieval.selectors import SELECTORS

        SELECTORS.get(name)  # UnknownNameError (a KeyError, not wrapped by pydantic), with hints
        return name

    @field_validator("search_kwargs")
    @classmethod
    def _known_keys(cls, params: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, "search_kwargs")
        if "k" in params:
            _check_k(params["k"])
        if "selector" in params:
            cls._known_selector(params["selector"])
        return params

    @classmethod
    def from_index(
        cls,
        index_dir: str | Path,
        encoder: Encoder | str | None = None,
        *,
        allow_same_patient: bool = False,
        seed: int = 0,
        search: dict[str, int] | None = None,
        **fields: Any,
    ) -> RiclExemplarRetriever:
        """Open ``index_dir`` (see :class:`~ricl.retrieval.retriever.Retriever` for the
        arguments) and wrap it; ``fields``: ``k``, ``selector``, ``images_root``, ...."""
        ricl_retriever = Retriever(
            index_dir, encoder, allow_same_patient=allow_same_patient, seed=seed, search=search
        )
        return cls(retriever=ricl_retriever, **fields)

    # ------------------------------------------------------------------ helpers
    def search_params(self, **overrides: Any) -> dict[str, Any]:
        """The effective search parameters of a call with keyword arguments ``overrides``."""
        _check_keys(overrides, "invoke")
        params = {"k": self.k, "selector": self.selector, **self.search_kwargs, **overrides}
        for key in _IGNORED:
            params.pop(key, None)
        _check_k(params["k"])
        if "selector" in overrides:
            self._known_selector(params["selector"])
        return params

    def _images_root(self) -> Path | None:
        if self.images_root is not None:
            return self.images_root
        recorded = self.retriever.store.manifest.dataset.images_root
        return Path(recorded) if recorded and Path(recorded).is_dir() else None

    def _query(self, text: str, params: dict[str, Any]) -> Query:
        labels = params.get("labels")
        image = params.get("image")
        return Query(
            image=Path(image) if isinstance(image, str) else image,
            phrase=text,
            study_id=params.get("study_id"),
            patient_id=params.get("patient_id"),
            labels=(labels,) if isinstance(labels, str) else tuple(labels or ()),
        )

    def _search(self, query: str, params: dict[str, Any]) -> list[Document]:
        k, selector = params["k"], params["selector"]
        q = self._query(query, params)
        n_total = len(self.retriever.exemplars)
        root = self._images_root()

        def image_file(e: Exemplar) -> Path | None:
            return None if root is None else self.retriever.image_file(e, root)

        if n_total == 0:
            return []
        n = min(k, n_total)
        with _lock_of(self.retriever):
            while True:  # usually once: every exemplar has >= 1 finding
                found = self.retriever.retrieve(
                    q, n, selector, box=params.get("box"), seed=params.get("seed")
                )
                n_findings = sum(len(e.findings) for e in found)
                if n_findings >= k or len(found) < n or n >= n_total:
                    break
                n = min(n_total, max(2 * n, n + k - n_findings))
        return exemplar_documents(found, image_file, selector, limit=k)

    # ------------------------------------------------------------------ BaseRetriever
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if not isinstance(query, str):
            raise QueryError(f"the query must be a phrase (str), got {type(query).__name__}")
        return self._search(query, self.search_params(**kwargs))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return await run_in_executor(
            None,
            self._get_relevant_documents,
            query,
            run_manager=run_manager.get_sync(),
            **kwargs,
        )

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_embedding_model"] = self.retriever.store.manifest.encoder.name
        return params


def grounding_runnable(agent: Any) -> Any:
    """The agent as a langchain-core Runnable.

    Input: a mapping with ``image`` and ``phrase`` and optionally the other
    :class:`ricl.agent.GroundingQuery` fields (``k``, ``study_id``, ``patient_id``, ...).
    Output: the :class:`ricl.agent.GroundingResult`. ``batch`` uses the agent's
    ``ground_many`` (concurrent for the ``openai`` backend); ``ainvoke`` its async path.
    """
    from langchain_core.runnables import RunnableLambda

    def invoke(inputs: dict[str, Any]) -> Any:
        data = dict(inputs)
        return agent.ground(data.pop("image"), data.pop("phrase"), **data)

    async def ainvoke(inputs: dict[str, Any]) -> Any:
        data = dict(inputs)
        return await agent.aground(data.pop("image"), data.pop("phrase"), **data)

    return RunnableLambda(invoke, afunc=ainvoke, name="ricl-grounding-agent")
