"""An exemplar index directory written from synthetic vectors with ricl's own store
functions, for benchmarks that time retrieval and the agent without an encoder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def write_index_dir(
    out: Path,
    g_index: Any,
    g_info: dict[str, Any],
    config: Any,
    exemplars: Iterable[Any],
    *,
    n_findings: int,
    root: str,
    images_root: str | None,
    seed: int = 0,
) -> None:
    """Write ``out`` (which must exist): ``g_index`` as the global index (``g_info`` what
    ``make_faiss_index`` returned for it, ``config`` its IndexConfig), an empty region
    index, the ``exemplars`` and a manifest counting ``n_findings`` findings."""
    import ricl
    from ricl.retrieval.exemplars import write_exemplars
    from ricl.retrieval.manifest import Counts, DatasetInfo, EncoderInfo, IndexFileInfo, Manifest
    from ricl.retrieval.store import make_faiss_index, write_faiss, write_manifest

    n, d = g_index.ntotal, g_index.d
    r_index, r_info = make_faiss_index(np.zeros((0, d), np.float32), config, seed=seed)
    write_faiss(g_index, out / "global.faiss")
    write_faiss(r_index, out / "regions.faiss")
    np.save(out / "regions.npy", np.zeros((0, 3), np.int64), allow_pickle=False)
    write_exemplars(out / "exemplars.jsonl", exemplars)
    write_manifest(
        out,
        Manifest(
            ricl_version=ricl.__version__,
            built_at="bench",
            encoder=EncoderInfo(name="bench", fingerprint="bench", spec="bench"),
            embed_dim=d,
            counts=Counts(exemplars=n, regions=0, findings=n_findings, normal_skipped=0),
            dataset=DatasetInfo(
                name="bench",
                fingerprint="bench",
                split="train",
                root=root,
                images_root=images_root,
                include_normal=False,
            ),
            index=config,
            indexes={
                "global": IndexFileInfo(file="global.faiss", ntotal=n, **g_info),
                "regions": IndexFileInfo(file="regions.faiss", ntotal=0, **r_info),
            },
        ),
    )
