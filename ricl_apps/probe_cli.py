"""``ricl probe``: which codec, box frame and image limit the served model actually has.

Run it once against a new server before an evaluation: it sends the probe images with each
candidate codec's zero-shot prompt (see :mod:`ricl.vlm.probe`), prints a table and one
recommendation line, and with ``--out`` writes the whole report as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["probe_cmd"]


def probe_cmd(
    base_url: Annotated[str, typer.Option("--base-url", help="e.g. http://127.0.0.1:8000/v1")],
    model: Annotated[
        str | None, typer.Option("--model", help="Served model name (default: ask the server).")
    ] = None,
    codec: Annotated[
        list[str] | None, typer.Option("--codec", help="Candidate codec (repeatable; default all).")
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    max_side: Annotated[
        int | None, typer.Option("--max-side", help="Resize bound of the images sent.")
    ] = None,
    scale: Annotated[
        float, typer.Option("--scale", help="Probe image size factor (0.25: 112 px).")
    ] = 1.0,
    max_images: Annotated[
        int, typer.Option("--max-images", min=1, help="Most images per prompt to try.")
    ] = 8,
    min_pixels: Annotated[
        int | None, typer.Option("--min-pixels", help="Server's Qwen2.5-VL min_pixels.")
    ] = None,
    max_pixels: Annotated[
        int | None, typer.Option("--max-pixels", help="Server's Qwen2.5-VL max_pixels.")
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the report as JSON.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON report only.")] = False,
) -> None:
    """Find which codec and box frame a served VLM speaks, its images-per-prompt limit and
    truncated answers; print a one-line recommendation."""
    from ricl.boxes.codecs import get_codec
    from ricl.vlm.openai import OpenAIBackend
    from ricl.vlm.probe import probe_cases, probe_server

    pixels = {k: v for k, v in {"min_pixels": min_pixels, "max_pixels": max_pixels}.items() if v}
    backend = OpenAIBackend(model, base_url, api_key, max_tokens=max_tokens, max_retries=1)
    try:
        report = probe_server(
            backend,
            codecs=codec,
            cases=probe_cases(scale),
            max_side=max_side,
            max_images=max_images,
            resize=get_codec("qwen25vl", **pixels),
        )
    finally:
        backend.close()
    data = report.to_dict()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2))
    if json_out:
        typer.echo(json.dumps(data, indent=2))
        return
    _print(report)


def _print(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"codecs on {report.model} (zero-shot prompt, parsed by the codec)")
    for col in ("codec", "mean IoU", "ok", "empty", "parse_error", "error"):
        table.add_column(col, justify="left" if col == "codec" else "right")
    for name, v in sorted(report.codecs.items(), key=lambda kv: -kv[1]["mean_iou"]):
        table.add_row(name, f"{v['mean_iou']:.3f}", *(str(v[f"n_{s}"]) for s in
                      ("ok", "empty", "parse_error", "error")))  # fmt: skip
    console.print(table)
    frames = Table(title="frame hypotheses (the answers' numbers read in each frame)")
    for col in ("frame", "mean IoU", "answers", "meaning"):
        frames.add_column(col)
    for name, v in sorted(report.frames.items(), key=lambda kv: -kv[1]["mean_iou"]):
        frames.add_row(name, f"{v['mean_iou']:.3f}", str(v["n"]), v["description"])
    console.print(frames)
    limit = report.images_per_prompt
    console.print(f"images per prompt: accepted up to {limit['max_accepted']}, "
                  f"refused at {limit['refused_at']} (tried {limit['tried']})")  # fmt: skip
    console.print(f"answers stopped at max_tokens={report.max_tokens}: {report.n_truncated}")
    typer.echo(f"recommendation: {report.recommendation}")
