"""Retrieval encoders, chosen by name or path: ``ricl.encoders.load(spec)``.

Specs:
    ``hf:<hub id or dir>``   any transformers dual encoder (SigLIP, SigLIP2, CLIP)
    ``lofi:<dir>``           a LoFi model directory (config JSON + safetensors)
    ``<dir>``                a directory: its ``ricl_encoder.json`` names the kind; a plain
                             Hugging Face directory (``config.json``) loads as ``hf``
    ``<name>``               an embedded encoder shipped with ricl (``phantom-lofi``,
                             ``phantom-siglip``: trained here on phantoms; see
                             ``ricl/assets/encoders/README.md``), unless a path of that name exists
    ``<hub id>``             anything else loads as ``hf`` (needs the hub or a local cache)

Nothing heavy is imported until an encoder is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ricl.encoders.base import Encoder, ImageEncoding
from ricl.registry import Registry

__all__ = ["EMBEDDED", "ENCODERS", "Encoder", "ImageEncoding", "embedded_path", "load", "resolve"]

EMBEDDED = ("phantom-lofi", "phantom-siglip")

ENCODERS = Registry(
    "encoder",
    {
        "hf": "ricl.encoders.hf:load_hf_encoder",
        "lofi": "ricl.encoders.lofi.encoder:load_lofi_encoder",
    },
)

KIND_FILE = "ricl_encoder.json"


def resolve(spec: str | Path) -> tuple[str, str]:
    """``spec`` -> ``(kind, target)`` by the rules in the module docstring."""
    text = str(spec)
    if text in EMBEDDED and not Path(text).exists():
        text = str(embedded_path(text))
    kind, sep, rest = text.partition(":")
    if sep and kind in ENCODERS and not Path(text).exists():
        return kind, rest
    path = Path(text)
    if path.is_dir():
        marker = path / KIND_FILE
        if marker.is_file():
            return json.loads(marker.read_text())["kind"], text
        return "hf", text
    return "hf", text


def embedded_path(name: str) -> Path:
    """The directory of an embedded encoder (see ``EMBEDDED``)."""
    if name not in EMBEDDED:
        raise ValueError(f"no embedded encoder {name!r}; known: {', '.join(EMBEDDED)}")
    return Path(__file__).resolve().parents[1] / "assets" / "encoders" / name


def load(spec: str | Path, **options: Any) -> Encoder:
    """Load an encoder by spec (see module docstring). ``options`` go to the kind's loader
    (e.g. ``device``, ``trust_remote_code`` for ``hf``, which stays off unless asked).
    Loads are serialized process-wide (:data:`ricl.loading.MODEL_LOAD_LOCK`)."""
    from ricl.loading import MODEL_LOAD_LOCK

    kind, target = resolve(spec)
    with MODEL_LOAD_LOCK:
        return ENCODERS.get(kind)(target, **options)
