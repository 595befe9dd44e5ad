"""The on-disk exemplar index: FAISS native files, JSON lines, a manifest. Never pickle.

An index directory holds exactly::

    manifest.json      :class:`Manifest`: encoder name + fingerprint, embedding dim, metric,
                       counts, dataset name + fingerprint, index type + params, version, date
    global.faiss       one global image embedding per exemplar (row i = exemplar i)
    regions.faiss      one region embedding per gold box (row j = regions.npy row j)
    regions.npy        int64 ``(n_regions, 3)``: exemplar id, finding position, box position
    exemplars.jsonl    one :class:`~ricl.retrieval.exemplars.Exemplar` per line, in row order

Directories are published atomically (:func:`publish`: written elsewhere, then renamed),
and :func:`load_index` refuses anything without a valid manifest, so a killed build never
leaves an index that loads. The metric is inner product on L2-normalized embeddings.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from ricl.retrieval.errors import IndexFormatError, IndexMismatchError, IndexStoreError
from ricl.retrieval.indexes import make_faiss_index, set_search
from ricl.retrieval.manifest import (
    FORMAT,
    IndexConfig,
    IndexFileInfo,
    Manifest,
    validation_summary,
)

if TYPE_CHECKING:
    from ricl.encoders.base import Encoder
    from ricl.retrieval.exemplars import Exemplar

__all__ = [
    "FILES",
    "FLAT_MAX_VECTORS",
    "IndexConfig",
    "IndexStore",
    "Manifest",
    "default_index_config",
    "load_index",
    "make_faiss_index",
    "publish",
]

FILES = ("manifest.json", "global.faiss", "regions.faiss", "regions.npy", "exemplars.jsonl")


# ---------------------------------------------------------------------------- faiss
FLAT_MAX_VECTORS = 20_000
"""Largest collection :func:`default_index_config` searches exactly (``flat``). An exact
query reads all ``n * d * 4`` bytes at memory speed (~20 GB/s on the 2-core benchmark
machine): ~1 ms at 10k x 768, ~3 ms at 20k, 8 ms at 50k, 16 ms at 100k, 150 ms at 1M,
while HNSW answers in 0.3-0.6 ms from 50k to 1M at recall@10 >= 0.99 on clustered
embeddings (``bench/retrieval_scale.py``; ``eval/results/retrieval_scale.md``)."""


def default_index_config(n: int) -> IndexConfig:
    """The index :func:`ricl.retrieval.build.build_index` builds over ``n`` vectors when no
    config is given: exact (``flat``) up to :data:`FLAT_MAX_VECTORS`, ``hnsw`` (default
    parameters) above."""
    return IndexConfig(type="flat") if n <= FLAT_MAX_VECTORS else IndexConfig(type="hnsw")


_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run a FAISS call on one OpenMP thread, restoring the process setting after."""
    import faiss

    with _THREADS_LOCK:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(before)


# ---------------------------------------------------------------------------- directories
def check_replaceable(out: Path) -> None:
    """Raise IndexStoreError unless ``out`` is absent, empty or an index (has a manifest)."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file())
    ):
        raise IndexStoreError(
            f"{out}: exists and is not a ricl index; refusing to replace it. Choose another "
            "--out, or remove it yourself"
        )


def publish(staging: Path, out: Path) -> Path:
    """Rename the finished ``staging`` directory to ``out`` (same file system).

    An existing ``out`` is replaced only when it is an index (has ``manifest.json``) or
    empty; anything else is refused with IndexStoreError (:func:`check_replaceable`),
    never deleted.
    """
    check_replaceable(out)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
    return out


def write_faiss(index: Any, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


@dataclass
class IndexStore:
    """A loaded index directory. ``regions``: ``(n_regions, 3)`` int64 (see module docstring)."""

    path: Path
    manifest: Manifest
    exemplars: list[Exemplar]
    regions: np.ndarray
    global_index: Any
    region_index: Any
    _direct_maps: set[str] = field(default_factory=set)

    def check_encoder(self, encoder: Encoder) -> None:
        """Raise IndexMismatchError unless ``encoder`` is the one the index was built with."""
        built = self.manifest.encoder
        fp = encoder.fingerprint()
        if fp != built.fingerprint or int(encoder.embed_dim) != self.manifest.embed_dim:
            raise IndexMismatchError(
                f"{self.path}: index built with encoder {built.name!r} (fingerprint "
                f"{built.fingerprint}, dim {self.manifest.embed_dim}), but the encoder in use is "
                f"{encoder.name!r} (fingerprint {fp}, dim {encoder.embed_dim}). Query with the "
                f"index's encoder ({built.spec}) or rebuild the index with this one "
                "(`ricl index build --encoder ...`)"
            )

    def set_search(self, **overrides: int) -> None:
        """Override ``ef_search`` (hnsw, hnsw-sq) / ``nprobe`` (ivf, ivfpq) for both indexes
        (each index takes the key of its own type; the manifest's value otherwise).

        Raises ValueError for any other key."""
        unknown = set(overrides) - {"ef_search", "nprobe"}
        if unknown:
            raise ValueError(f"unknown search parameters {sorted(unknown)}; use ef_search, nprobe")
        set_search(self.global_index, self.manifest.indexes["global"], overrides)
        set_search(self.region_index, self.manifest.indexes["regions"], overrides)

    def search(self, which: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search of ``queries`` ``(nq, d)`` -> ``(scores, ids)``, both ``(nq, k)``;
        ids are -1 where fewer than k results exist."""
        index = self.global_index if which == "global" else self.region_index
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if index.ntotal == 0 or k < 1:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if len(q) == 1:  # one query: OpenMP fan-out costs more than it saves (retrieval_scale.md)
            with _one_thread():
                return index.search(q, min(k, index.ntotal))
        return index.search(q, min(k, index.ntotal))

    def vectors(self, which: str, ids: np.ndarray) -> np.ndarray:
        """Stored embeddings of rows ``ids`` -> ``(len(ids), d)`` float32 (for ivfpq and
        hnsw-sq: the decoded, approximate vectors)."""
        import faiss

        index = self.global_index if which == "global" else self.region_index
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.manifest.embed_dim), np.float32)
        if self.manifest.indexes[which].type in ("ivf", "ivfpq") and which not in self._direct_maps:
            faiss.extract_index_ivf(index).make_direct_map()
            self._direct_maps.add(which)
        return index.reconstruct_batch(ids)


