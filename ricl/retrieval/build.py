"""Build an exemplar index: embed every exemplar (in batches, resumable), then publish.

Work happens in ``<out parent>/.<out name>.building/``: each batch's embeddings are saved
there as two ``.npy`` shards (global ``(b, d)``, regions ``(boxes in batch, d)``), each
written to a temporary name and renamed, regions last, so a batch counts as done only when
both exist. A rerun after an interruption (crash, Ctrl-C, kill) reuses the finished shards
and embeds only the rest, provided the plan is unchanged (same encoder fingerprint,
dataset fingerprint, split, exemplar set and batch size; otherwise the shards are
discarded). Only when every batch is done are the FAISS indexes built, the files written
to a staging folder and that folder renamed to ``out_dir``; the work folder is then removed.
Two builds must not write to the same ``out_dir`` at the same time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ricl.data.dataset import canonical_split
from ricl.encoders.base import fingerprint_files
from ricl.errors import RiclError
from ricl.retrieval.exemplars import Exemplar, exemplar_studies, region_table, write_exemplars
from ricl.retrieval.manifest import (
    Counts,
    DatasetInfo,
    EncoderInfo,
    IndexConfig,
    IndexFileInfo,
    Manifest,
)
from ricl.retrieval.store import (
    check_replaceable,
    default_index_config,
    make_faiss_index,
    publish,
    write_faiss,
    write_manifest,
)

if TYPE_CHECKING:
    from ricl.data.dataset import GroundingDataset
    from ricl.encoders.base import Encoder
    from ricl.types import Study

__all__ = [
    "BuildError",
    "ExemplarSet",
    "build_index",
    "dataset_fingerprint",
    "embed_exemplars",
    "exemplar_set",
    "write_index",
]

log = logging.getLogger(__name__)

ANNOTATION_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".tsv", ".zip", ".parquet"})


class BuildError(RiclError):
    """The index cannot be built (no exemplars, an encoder output of the wrong shape...)."""


def dataset_fingerprint(dataset: GroundingDataset) -> str:
    """sha256 (16 hex) of the release's annotation files (the top-level JSON/CSV/ZIP/...
    files of ``dataset.root``, or ``root`` itself when it is a file). Images are not hashed."""
    root = Path(dataset.root)
    if root.is_file():
        files = [root]
    else:
        files = sorted(
            p for p in root.iterdir() if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES
        )
    if not files:
        raise BuildError(f"{root}: no annotation files (JSON/CSV) to fingerprint")
    return fingerprint_files(files, extra=dataset.name)


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


def _checked(encoder: Encoder, arr: Any, n: int, what: str) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float32)
    d = int(encoder.embed_dim)
    if out.shape != (n, d):
        raise BuildError(
            f"encoder {encoder.name!r} returned {what} of shape {out.shape}, expected {(n, d)}"
        )
    norms = np.linalg.norm(out, axis=1) if n else np.ones(0)
    if not np.isfinite(out).all() or np.abs(norms - 1.0).max(initial=0.0) > 1e-3:
        raise BuildError(
            f"encoder {encoder.name!r} returned {what} that are not finite unit vectors; the "
            "index uses inner product, so every embedding must be L2-normalized"
        )
    return out


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _prepare_work_dir(work: Path, plan: dict[str, Any]) -> Path:
    """The work folder for ``plan``; shards of another plan are discarded."""
    plan_file = work / "plan.json"
    if work.exists():
        try:
            same = json.loads(plan_file.read_text()) == plan
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(work)
    (work / "shards").mkdir(parents=True, exist_ok=True)
    if not plan_file.is_file():
        plan_file.write_text(json.dumps(plan, indent=2))
    return work / "shards"


def _embed_batches(
    encoder: Encoder,
    dataset: GroundingDataset,
    studies: list[Study],
    exemplars: list[Exemplar],
    starts: list[int],
    batch_size: int,
    shards: Path,
    progress: bool,
) -> None:
    """Embed every batch that has no finished shards yet (global first, regions last)."""
    with _progress(progress) as bar:
        task = bar.add_task(f"embedding {len(studies)} exemplars", total=len(studies))
        for b, start in enumerate(starts):
            batch = studies[start : start + batch_size]
            g_path, r_path = shards / f"{b:06d}-global.npy", shards / f"{b:06d}-regions.npy"
            if not (g_path.is_file() and r_path.is_file()):
                files = [dataset.image_file(s) for s in batch]
                g = encoder.encode_images(files, batch_size=batch_size).embeddings
                _save_npy(g_path, _checked(encoder, g, len(batch), "image embeddings"))
                boxed = [
                    (f, e.boxes)
                    for f, e in zip(files, exemplars[start : start + batch_size], strict=True)
                    if e.boxes
                ]
                n_boxes = sum(len(bs) for _, bs in boxed)
                r = (
                    encoder.encode_regions(
                        [f for f, _ in boxed], [list(bs) for _, bs in boxed], batch_size=batch_size
                    )
                    if boxed
                    else np.zeros((0, encoder.embed_dim), np.float32)
                )
                _save_npy(r_path, _checked(encoder, r, n_boxes, "region embeddings"))
            bar.advance(task, len(batch))


@dataclass(frozen=True)
class ExemplarSet:
    """The exemplars of one split, as every build (whole or sharded) numbers them.

    ``n_split``: studies in the split; ``digest``: sha256 (16 hex) of the records, so that
    shards of one plan can be told from shards of another."""

    split: str
    n_split: int
    studies: list[Study]
    exemplars: list[Exemplar]
    digest: str


def exemplar_set(dataset: GroundingDataset, split: str, include_normal: bool) -> ExemplarSet:
    """The exemplars of ``split`` (ids 0..n-1 in study order).

    Raises BuildError when the split has none."""
    split = canonical_split(split, dataset.name)
    split_studies = dataset.studies_of(split)
    studies = exemplar_studies(split_studies, include_normal)
    if not studies:
        raise BuildError(
            f"{dataset.name} ({dataset.root}): split {split!r} has no exemplar studies "
            f"({len(split_studies)} studies, none with a positive finding"
            f"{'' if include_normal else '; include_normal=True keeps normal ones'})"
        )
    exemplars = [Exemplar.from_study(i, s) for i, s in enumerate(studies)]
    records = "\n".join(json.dumps(e.to_dict(), sort_keys=True) for e in exemplars)
    digest = hashlib.sha256(records.encode()).hexdigest()[:16]
    return ExemplarSet(split, len(split_studies), studies, exemplars, digest)


def embed_exemplars(
    encoder: Encoder,
    dataset: GroundingDataset,
    studies: list[Study],
    exemplars: list[Exemplar],
    work: Path,
    plan: dict[str, Any],
    batch_size: int,
    progress: bool,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Embed ``studies`` (with their ``exemplars``) in batches of ``batch_size``, resumably
    in ``work`` (see the module docstring; a work folder of another ``plan`` is discarded).

    Returns the per-batch global ``(b, d)`` and region ``(boxes in batch, d)`` arrays, in
    order, memory-mapped read-only from the work folder (valid until it is removed).
    Raises BuildError on wrong encoder output; an interruption is logged and re-raised."""
    shards = _prepare_work_dir(work, plan)
    starts = list(range(0, len(studies), batch_size))
    try:
        _embed_batches(encoder, dataset, studies, exemplars, starts, batch_size, shards, progress)
    except BaseException:
        done = len(list(shards.glob("*-regions.npy")))
        log.warning(
            "index build interrupted: %d of %d batches are saved in %s; rerun the same build "
            "to resume", done, len(starts), work,
        )  # fmt: skip
        raise

    def load(b: int, kind: str) -> np.ndarray:
        return np.load(shards / f"{b:06d}-{kind}.npy", mmap_mode="r", allow_pickle=False)

    g = [load(b, "global") for b in range(len(starts))]
    r = [load(b, "regions") for b in range(len(starts))]
    n_boxes = sum(len(e.boxes) for e in exemplars)
    if sum(len(x) for x in r) != n_boxes:  # pragma: no cover - guarded per batch
        raise BuildError(f"{work}: {sum(len(x) for x in r)} region embeddings for {n_boxes} boxes")
    return g, r


