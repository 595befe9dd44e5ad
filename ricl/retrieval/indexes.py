"""The FAISS index types of an exemplar index: building them and their search-time knobs.

Every type searches by inner product over L2-normalized float32 embeddings:

* ``flat``: exact (``IndexFlatIP``); ``n * d * 4`` bytes.
* ``hnsw``: graph over the float32 vectors (``IndexHNSWFlat``): ``M``, ``ef_construction``,
  ``ef_search``; ``n * (4 d + ~8 M)`` bytes.
* ``ivf``: inverted lists over the float32 vectors (``IndexIVFFlat``): ``nlist``, ``nprobe``;
  k-means trained on a sample of up to ``256 * nlist`` of the vectors being indexed.
* ``ivfpq``: inverted lists of product-quantized codes (``IndexIVFPQ``, residuals encoded):
  ``nlist``, ``m`` sub-quantizers of ``nbits`` bits, ``nprobe``; ``n * (m * nbits / 8 + 8)``
  bytes plus the ``nlist * d`` float32 centroids. Trained on a sample of
  ``max(IVFPQ_TRAIN_PER_LIST * nlist, IVFPQ_MIN_TRAIN)`` vectors (all when fewer).
  Rules: ``m`` must divide ``d`` (default: :func:`default_pq_m`); at least ``2**nbits``
  vectors are needed to train the sub-quantizers; ``nlist`` is capped at ``n // 39`` (at
  least 1; 39 is FAISS's minimum of training points per centroid).
* ``hnsw-sq``: graph over 8-bit scalar-quantized vectors (``IndexHNSWSQ``, ``QT_8bit``: one
  byte per dimension, per-dimension min/max trained on a sample of up to
  ``SQ_TRAIN_POINTS`` vectors): ``M``, ``ef_construction``, ``ef_search``;
  ``n * (d + ~8 M)`` bytes.

``ivf`` / ``ivfpq`` / ``hnsw-sq`` over zero vectors fall back to ``flat`` (nothing to train).
Vectors may be given as one array or as a sequence of chunks (e.g. memory-mapped shards):
training samples are drawn by global row, so the result does not depend on the chunking,
and the vectors are added in order (row i of the concatenation = id i) in blocks of
:data:`ADD_ROWS` rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ricl.retrieval.errors import IndexConfigError
from ricl.retrieval.manifest import IndexConfig, IndexFileInfo

__all__ = [
    "ADD_ROWS",
    "IVFPQ_MIN_TRAIN",
    "IVFPQ_TRAIN_PER_LIST",
    "SQ_TRAIN_POINTS",
    "default_pq_m",
    "make_faiss_index",
    "set_search",
]

log = logging.getLogger(__name__)

IVFPQ_TRAIN_PER_LIST = 64
"""ivfpq: training vectors per inverted list (k-means cost grows with sample x nlist)."""
IVFPQ_MIN_TRAIN = 65_536
"""ivfpq: at least this many training vectors (the sub-quantizers' k-means wants ~256 per
centroid, 2**8 centroids each), or all of them when there are fewer."""
SQ_TRAIN_POINTS = 131_072
"""hnsw-sq: vectors sampled to train the 8-bit quantizer's per-dimension ranges."""
ADD_ROWS = 262_144
"""Rows per ``add`` call, whatever the chunking of the input (bounds the float32 copy of
memory-mapped chunks; HNSW inserts each block level by level)."""
MIN_POINTS_PER_LIST = 39

Vectors = np.ndarray | Sequence[np.ndarray]


