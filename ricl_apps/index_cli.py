"""``ricl index build`` / ``merge`` / ``query``: a typer app mounted by ``ricl_apps.cli``
(``app.add_typer(index_app, name="index")``). No logic of its own; nothing heavy is
imported until a command runs. Errors ricl raises on purpose are RiclError subclasses,
which ``ricl_apps.cli.main`` prints as one line (exit status 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["index_app"]

index_app = typer.Typer(
    help="Build and inspect exemplar indexes (FAISS).", no_args_is_help=True, add_completion=False
)


def _params(pairs: list[str] | None) -> dict[str, Any]:
    """``["M=32", "efSearch=64"]`` -> ``{"M": 32, "efSearch": 64}`` (values parsed as YAML,
    through :func:`ricl.config.parse_overrides`)."""
    from ricl.config import parse_overrides

    return parse_overrides(pairs)


def _portable_spec(spec: str) -> str:
    """An encoder spec naming a local directory, made absolute (queries run from anywhere)."""
    kind, sep, rest = spec.partition(":")
    if Path(spec).exists():
        return str(Path(spec).resolve())
    if sep and rest and Path(rest).exists():
        return f"{kind}:{Path(rest).resolve()}"
    return spec


def _config(index_type: str, param: list[str] | None) -> Any:
    from ricl.config import validate_mapping
    from ricl.retrieval.manifest import IndexConfig

    return validate_mapping(IndexConfig, {"type": index_type, **_params(param)},
                            "--index-type/--param", what="index parameters")  # fmt: skip


def _rank_device(part: tuple[int, int] | None, shard: str | None) -> str | None:
    """``cuda:LOCAL_RANK`` for a shard taken from torchrun's environment on a CUDA machine."""
    import os

    if part is None or shard is not None or "LOCAL_RANK" not in os.environ:
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover - torch ships with ricl
        return None
    return f"cuda:{int(os.environ['LOCAL_RANK'])}" if torch.cuda.is_available() else None


def _box(text: str | None) -> Any:
    if text is None:
        return None
    from ricl.types import Box

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--box expects x0,y0,x1,y1 (normalized), got {text!r}") from None
    return Box.from_list(values)