def write_index(
    staging: Path,
    g: Sequence[np.ndarray],
    r: Sequence[np.ndarray],
    exemplars: list[Exemplar],
    *,
    encoder: EncoderInfo,
    embed_dim: int,
    dataset: DatasetInfo,
    normal_skipped: int,
    index: IndexConfig | None,
    seed: int,
) -> Manifest:
    """Write a complete index directory into the empty folder ``staging`` (manifest last).

    ``g``: chunks of global embeddings (row i = exemplar i), ``r``: chunks of region
    embeddings (one per gold box, in :func:`region_table` order). ``index`` None picks one
    per file by its size (:func:`ricl.retrieval.store.default_index_config`).
    Raises IndexConfigError from :func:`make_faiss_index` (parameters unfit for the data)."""
    import ricl

    regions = region_table(exemplars)
    n_g, n_r = sum(len(x) for x in g), sum(len(x) for x in r)
    if n_g != len(exemplars) or n_r != len(regions):  # pragma: no cover - callers check
        raise BuildError(
            f"{staging}: {n_g} / {n_r} embeddings for {len(exemplars)} / {len(regions)}"
        )
    g_config = index or default_index_config(n_g)
    g_index, g_info = make_faiss_index(g, g_config, seed)
    write_faiss(g_index, staging / "global.faiss")
    del g_index
    r_index, r_info = make_faiss_index(r, index or default_index_config(n_r), seed)
    write_faiss(r_index, staging / "regions.faiss")
    del r_index
    np.save(
        staging / "regions.npy",
        np.asarray(regions, dtype=np.int64).reshape(-1, 3),
        allow_pickle=False,
    )
    write_exemplars(staging / "exemplars.jsonl", exemplars)
    manifest = Manifest(
        ricl_version=ricl.__version__,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        encoder=encoder,
        embed_dim=embed_dim,
        counts=Counts(
            exemplars=len(exemplars),
            regions=len(regions),
            findings=sum(len(e.findings) for e in exemplars),
            normal_skipped=normal_skipped,
        ),
        dataset=dataset,
        index=g_config,
        indexes={
            "global": IndexFileInfo(file="global.faiss", ntotal=n_g, **g_info),
            "regions": IndexFileInfo(file="regions.faiss", ntotal=n_r, **r_info),
        },
    )
    write_manifest(staging, manifest)  # last: a folder without it never loads
    return manifest


