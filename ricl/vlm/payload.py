"""OpenAI-compatible chat payloads, built by pure functions (tested by equality).

Messages become the OpenAI chat format vLLM serves: text-only turns as a string,
turns with images as a list of ``{"type": "text"}`` / ``{"type": "image_url"}`` parts,
images as base64 data URLs of the pixels AS SENT (:meth:`ImageRef.render`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ricl.prompting.messages import ImagePart, ImageRef, Message, TextPart

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "build_chat_payload",
    "chat_messages",
    "data_url",
    "image_data_url",
    "payload_hash",
    "to_openai_messages",
]

ImageURL = Callable[[ImageRef], str]


def data_url(image: Image.Image, fmt: str = "png") -> str:
    """``data:image/<fmt>;base64,...`` of a PIL image.

    PNG is lossless (compression level 1: ~4x faster to write than the default, ~10% larger);
    an RGB image whose three channels are equal (every radiograph) is written as one gray
    channel, which decodes back to the same RGB pixels. JPEG: quality 95.
    """
    buf = io.BytesIO()
    if fmt == "png":
        _gray_if_equal(image).save(buf, format="PNG", compress_level=1)
    elif fmt in {"jpeg", "jpg"}:
        image.convert("RGB").save(buf, format="JPEG", quality=95)
        fmt = "jpeg"
    else:
        raise ValueError(f"image format must be 'png' or 'jpeg', got {fmt!r}")
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _gray_if_equal(image: Image.Image) -> Image.Image:
    if image.mode != "RGB":
        return image
    from PIL import ImageChops

    r, g, b = image.split()
    if (
        ImageChops.difference(r, g).getbbox() is None
        and ImageChops.difference(r, b).getbbox() is None
    ):
        return r
    return image


@functools.lru_cache(maxsize=512)
def _file_data_url(ref: ImageRef, fmt: str) -> str:
    return data_url(ref.render(), fmt)


def image_data_url(ref: ImageRef, fmt: str = "png") -> str:
    """Data URL of an image as sent; files are encoded once and cached (exemplars recur)."""
    if ref.path is not None:
        return _file_data_url(ref, fmt)  # keyed by path, sizes and transform
    return data_url(ref.render(), fmt)


def to_openai_messages(
    messages: Sequence[Message], image_url: ImageURL = image_data_url
) -> list[dict[str, Any]]:
    """OpenAI chat messages. Turns without images keep string content."""
    return chat_messages(
        messages, lambda ref: {"type": "image_url", "image_url": {"url": image_url(ref)}}
    )


def chat_messages(
    messages: Sequence[Message], image_part: Callable[[ImageRef], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Prompt messages -> chat-format dicts: text parts as ``{"type": "text"}``, each image
    as ``image_part(ref)`` (called in order). Turns without images keep string content."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if not m.images:
            out.append({"role": m.role, "content": m.text})
            continue
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                parts.append(image_part(p.image))
        out.append({"role": m.role, "content": parts})
    return out


def build_chat_payload(
    model: str,
    messages: Sequence[Message],
    *,
    temperature: float = 0.0,
    max_tokens: int = 256,
    seed: int | None = None,
    extra_body: dict[str, Any] | None = None,
    image_url: ImageURL = image_data_url,
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/chat/completions`` for one prompt.

    ``extra_body`` keys (vLLM sampling extras such as ``top_k``) are merged at top level,
    the way the openai client sends them; they may not override the keys set here.
    """
    payload: dict[str, Any] = {
        "model": model,
        "messages": to_openai_messages(messages, image_url),
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if seed is not None:
        payload["seed"] = seed
    for key, value in (extra_body or {}).items():
        if key in payload:
            raise ValueError(f"extra_body may not override {key!r}")
        payload[key] = value
    return payload


def payload_hash(payload: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of a payload (the response-cache key)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
