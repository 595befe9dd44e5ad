"""Index builds split over processes: each embeds one shard, then one merge builds the index.

Shard ``i`` of ``n`` (0-based, as torchrun's ``RANK`` of ``WORLD_SIZE``) holds a contiguous
slice of the exemplars, cut on the build's batch boundaries: with ``B = ceil(total /
batch_size)`` batches, shard ``i`` embeds batches ``[i * B // n, (i + 1) * B // n)``, so
every image is embedded in the same batch as in a one-process build with that batch size
(identical vectors), and slices differ by at most one batch (a shard may be empty when
``n > B``). Layout: ``build_shard(..., out_root)`` writes ``out_root/shard-IIIII-of-NNNNN/``::

    manifest.json            :class:`ShardManifest` (shard index/count, record range,
                             encoder, dataset, embedding dim, counts, requested index)
    global-embeddings.npy    float32 ``(stop - start, d)``: row j = exemplar ``start + j``
    region-embeddings.npy    float32 ``(boxes of the slice, d)``, in region-table order
    exemplars.jsonl          the slice's exemplar records (global ids ``start..stop-1``)

Only these fixed names are read (nothing named in a manifest), arrays are loaded with
``allow_pickle=False``, and the folder is written in ``out_root/.shard-....building`` and
renamed (resumable like :func:`ricl.retrieval.build.build_index`). :func:`merge_shards`
checks that the shards form one complete set, concatenates them in shard order (memory
mapped) and writes the same index directory (FAISS files + manifest) a one-process build
writes; with ``index=None`` it uses the index the shards were built for.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import ValidationError

from ricl.errors import RiclError
from ricl.retrieval.build import (
    dataset_fingerprint,
    dataset_info,
    embed_exemplars,
    exemplar_set,
    write_index,
)
from ricl.retrieval.exemplars import read_exemplars, write_exemplars
from ricl.retrieval.manifest import (
    Counts,
    DatasetInfo,
    EncoderInfo,
    IndexConfig,
    Manifest,
    _Strict,
    validation_summary,
)
from ricl.retrieval.store import check_replaceable, publish

if TYPE_CHECKING:
    from ricl.data.dataset import GroundingDataset
    from ricl.encoders.base import Encoder

__all__ = [
    "ShardError",
    "ShardManifest",
    "build_shard",
    "merge_shards",
    "parse_shard",
    "shard_dir_name",
    "shard_from_env",
    "shard_range",
]

SHARD_FORMAT = 1
GLOBAL, REGIONS, RECORDS = "global-embeddings.npy", "region-embeddings.npy", "exemplars.jsonl"
_NAME = re.compile(r"shard-(\d{5})-of-(\d{5})")


class ShardError(RiclError, ValueError):
    """A shard request or a shard set is invalid (bad ``I/N``, a missing, duplicate or
    foreign shard, a damaged file); the message names the directory and the fix."""


class ShardInfo(_Strict):
    """Shard ``index`` of ``count`` holds exemplars ``[start, stop)`` of ``total``."""

    index: int
    count: int
    start: int
    stop: int
    total: int


class ShardManifest(_Strict):
    kind: Literal["ricl-index-shard"] = "ricl-index-shard"
    format: int = SHARD_FORMAT
    ricl_version: str
    built_at: str
    shard: ShardInfo
    encoder: EncoderInfo
    embed_dim: int
    dataset: DatasetInfo
    exemplars_digest: str  # of the whole exemplar set: same plan in every shard
    batch_size: int
    counts: Counts  # of this slice (normal_skipped: of the whole split)
    index: IndexConfig | None  # what the build asked for (None: size-based default)


# ---------------------------------------------------------------------------- shard ids
def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``. Raises ShardError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ShardError(
            f"--shard {text!r}: expected I/N with 0 <= I < N (0-based, e.g. 0/4 ... 3/4)"
        )
    return int(m.group(1)), int(m.group(2))


def shard_from_env(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` from torchrun's environment when ``WORLD_SIZE > 1``, else
    None. Raises ShardError for unparsable values or a missing RANK."""
    env = dict(os.environ if env is None else env)
    world = env.get("WORLD_SIZE")
    if world is None:
        return None
    try:
        n = int(world)
        if n <= 1:
            return None
        return parse_shard(f"{int(env['RANK'])}/{n}")
    except (KeyError, ValueError):
        raise ShardError(
            f"WORLD_SIZE={world} but RANK={env.get('RANK')!r}: launch with torchrun (which "
            "sets both) or pass --shard I/N"
        ) from None


def shard_dir_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}"