def default_pq_m(d: int) -> int:
    """ivfpq's default number of sub-quantizers for dim ``d``: the largest divisor of ``d``
    that is at most ``d // 4`` (4+ dimensions per 8-bit code: 16x smaller than float32),
    e.g. 16 for 64, 192 for 768, 288 for 1152; 1 when ``d < 4``."""
    return max([m for m in range(1, max(1, d // 4) + 1) if d % m == 0])


def _as_chunks(vectors: Vectors) -> tuple[list[np.ndarray], int, int]:
    """``(chunks, n, d)``; every chunk 2-D float32-convertible with the same ``d``."""
    chunks = [vectors] if isinstance(vectors, np.ndarray) else list(vectors)
    if not chunks:
        raise ValueError("make_faiss_index needs at least one (possibly empty) (n, d) array")
    dims = {c.shape[1] if c.ndim == 2 else -1 for c in chunks}
    if len(dims) != 1 or -1 in dims:
        raise ValueError(f"vectors must be (n, d) arrays of one d, got {[c.shape for c in chunks]}")
    return chunks, sum(len(c) for c in chunks), dims.pop()


def _gather(chunks: list[np.ndarray], rows: np.ndarray, d: int) -> np.ndarray:
    """Rows ``rows`` (sorted global indices) of the concatenation of ``chunks``."""
    out = np.empty((len(rows), d), np.float32)
    start = 0
    for c in chunks:
        lo, hi = np.searchsorted(rows, [start, start + len(c)])
        out[lo:hi] = c[rows[lo:hi] - start]
        start += len(c)
    return out


def _sample(chunks: list[np.ndarray], n: int, d: int, size: int, seed: int) -> np.ndarray:
    """``min(size, n)`` rows drawn without replacement (seeded; all rows when ``n <= size``)."""
    if n <= size:
        if len(chunks) == 1:
            return np.ascontiguousarray(chunks[0], dtype=np.float32)
        return _gather(chunks, np.arange(n), d)
    rng = np.random.default_rng(seed)
    return _gather(chunks, np.sort(rng.choice(n, size, replace=False)), d)


def _blocks(chunks: list[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """The concatenation of ``chunks`` as contiguous float32 blocks of ``rows`` rows (the
    last one shorter): small chunks are joined, large ones split, order kept."""
    pending: list[np.ndarray] = []
    have = 0
    for c in chunks:
        start = 0
        while start < len(c):
            take = min(rows - have, len(c) - start)
            pending.append(c[start : start + take])
            have += take
            start += take
            if have == rows:
                yield np.ascontiguousarray(np.concatenate(pending), dtype=np.float32)
                pending, have = [], 0
    if have:
        yield np.ascontiguousarray(np.concatenate(pending), dtype=np.float32)


def _add(index: Any, chunks: list[np.ndarray]) -> None:
    """Add every row in order, :data:`ADD_ROWS` at a time (for an HNSW graph: a collection
    of up to ADD_ROWS vectors is inserted in one call, exactly as one array would be)."""
    for block in _blocks(chunks, ADD_ROWS):
        index.add(block)


def _ivf_nlist(n: int, nlist: int | None, cap: int) -> int:
    auto = max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_LIST))
    return max(1, min(nlist or auto, cap))


def _ivfpq(
    chunks: list[np.ndarray], n: int, d: int, params: dict[str, Any], seed: int
) -> tuple[Any, dict[str, Any]]:
    import faiss

    m, nbits = params["m"] or default_pq_m(d), params["nbits"]
    if d % m:
        divisors = [k for k in range(1, d + 1) if d % k == 0 and k <= d // 2][-4:]
        raise IndexConfigError(
            f"ivfpq: m={m} does not divide the embedding dim {d}; set --param m= to a divisor "
            f"of {d} (e.g. {', '.join(map(str, divisors))})"
        )
    if n < 2**nbits:
        raise IndexConfigError(
            f"ivfpq: {n} vectors cannot train {2**nbits}-centroid sub-quantizers (nbits={nbits} "
            f"needs at least {2**nbits}); use --param nbits={max(1, int(math.log2(n)))} or "
            "fewer bits, or --index-type flat / hnsw for a collection this small"
        )
    cap = max(1, n // MIN_POINTS_PER_LIST)
    nlist = _ivf_nlist(n, params["nlist"], cap)
    if params["nlist"] and params["nlist"] > nlist:
        log.warning(
            "ivfpq: nlist %d capped to %d (n // 39 for %d vectors)", params["nlist"], nlist, n
        )
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    size = max(IVFPQ_TRAIN_PER_LIST * nlist, IVFPQ_MIN_TRAIN)
    index.train(_sample(chunks, n, d, size, seed))
    index.nprobe = params["nprobe"]
    _add(index, chunks)
    return index, {**params, "nlist": nlist, "m": m}


def make_faiss_index(
    vectors: Vectors, config: IndexConfig, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """Build and fill an inner-product index over ``vectors``: one ``(n, d)`` float32 array
    or a sequence of ``(n_i, d)`` chunks (row ids follow the concatenation).

    Returns ``(index, {"type": ..., "params": ...})`` with the type and parameters actually
    used (fallbacks and resolved ``nlist`` / ``m``; see the module docstring).

    Raises:
        IndexConfigError: ivfpq parameters that do not fit the data (``m`` not dividing
            ``d``, fewer than ``2**nbits`` vectors); the message says what to change.
        ValueError: no arrays, or arrays of different dims.
    """
    import faiss

    chunks, n, d = _as_chunks(vectors)
    kind, params = config.type, config.params()
    if kind in ("ivf", "ivfpq", "hnsw-sq") and n == 0:
        kind, params = "flat", {}
    if kind == "ivfpq":
        index, params = _ivfpq(chunks, n, d, params, seed)
        return index, {"type": kind, "params": params}
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind in ("hnsw", "hnsw-sq"):
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, params["M"], faiss.METRIC_INNER_PRODUCT)
        else:
            qt = faiss.ScalarQuantizer.QT_8bit
            index = faiss.IndexHNSWSQ(d, qt, params["M"], faiss.METRIC_INNER_PRODUCT)
            index.train(_sample(chunks, n, d, SQ_TRAIN_POINTS, seed))
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    else:  # ivf
        params = {**params, "nlist": _ivf_nlist(n, params["nlist"], n)}
        index = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(d), d, params["nlist"], faiss.METRIC_INNER_PRODUCT
        )
        index.train(_sample(chunks, n, d, 256 * params["nlist"], seed))
        index.nprobe = params["nprobe"]
    _add(index, chunks)
    return index, {"type": kind, "params": params}


def set_search(index: Any, info: IndexFileInfo, overrides: dict[str, int]) -> None:
    """Apply the search-time parameter of ``index``'s type: ``ef_search`` (hnsw, hnsw-sq)
    or ``nprobe`` (ivf, ivfpq), from ``overrides`` or else the manifest's ``info``. Other
    keys are ignored (they belong to the other type); flat has none."""
    if info.type in ("hnsw", "hnsw-sq"):
        index.hnsw.efSearch = int(overrides.get("ef_search", info.params["ef_search"]))
    elif info.type in ("ivf", "ivfpq"):
        index.nprobe = int(overrides.get("nprobe", info.params["nprobe"]))