def dataset_info(
    dataset: GroundingDataset, fingerprint: str, split: str, include_normal: bool
) -> DatasetInfo:
    """What a manifest records about the data set."""
    return DatasetInfo(
        name=dataset.name,
        fingerprint=fingerprint,
        split=split,
        root=str(dataset.root),
        images_root=str(dataset.images_root) if dataset.images_root else None,
        include_normal=include_normal,
    )


def build_index(
    encoder: Encoder,
    dataset: GroundingDataset,
    split: str,
    out_dir: str | Path,
    index: IndexConfig | None = None,
    *,
    batch_size: int = 32,
    include_normal: bool = False,
    encoder_spec: str | None = None,
    progress: bool = True,
    seed: int = 0,
) -> Manifest:
    """Embed the exemplars of ``split`` and publish an index directory at ``out_dir``.

    Exemplars are the split's studies with a positive finding (``include_normal`` adds the
    normal ones); see :mod:`ricl.retrieval.exemplars`. Global embeddings: ``(n, d)``; region
    embeddings: one per gold box, ``(n_boxes, d)``. ``encoder_spec`` (default
    ``encoder.name``) is recorded so that queries can load the same encoder.

    ``index``: the FAISS index of both files; None (default) picks one per file by its size
    (:func:`ricl.retrieval.store.default_index_config`: exact ``flat`` up to
    ``FLAT_MAX_VECTORS`` vectors, ``hnsw`` above). The manifest's ``index`` then records the
    global file's choice; ``indexes`` records what each file actually holds.

    Resumable: see the module docstring. Returns the written manifest. For builds split
    over processes, see :mod:`ricl.retrieval.shards`.

    Raises:
        BuildError: no exemplars, or the encoder returns wrong shapes / non-unit vectors.
        IndexConfigError: index parameters unfit for the data (e.g. ivfpq on too few).
        DatasetFormatError / ImageLoadError: from the data set (no images root, bad image).
        IndexStoreError: ``out_dir`` exists and is not an index (it is never deleted).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    check_replaceable(out)  # before any work
    ex = exemplar_set(dataset, split, include_normal)
    ds_fp = dataset_fingerprint(dataset)
    plan = {
        "encoder": encoder.fingerprint(),
        "embed_dim": int(encoder.embed_dim),
        "dataset": ds_fp,
        "split": ex.split,
        "include_normal": include_normal,
        "batch_size": batch_size,
        "exemplars": ex.digest,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.building"
    g, r = embed_exemplars(encoder, dataset, ex.studies, ex.exemplars, work, plan, batch_size, progress)  # fmt: skip
    staging = work / "index"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    manifest = write_index(
        staging, g, r, ex.exemplars,
        encoder=EncoderInfo(name=encoder.name, fingerprint=plan["encoder"], spec=encoder_spec or encoder.name),
        embed_dim=int(encoder.embed_dim),
        dataset=dataset_info(dataset, ds_fp, ex.split, include_normal),
        normal_skipped=ex.n_split - len(ex.studies), index=index, seed=seed,
    )  # fmt: skip
    del g, r  # memory maps of the work folder
    publish(staging, out)
    shutil.rmtree(work, ignore_errors=True)
    return manifest