def shard_range(index: int, count: int, total: int, batch_size: int) -> tuple[int, int]:
    """Exemplars ``[start, stop)`` of shard ``index`` of ``count`` (see module docstring)."""
    batches = -(-total // batch_size)
    first, last = index * batches // count, (index + 1) * batches // count
    return min(total, first * batch_size), min(total, last * batch_size)


# ---------------------------------------------------------------------------- build
def build_shard(
    encoder: Encoder,
    dataset: GroundingDataset,
    split: str,
    out_root: str | Path,
    shard: tuple[int, int],
    index: IndexConfig | None = None,
    *,
    batch_size: int = 32,
    include_normal: bool = False,
    encoder_spec: str | None = None,
    progress: bool = True,
) -> ShardManifest:
    """Embed shard ``shard = (i, n)`` of the exemplars of ``split`` and publish
    ``out_root/shard-IIIII-of-NNNNN/`` (module docstring). ``index`` is recorded for
    :func:`merge_shards`. Resumable: rerun the same command after an interruption.

    Raises:
        ShardError: bad ``shard``, or ``out_root`` is itself an index directory.
        BuildError / DatasetFormatError / ImageLoadError: as :func:`build_index`.
        IndexStoreError: the shard folder exists and is not a shard (never deleted).
    """
    import ricl

    i, n = parse_shard(f"{shard[0]}/{shard[1]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    root = Path(out_root)
    if (root / "manifest.json").is_file():
        raise ShardError(
            f"{root}: is an index directory; --shard writes shard-*-of-* folders into a "
            "shards folder: pass another --out (e.g. indexes/NAME-shards)"
        )
    out = root / shard_dir_name(i, n)
    check_replaceable(out)
    ex = exemplar_set(dataset, split, include_normal)
    start, stop = shard_range(i, n, len(ex.exemplars), batch_size)
    studies, exemplars = ex.studies[start:stop], ex.exemplars[start:stop]
    ds_fp = dataset_fingerprint(dataset)
    plan = {
        "encoder": encoder.fingerprint(), "embed_dim": int(encoder.embed_dim), "dataset": ds_fp,
        "split": ex.split, "include_normal": include_normal, "batch_size": batch_size,
        "exemplars": ex.digest, "shard": [i, n, start, stop],
    }  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".{out.name}.building"
    g, r = embed_exemplars(encoder, dataset, studies, exemplars, work, plan, batch_size, progress)
    staging = work / "shard"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    d = int(encoder.embed_dim)
    for name, parts in ((GLOBAL, g), (REGIONS, r)):
        arr = np.concatenate(parts) if parts else np.zeros((0, d), np.float32)
        np.save(staging / name, np.ascontiguousarray(arr, np.float32), allow_pickle=False)
    del g, r
    write_exemplars(staging / RECORDS, exemplars)
    manifest = ShardManifest(
        ricl_version=ricl.__version__,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        shard=ShardInfo(index=i, count=n, start=start, stop=stop, total=len(ex.exemplars)),
        encoder=EncoderInfo(
            name=encoder.name, fingerprint=plan["encoder"], spec=encoder_spec or encoder.name
        ),
        embed_dim=d,
        dataset=dataset_info(dataset, ds_fp, ex.split, include_normal),
        exemplars_digest=ex.digest,
        batch_size=batch_size,
        counts=Counts(
            exemplars=len(exemplars),
            regions=sum(len(e.boxes) for e in exemplars),
            findings=sum(len(e.findings) for e in exemplars),
            normal_skipped=ex.n_split - len(ex.studies),
        ),
        index=index,
    )
    (staging / "manifest.json").write_text(manifest.model_dump_json(indent=2))  # last
    publish(staging, out)
    shutil.rmtree(work, ignore_errors=True)
    return manifest


# ---------------------------------------------------------------------------- merge
def _read_shard_manifest(path: Path) -> ShardManifest:
    file = path / "manifest.json"
    hint = "pass the shard-IIIII-of-NNNNN folders that `ricl index build --shard I/N` writes"
    if not file.is_file():
        raise ShardError(f"{path}: no manifest.json, so not a (finished) index shard; {hint}")
    try:
        return ShardManifest.model_validate_json(file.read_text())
    except ValidationError as exc:
        raise ShardError(f"{file}: not an index shard manifest ({validation_summary(exc)}); {hint}") from None  # fmt: skip


def _expand(dirs: Sequence[str | Path]) -> list[Path]:
    """Each given directory, or the shard-* folders inside one that is not itself a shard."""
    out: list[Path] = []
    for d in map(Path, dirs):
        inner = sorted(p for p in d.glob("shard-*-of-*") if p.is_dir() and _NAME.fullmatch(p.name))
        out.extend(inner if inner and not (d / "manifest.json").is_file() else [d])
    return out


_SAME = (
    ("shard count", lambda m: m.shard.count, "--shard */N with the same N"),
    ("encoder fingerprint", lambda m: m.encoder.fingerprint, "the same --encoder"),
    ("embedding dim", lambda m: m.embed_dim, "the same --encoder"),
    ("dataset fingerprint", lambda m: m.dataset.fingerprint, "the same --dataset/--root"),
    ("split", lambda m: m.dataset.split, "the same --split"),
    ("include_normal", lambda m: m.dataset.include_normal, "the same --include-normal"),
    ("exemplar set", lambda m: m.exemplars_digest, "the same --dataset/--root/--split"),
    ("batch size", lambda m: m.batch_size, "the same --batch-size"),
)


def _validate_set(dirs: list[Path], given_index: bool) -> list[tuple[Path, ShardManifest]]:
    """The shards in shard order, once each and all of one build; else ShardError."""
    if not dirs:
        raise ShardError("no shard directories given; pass the shard-*-of-* folders to merge")
    shards = [(d, _read_shard_manifest(d)) for d in dirs]
    ref_dir, ref = shards[0]
    checks = list(_SAME)
    if not given_index:
        checks.append(("requested index", lambda m: m.index, "the same --index-type/--param, or pass --index-type to merge"))  # fmt: skip
    for d, m in shards[1:]:
        for what, get, fix in checks:
            if get(m) != get(ref):
                raise ShardError(
                    f"{d}: {what} {get(m)!r}, but {ref_dir} has {get(ref)!r}: not a shard of the "
                    f"same build; rebuild it with {fix} as the others"
                )
    by_index: dict[int, tuple[Path, ShardManifest]] = {}
    for d, m in shards:
        if m.shard.index in by_index:
            other = by_index[m.shard.index][0]
            raise ShardError(
                f"{d}: shard {m.shard.index}/{m.shard.count} is given twice (also {other}); "
                "pass each shard once"
            )
        by_index[m.shard.index] = (d, m)
    n = ref.shard.count
    for i in range(n):
        if i not in by_index:
            raise ShardError(
                f"shard {i}/{n} is missing (expected {ref_dir.parent / shard_dir_name(i, n)}); "
                f"build it with `ricl index build ... --shard {i}/{n}` and merge again"
            )
    ordered = [by_index[i] for i in range(n)]
    for d, m in ordered:
        want = shard_range(m.shard.index, n, m.shard.total, m.batch_size)
        if (m.shard.start, m.shard.stop) != want or m.counts.exemplars != want[1] - want[0]:
            raise ShardError(
                f"{d}: records [{m.shard.start}, {m.shard.stop}) ({m.counts.exemplars}), "
                f"expected [{want[0]}, {want[1]}) for shard {m.shard.index}/{n}; rebuild it"
            )
    return ordered


def _load_array(path: Path, rows: int, dim: int) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: unreadable ({exc}); rebuild this shard") from None
    if arr.shape != (rows, dim) or arr.dtype != np.float32:
        raise ShardError(
            f"{path}: {arr.dtype} {arr.shape}, the shard manifest says float32 ({rows}, {dim}); "
            "rebuild this shard"
        )
    return arr


def merge_shards(
    shard_dirs: Sequence[str | Path],
    out_dir: str | Path,
    index: IndexConfig | None = None,
    *,
    seed: int = 0,
) -> Manifest:
    """Build the index directory ``out_dir`` from a complete set of shards.

    ``shard_dirs``: the shard folders in any order (a folder holding ``shard-*-of-*``
    folders stands for them). ``index``: the FAISS index of both files; None uses the one
    recorded in the shards (None there too: the size-based default, as ``build_index``).
    The result equals a one-process ``build_index`` with the same encoder, data, split and
    batch size (same vectors, records, manifest up to ``built_at``); embeddings are
    memory-mapped, so peak memory is about the index itself plus one block of rows.

    Raises:
        ShardError: a directory that is not a shard, shards of different builds
            (encoder, dataset, split, dims, shard counts, batch sizes), a duplicate or
            missing shard, a damaged file; the message names the directory and the fix.
        IndexConfigError: index parameters unfit for the data.
        IndexStoreError: ``out_dir`` exists and is not an index (never deleted).
    """
    out = Path(out_dir)
    check_replaceable(out)
    shards = _validate_set(_expand(shard_dirs), index is not None)
    ref = shards[0][1]
    d = ref.embed_dim
    g, r, exemplars = [], [], []
    for path, m in shards:
        records = read_exemplars(path / RECORDS, first_id=m.shard.start)
        if len(records) != m.counts.exemplars:
            raise ShardError(
                f"{path / RECORDS}: {len(records)} records, the shard manifest says "
                f"{m.counts.exemplars}; rebuild this shard"
            )
        n_boxes = sum(len(e.boxes) for e in records)
        g.append(_load_array(path / GLOBAL, m.counts.exemplars, d))
        r.append(_load_array(path / REGIONS, n_boxes, d))
        exemplars.extend(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.merging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        manifest = write_index(
            staging, g, r, exemplars, encoder=ref.encoder, embed_dim=d, dataset=ref.dataset,
            normal_skipped=ref.counts.normal_skipped,
            index=index if index is not None else ref.index, seed=seed,
        )  # fmt: skip
        del g, r
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