def _read_manifest(path: Path) -> Manifest:
    file = path / "manifest.json"
    if not file.is_file():
        raise IndexStoreError(
            f"{path}: no manifest.json, so this is not a (complete) ricl index; an interrupted "
            f"build leaves none. Build it with `ricl index build --out {path} ...`"
        )
    try:
        manifest = Manifest.model_validate_json(file.read_text())
    except ValidationError as exc:
        raise IndexFormatError(
            f"{file}: not a valid index manifest ({validation_summary(exc)}); rebuild the index"
        ) from None
    if manifest.format != FORMAT:
        raise IndexFormatError(
            f"{file}: index format {manifest.format}, this ricl reads format {FORMAT}; rebuild it"
        )
    return manifest


def _read_faiss(path: Path, info: IndexFileInfo, dim: int) -> Any:
    import faiss

    file = path / info.file
    if not file.is_file():
        raise IndexFormatError(f"{file}: missing; the index is incomplete, rebuild it")
    try:
        index = faiss.read_index(str(file))
    except RuntimeError as exc:
        raise IndexFormatError(f"{file}: FAISS cannot read it ({exc}); rebuild the index") from None
    if index.ntotal != info.ntotal or index.d != dim:
        raise IndexFormatError(
            f"{file}: holds {index.ntotal} vectors of dim {index.d}, the manifest says "
            f"{info.ntotal} of dim {dim}; rebuild the index"
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexFormatError(f"{file}: metric is not inner product; rebuild the index")
    return index


def load_index(
    path: str | Path, encoder: Encoder | None = None, search: dict[str, int] | None = None
) -> IndexStore:
    """Load and validate an index directory; with ``encoder``, refuse one built by another.

    ``search``: ``{"ef_search": ..., "nprobe": ...}`` overriding the manifest's values.

    Raises:
        IndexStoreError: not an index directory (no manifest: e.g. an interrupted build).
        IndexFormatError: a file is missing or disagrees with the manifest.
        IndexMismatchError: ``encoder`` is not the one the index was built with.
    """
    from ricl.retrieval.exemplars import read_exemplars

    path = Path(path)
    manifest = _read_manifest(path)
    exemplars = (
        read_exemplars(path / "exemplars.jsonl") if (path / "exemplars.jsonl").is_file() else None
    )
    if exemplars is None or len(exemplars) != manifest.counts.exemplars:
        got = "no file" if exemplars is None else f"{len(exemplars)} records"
        raise IndexFormatError(
            f"{path / 'exemplars.jsonl'}: {got}, the manifest says {manifest.counts.exemplars}; "
            "rebuild the index"
        )
    try:
        regions = np.load(path / "regions.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path / 'regions.npy'}: unreadable ({exc}); rebuild the index")
    if regions.shape != (manifest.counts.regions, 3) or regions.dtype != np.int64:
        raise IndexFormatError(
            f"{path / 'regions.npy'}: shape {regions.shape} {regions.dtype}, expected "
            f"({manifest.counts.regions}, 3) int64; rebuild the index"
        )
    dim = manifest.embed_dim
    store = IndexStore(
        path,
        manifest,
        exemplars,
        regions,
        _read_faiss(path, manifest.indexes["global"], dim),
        _read_faiss(path, manifest.indexes["regions"], dim),
    )
    store.set_search(**(search or {}))
    if encoder is not None:
        store.check_encoder(encoder)
    return store


def write_manifest(path: Path, manifest: Manifest) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