@index_app.command("build")
def build_cmd(
    encoder: Annotated[str, typer.Option("--encoder", help="Encoder spec: a directory, hf:ID, lofi:DIR.")],
    dataset: Annotated[str, typer.Option("--dataset", help="padchest-gr, ms-cxr or phantom.")],
    root: Annotated[Path, typer.Option("--root", help="The dataset release folder (or MS-CXR CSV).")],
    out: Annotated[Path, typer.Option("--out", help="Index directory to write (e.g. indexes/NAME).")],
    images: Annotated[Path | None, typer.Option("--images", help="Images folder, if not the release default.")] = None,
    split: Annotated[str, typer.Option("--split", help="Split whose studies become exemplars.")] = "train",
    index_type: Annotated[str, typer.Option("--index-type", help="flat (exact), hnsw, ivf, ivfpq (product-quantized) or hnsw-sq (8-bit HNSW).")] = "flat",
    param: Annotated[list[str] | None, typer.Option("--param", help="Index parameter KEY=VALUE, e.g. M=32, efSearch=128, nlist=1024, nprobe=16, m=96, nbits=8 (repeatable).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per encoder batch.")] = 32,
    include_normal: Annotated[bool, typer.Option("--include-normal", help="Also index normal studies.")] = False,
    shard: Annotated[str | None, typer.Option("--shard", help="Embed only shard I/N (0-based) into OUT/shard-IIIII-of-NNNNN/; then `ricl index merge`. Default under torchrun (WORLD_SIZE > 1): RANK/WORLD_SIZE.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Encoder device (default: the loader's; cuda:LOCAL_RANK for a torchrun shard when CUDA is available).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:  # fmt: skip
    """Embed every exemplar of a split (resumable: rerun after an interruption) and write
    the index atomically; with --shard (or under torchrun), embed one shard of it."""

    from ricl.data.spec import DatasetSpec
    from ricl.encoders import load
    from ricl.retrieval.build import build_index
    from ricl.retrieval.shards import build_shard, parse_shard, shard_from_env

    config = _config(index_type, param)
    part = parse_shard(shard) if shard is not None else shard_from_env()
    ds = DatasetSpec(
        name=dataset, root=str(root), images=None if images is None else str(images)
    ).open()
    device = device or _rank_device(part, shard)
    enc = load(encoder, **({"device": device} if device else {}))
    if part is not None:
        sm = build_shard(enc, ds, split, out, part, config, batch_size=batch_size,
                         include_normal=include_normal, encoder_spec=_portable_spec(encoder))  # fmt: skip
        if json_out:
            typer.echo(sm.model_dump_json(indent=2))
            return
        s = sm.shard
        typer.echo(
            f"wrote shard {s.index}/{s.count} to {out}: exemplars [{s.start}, {s.stop}) of "
            f"{s.total}; when all {s.count} are done: ricl index merge {out} --out INDEX_DIR"
        )
        return
    manifest = build_index(
        enc, ds, split, out, config, batch_size=batch_size,
        include_normal=include_normal, encoder_spec=_portable_spec(encoder),
    )  # fmt: skip
    if json_out:
        typer.echo(json.dumps(manifest.model_dump(mode="json"), indent=2))
    else:
        c, g = manifest.counts, manifest.indexes["global"]
        typer.echo(
            f"wrote {out}: {c.exemplars} exemplars, {c.regions} regions, {g.type} {g.params}"
        )


@index_app.command("merge")
def merge_cmd(
    shards: Annotated[list[Path], typer.Argument(help="Shard folders (shard-IIIII-of-NNNNN), or the folder holding them.")],
    out: Annotated[Path, typer.Option("--out", help="Index directory to write.")],
    index_type: Annotated[str | None, typer.Option("--index-type", help="flat, hnsw, ivf, ivfpq or hnsw-sq (default: what the shards were built for).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Index parameter KEY=VALUE (with --index-type; repeatable).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:  # fmt: skip
    """Check that the shards form one complete build, then write the index (the same files
    a one-process `ricl index build` writes)."""
    from ricl.retrieval.shards import merge_shards

    if param and index_type is None:
        raise typer.BadParameter("--param needs --index-type (the type its keys belong to)")
    config = None if index_type is None else _config(index_type, param)
    manifest = merge_shards(shards, out, config)
    if json_out:
        typer.echo(json.dumps(manifest.model_dump(mode="json"), indent=2))
    else:
        c, g = manifest.counts, manifest.indexes["global"]
        typer.echo(
            f"wrote {out}: {c.exemplars} exemplars, {c.regions} regions, {g.type} {g.params}"
        )


@index_app.command("query")
def query_cmd(
    index: Annotated[Path, typer.Option("--index", help="Index directory.")],
    image: Annotated[Path | None, typer.Option("--image", help="Query image file.")] = None,
    box: Annotated[str | None, typer.Option("--box", help="Region x0,y0,x1,y1, normalized to the image.")] = None,
    phrase: Annotated[str | None, typer.Option("--phrase", help="Query phrase.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of exemplars.")] = 5,
    selector: Annotated[str | None, typer.Option("--selector", help="fine-grained, location, text, random, label-oracle (default: location with --box, fine-grained with --image, else text).")] = None,
    encoder: Annotated[str | None, typer.Option("--encoder", help="Encoder spec (default: the one in the manifest).")] = None,
    study_id: Annotated[str | None, typer.Option("--study-id", help="Query study id (leakage guard).")] = None,
    patient_id: Annotated[str | None, typer.Option("--patient-id", help="Query patient id (leakage guard).")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Gold labels, comma-separated (label-oracle).")] = None,
    allow_same_patient: Annotated[bool, typer.Option("--allow-same-patient", help="Turn the leakage guard off.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random selector.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:  # fmt: skip
    """Show the exemplars an index returns for a query (for inspection)."""
    from ricl.retrieval.retriever import Query, Retriever

    chosen = selector or ("location" if box else "fine-grained" if image else "text")
    query = Query(
        image=image, box=_box(box), phrase=phrase, study_id=study_id, patient_id=patient_id,
        labels=tuple(x.strip() for x in labels.split(",") if x.strip()) if labels else (),
    )  # fmt: skip
    retriever = Retriever(index, encoder, allow_same_patient=allow_same_patient, seed=seed)
    found = retriever.retrieve(query, k, chosen)
    if json_out:
        payload = {
            "query": {"image": str(image) if image else None, "box": box, "phrase": phrase,
                      "selector": chosen, "k": k},
            "settings": retriever.settings(),
            "exemplars": [e.to_dict() for e in found],
        }  # fmt: skip
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{index} — {chosen}, k={k}")
    for col in ("rank", "score", "study", "patient", "image", "findings"):
        table.add_column(col)
    for rank, e in enumerate(found, start=1):
        phrases = "; ".join(
            f"{f.phrase} ({len(f.boxes)} box{'' if len(f.boxes) == 1 else 'es'})"
            for f in e.findings
        )
        score = "-" if e.score is None else f"{e.score:.4f}"
        table.add_row(str(rank), score, e.study_id, e.patient_id, e.image_path, phrases)
    Console().print(table)
