"""The retriever: k annotated exemplars for a query, with leakage guards on by default.

A query (:class:`Query`) is an image (path, PIL image, uint8 array, LoadedImage), a
precomputed embedding, an image + region box, or a phrase, optionally with the ids of the
query's study and patient and its gold labels. Selectors (by name, see
:mod:`ricl.retrieval.selectors`):

* ``fine-grained``: global image embedding -> global index (default);
* ``location``: image + box -> region embedding -> region index (one row per gold box);
* ``text``: phrase -> text embedding -> global image index (the shared space);
* ``random``: seeded, uniform;
* ``label-oracle``: exemplars sharing a gold label of the query (ablations only).

Leakage guard (on unless the Retriever is built with ``allow_same_patient=True``, which
:meth:`Retriever.settings` records): nothing of the query's own study or of any study of
the same patient is returned. Results are de-duplicated by image; searches over-fetch
and filter, so k exemplars come back after exclusions whenever the index holds k.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ricl.retrieval.errors import IndexStoreError, QueryError
from ricl.retrieval.store import load_index
from ricl.types import Box

if TYPE_CHECKING:
    from ricl.encoders.base import Encoder, ImageInput
    from ricl.retrieval.exemplars import Exemplar

__all__ = ["Query", "Retriever"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Query:
    """What to retrieve for. Only the fields the selector needs must be set.

    ``embedding``: a precomputed ``(d,)`` vector used as-is by similarity selectors (an
    image embedding for ``fine-grained``, a region embedding for ``location``, a text
    embedding for ``text``); it is L2-normalized before searching. ``box``: canonical
    (normalized, original image). ``study_id`` / ``patient_id``: for the leakage guard.
    ``labels``: the query's gold labels (``label-oracle`` only).
    """

    image: ImageInput | None = None
    embedding: np.ndarray | None = None
    box: Box | None = None
    phrase: str | None = None
    study_id: str | None = None
    patient_id: str | None = None
    labels: tuple[str, ...] = field(default=())

    @classmethod
    def coerce(cls, query: Any) -> Query:
        """A bare value -> Query: ``str`` is a PHRASE; ``Path``, PIL images, LoadedImage and
        uint8 arrays are images; a float array of shape ``(d,)`` or ``(1, d)`` is an embedding.
        To query an image by a string path, pass ``Path(...)`` or ``Query(image=...)``."""
        if isinstance(query, Query):
            return query
        if isinstance(query, str):
            return cls(phrase=query)
        if isinstance(query, np.ndarray) and query.dtype != np.uint8:
            if query.ndim == 1 or (query.ndim == 2 and query.shape[0] == 1):
                return cls(embedding=query.reshape(-1))
            raise QueryError(f"a float array query must be one embedding (d,), got {query.shape}")
        return cls(image=query)

    def key(self) -> str:
        """A stable string naming the query (for seeding per-query random choices): its ids,
        the image's file NAME (not its path, so the same release drawn from another folder
        or machine gets the same draws) and the phrase."""
        image = Path(self.image).name if isinstance(self.image, (str, Path)) else ""
        return json.dumps([self.study_id, self.patient_id, image, self.phrase])


def _as_box(box: Box | Sequence[float] | None) -> Box | None:
    if box is None or isinstance(box, Box):
        return box
    return Box.from_list(list(box))


class Retriever:
    """Exemplars from an index directory.

    Args:
        index_dir: an index built by :func:`ricl.retrieval.build.build_index`.
        encoder: the encoder to embed queries with, or a spec (``ricl.encoders.load``), or
            None to load the spec recorded in the manifest when a query needs embedding.
            A loaded encoder whose fingerprint differs from the index's is refused.
        allow_same_patient: turn the leakage guard OFF (own study and same-patient studies
            may be returned). Recorded in :meth:`settings`; for sanity checks only.
        seed: default seed of the ``random`` selector (and ``label-oracle`` tie breaks).
        search: ``{"ef_search": ..., "nprobe": ...}`` overriding the manifest's values.

    Raises:
        IndexStoreError / IndexFormatError / IndexMismatchError: see :func:`load_index`.
    """

    def __init__(
        self,
        index_dir: str | Path,
        encoder: Encoder | str | None = None,
        *,
        allow_same_patient: bool = False,
        seed: int = 0,
        search: dict[str, int] | None = None,
    ) -> None:
        given = None if encoder is None or isinstance(encoder, (str, Path)) else encoder
        self.store = load_index(index_dir, given, search)
        self._encoder: Encoder | None = given
        self._encoder_lock = threading.Lock()
        self._encoder_spec = str(encoder) if isinstance(encoder, (str, Path)) else None
        self.allow_same_patient = bool(allow_same_patient)
        self.seed = int(seed)
        self.search_overrides = dict(search or {})
        self.n_queries = 0
        self.n_unguarded = 0  # queries served with the guard on but no study/patient id
        self._by_study: dict[str, list[int]] = {}
        self._by_patient: dict[str, list[int]] = {}
        self.by_label: dict[str, list[int]] = {}  # label -> exemplar ids, ascending
        for e in self.store.exemplars:
            self._by_study.setdefault(e.study_id, []).append(e.exemplar_id)
            self._by_patient.setdefault(e.patient_id, []).append(e.exemplar_id)
            for label in sorted(e.labels):
                self.by_label.setdefault(label, []).append(e.exemplar_id)
        n = len(self.store.exemplars)
        self._regions_of = np.bincount(self.store.regions[:, 0], minlength=n)  # boxes per exemplar
        if self.allow_same_patient:
            log.warning("%s: leakage guard OFF (allow_same_patient=True)", index_dir)

    # ------------------------------------------------------------------ properties
    @property
    def exemplars(self) -> list[Exemplar]:
        return self.store.exemplars

    @property
    def encoder(self) -> Encoder:
        """The query encoder, loaded on first use from the given or recorded spec.

        Raises IndexStoreError when the spec cannot be loaded, IndexMismatchError when the
        loaded encoder is not the index's."""
        with self._encoder_lock:  # concurrent queries (eval runs) load it once
            return self._load_encoder()

    def _load_encoder(self) -> Encoder:
        if self._encoder is None:
            from ricl.encoders import load

            spec = self._encoder_spec or self.store.manifest.encoder.spec
            try:
                encoder = load(spec)
            except Exception as exc:  # any loader failure -> one clear message
                raise IndexStoreError(
                    f"{self.store.path}: cannot load the query encoder {spec!r} ({exc}); pass the "
                    "encoder the index was built with (Retriever(..., encoder=...) / --encoder)"
                ) from exc
            self.store.check_encoder(encoder)
            self._encoder = encoder
        return self._encoder

    def settings(self) -> dict[str, Any]:
        """What an evaluation should record about this retriever."""
        m = self.store.manifest
        return {
            "index": str(self.store.path),
            "encoder": m.encoder.model_dump(),
            "dataset": m.dataset.model_dump(),
            "index_type": m.indexes["global"].type,
            "search": self.search_overrides,
            "allow_same_patient": self.allow_same_patient,
            "seed": self.seed,
            "n_queries": self.n_queries,
            "n_unguarded": self.n_unguarded,
        }

    def image_file(self, exemplar: Exemplar, images_root: str | Path | None = None) -> Path:
        """Absolute path of an exemplar's image under ``images_root`` (default: the images
        folder recorded at build time). Raises DatasetFormatError for a path escaping it."""
        from ricl.data.dataset import safe_join

        root = images_root or self.store.manifest.dataset.images_root
        if root is None:
            raise QueryError(
                f"{self.store.path}: no images folder was recorded at build time; pass images_root"
            )
        return safe_join(Path(root), exemplar.image_path, f"exemplar {exemplar.study_id}")

    # ------------------------------------------------------------------ pieces
    def excluded(self, query: Query) -> set[int]:
        """Exemplar ids the leakage guard removes for ``query`` (empty when it is off)."""
        if self.allow_same_patient:
            return set()
        out: set[int] = set()
        if query.study_id is not None:
            out.update(self._by_study.get(query.study_id, ()))
        if query.patient_id is not None:
            out.update(self._by_patient.get(query.patient_id, ()))
        return out

    def embed(self, query: Query, kind: str) -> np.ndarray:
        """The ``(d,)`` normalized vector searched for ``query``; ``kind`` is ``image``,
        ``region`` or ``text``. Raises QueryError when the query lacks what ``kind`` needs."""
        d = self.store.manifest.embed_dim
        if query.embedding is not None:
            vec = np.asarray(query.embedding, dtype=np.float32).reshape(-1)
            norm = float(np.linalg.norm(vec)) if np.isfinite(vec).all() else 0.0
            if vec.shape != (d,) or norm == 0.0:
                raise QueryError(
                    f"query embedding must be a finite non-zero vector of dim {d} (the index's), "
                    f"got shape {vec.shape}"
                )
            return vec / norm
        if kind == "text":
            if not query.phrase or not query.phrase.strip():
                raise QueryError("the 'text' selector needs a phrase: Query(phrase=...)")
            vec = self.encoder.encode_texts([query.phrase])
        elif query.image is None:
            got = f"a phrase {query.phrase!r}" if query.phrase else "nothing to embed"
            raise QueryError(
                f"the {kind} query needs an image (or a precomputed embedding), got {got}; pass "
                "Path(file) or Query(image=...), or use selector='text' for a phrase"
            )
        elif kind == "region":
            if query.box is None:
                raise QueryError("the 'location' selector needs a box: Query(image=..., box=...)")
            vec = self.encoder.encode_regions([query.image], [[query.box]])
        else:
            vec = self.encoder.encode_images([query.image]).embeddings
        return np.asarray(vec, dtype=np.float32).reshape(-1)

    def search(
        self, vec: np.ndarray, k: int, excluded: set[int], which: str = "global"
    ) -> list[Exemplar]:
        """Top-k exemplars by inner product over the ``global`` or ``regions`` index, after
        the exclusions and de-duplication by image (best-scoring region per image).

        Over-fetches (k + excluded rows, then doubling) until k results remain or the whole
        index has been searched. Approximate indexes may still return fewer than k.
        """
        store = self.store
        ntotal = (store.global_index if which == "global" else store.region_index).ntotal
        owner = None if which == "global" else store.regions[:, 0]
        n_ex = len(excluded) if owner is None else int(self._regions_of[list(excluded)].sum())
        fetch = min(ntotal, (k if owner is None else 4 * k) + n_ex)
        while True:
            scores, ids = store.search(which, vec[None, :], fetch)
            out: list[Exemplar] = []
            seen: set[str] = set()
            for s, i in zip(scores[0], ids[0], strict=True):
                if i < 0:
                    continue
                eid = int(i) if owner is None else int(owner[i])
                e = store.exemplars[eid]
                if eid in excluded or e.image_id in seen:
                    continue
                seen.add(e.image_id)
                match = (
                    None if owner is None else (int(store.regions[i, 1]), int(store.regions[i, 2]))
                )
                out.append(e.with_score(float(s), match))
                if len(out) == k:
                    return out
            if fetch >= ntotal:
                return out
            fetch = min(ntotal, fetch * 2)

    def rng(self, query: Query, seed: int | None = None) -> np.random.Generator:
        """A generator seeded by ``seed`` (default: the retriever's) and the query's key."""
        base = self.seed if seed is None else seed
        h = hashlib.sha256(f"{base}|{query.key()}".encode()).digest()
        return np.random.default_rng(int.from_bytes(h[:8], "little"))

    # ------------------------------------------------------------------ API
    def retrieve(
        self,
        query: Query | ImageInput | np.ndarray | str,
        k: int = 5,
        selector: str = "fine-grained",
        *,
        box: Box | Sequence[float] | None = None,
        phrase: str | None = None,
        study_id: str | None = None,
        patient_id: str | None = None,
        labels: Iterable[str] | None = None,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> list[Exemplar]:
        """Up to ``k`` exemplars for ``query``, best first, each with its score.

        ``query`` is a :class:`Query` or a bare value (see :meth:`Query.coerce`); the keyword
        arguments fill in (override) the matching Query fields. Fewer than k come back only
        when the index (after the guard, or the oracle's label filter) holds fewer.
        ``options``: the selector's options (``fused``: its weights).

        Raises:
            QueryError: the query lacks what the selector needs (the message says what), or
                ``options`` the selector does not take.
            UnknownNameError: unknown selector (close names suggested).
        """
        from ricl.retrieval.selectors import SELECTORS, validate_selector_options

        if k < 1:
            raise QueryError(f"k must be >= 1, got {k}")
        q = Query.coerce(query)
        changes: dict[str, Any] = {
            "box": _as_box(box),
            "phrase": phrase,
            "study_id": study_id,
            "patient_id": patient_id,
            "labels": tuple(labels) if labels is not None else None,
        }
        q = replace(q, **{n: v for n, v in changes.items() if v is not None})
        if q.box is not None and not isinstance(q.box, Box):
            q = replace(q, box=_as_box(q.box))
        select = SELECTORS.get(selector)
        try:
            extra = {"options": validate_selector_options(selector, options)} if options else {}
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        self.n_queries += 1
        if not self.allow_same_patient and q.study_id is None and q.patient_id is None:
            self.n_unguarded += 1
        return select(self, q, k, self.excluded(q), seed, **extra)
