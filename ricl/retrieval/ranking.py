"""Exact top-k by inner product over L2-normalized embeddings (numpy, chunked).

The one ranking both the retriever's re-rankers and retrieval evaluation use: exact
brute force in float64 over chunks of ``chunk_size`` queries (memory
``O(chunk_size * n_gallery)``), ties broken by the lower gallery index, so results do not
depend on the chunk size.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import numpy as np

__all__ = ["DEFAULT_CHUNK", "topk_indices"]

DEFAULT_CHUNK = 512


def _check(name: str, emb: np.ndarray) -> np.ndarray:
    arr = np.asarray(emb)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite values")
    return arr.astype(np.float64, copy=False)


def topk_indices(
    query_emb: np.ndarray,
    gallery_emb: np.ndarray,
    k: int,
    exclude: Sequence[AbstractSet[int]] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """Top-k gallery indices per query by inner product -> ``(nq, k)`` int64.

    ``query_emb`` ``(nq, d)``, ``gallery_emb`` ``(ng, d)``. Ties go to the lower gallery
    index. Rows are padded with -1 when fewer than k non-excluded items exist.
    """
    q, g = _check("query_emb", query_emb), _check("gallery_emb", gallery_emb)
    if q.shape[1] != g.shape[1] and len(q) and len(g):
        raise ValueError(f"dimension mismatch: query d={q.shape[1]}, gallery d={g.shape[1]}")
    if exclude is not None and len(exclude) != len(q):
        raise ValueError(f"exclude has {len(exclude)} entries for {len(q)} queries")
    if k < 1 or chunk_size < 1:
        raise ValueError(f"k and chunk_size must be >= 1, got k={k}, chunk_size={chunk_size}")
    nq, ng = len(q), len(g)
    out = np.full((nq, k), -1, dtype=np.int64)
    kk = min(k, ng)
    if kk == 0 or nq == 0:
        return out
    for start in range(0, nq, chunk_size):
        stop = min(start + chunk_size, nq)
        sim = q[start:stop] @ g.T  # (c, ng)
        valid = np.ones_like(sim, dtype=bool)
        if exclude is not None:
            for r, ex in enumerate(exclude[start:stop]):
                idx = [i for i in ex if 0 <= i < ng]
                valid[r, idx] = False
        sim[~valid] = -np.inf
        rows = np.arange(stop - start)[:, None]
        # k-th largest value per row; take everything above it plus the lowest-index ties.
        thr = -np.partition(-sim, kk - 1, axis=1)[:, kk - 1 : kk]
        above = sim > thr
        ties = sim == thr
        need = kk - above.sum(axis=1, keepdims=True)
        chosen = above | (ties & (np.cumsum(ties, axis=1) <= need))
        cand = np.nonzero(chosen)[1].reshape(stop - start, kk)  # ascending index per row
        order = np.argsort(-sim[rows, cand], axis=1, kind="stable")
        top = cand[rows, order]
        top[~valid[rows, top]] = -1
        out[start:stop, :kk] = top
    return out
