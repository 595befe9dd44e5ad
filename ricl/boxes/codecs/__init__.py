"""Box codecs: canonical boxes <-> the answer text of each VLM family, image transform included.

>>> codec = get_codec("qwen2vl")
>>> from ricl.types import Box
>>> codec.format([Box(0.1, 0.2, 0.5, 0.6)], image_size=(1000, 500), phrase="effusion")
'<|object_ref_start|>effusion<|object_ref_end|><|box_start|>(100,200),(500,600)<|box_end|>'

Importing this package is light (no torch, transformers or PIL); codecs are imported on first
use through :data:`CODECS`.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from ricl.boxes.codecs.base import BoxCodec, ParseResult, ParseStatus
from ricl.registry import Registry

__all__ = ["CODECS", "BoxCodec", "ParseResult", "ParseStatus", "get_codec"]

CODECS = Registry(
    "box codec",
    {
        "qwen2vl": "ricl.boxes.codecs.qwen2vl:Qwen2VLCodec",
        "qwen25vl": "ricl.boxes.codecs.qwen25vl:Qwen25VLCodec",
        "qwen3vl": "ricl.boxes.codecs.qwen3vl:Qwen3VLCodec",
        "medgemma": "ricl.boxes.codecs.medgemma:MedGemmaCodec",
        "internvl": "ricl.boxes.codecs.internvl:InternVLCodec",
        "maira2": "ricl.boxes.codecs.maira2:Maira2Codec",
        "chexagent": "ricl.boxes.codecs.chexagent:CheXagentCodec",
        "lofi": "ricl.boxes.codecs.lofi:LofiCodec",
        "json": "ricl.boxes.codecs.jsonlist:JsonCodec",
        "paligemma": "ricl.boxes.codecs.paligemma:PaliGemmaCodec",
        "florence2": "ricl.boxes.codecs.florence2:Florence2Codec",
        "deepseekvl2": "ricl.boxes.codecs.deepseekvl2:DeepSeekVL2Codec",
        "glm45v": "ricl.boxes.codecs.glm45v:GLM45VCodec",
        "minicpmv": "ricl.boxes.codecs.minicpmv:MiniCPMVCodec",
        "kosmos2": "ricl.boxes.codecs.kosmos2:Kosmos2Codec",
        "cure": "ricl.boxes.codecs.cure:CureCodec",
    },
)


def get_codec(name: str, **options: Any) -> BoxCodec:
    """The codec registered as ``name``, built with ``options`` (e.g. ``side=896``).

    Raises UnknownNameError (with close names) for an unknown codec, TypeError naming the
    accepted options for an unknown option, ValueError for a bad option value.
    """
    cls = CODECS.get(name)
    accepted = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        hints = [m for u in unknown for m in difflib.get_close_matches(u, accepted, n=1)]
        hint = f" Did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""
        raise TypeError(
            f"box codec {name!r} has no option {', '.join(repr(u) for u in unknown)}.{hint} "
            f"Accepted options: {', '.join(accepted) if accepted else 'none'}."
        )
    return cls(**options)
