"""Chat messages with image references: what a strategy renders and a backend sends.

A prompt is a tuple of :class:`Message` (``system`` / ``user`` / ``assistant``), each a
tuple of parts: :class:`TextPart` or :class:`ImagePart`. An image part holds an
:class:`ImageRef`, which says WHERE the pixels come from (a file, or an in-memory image
for a Python-API query) and HOW they are prepared before sending: the box codec's square
transform (letterbox / centre crop, or none), then a uniform resize so the longer side is
at most ``max_side``. The prepared size is known without reading pixels, so the prompt
(and the box text in it) is built before any image is decoded; :meth:`ImageRef.render`
produces the pixels only when a backend needs them.

Box frames: the codec formats an exemplar's boxes for the image AS SENT. A plain resize
keeps normalized coordinates, so codecs without a square transform are given the sent
size (what an absolute-pixel codec such as ``qwen25vl`` needs); codecs with a transform
are given the original size (their transform is defined on it). See :func:`codec_frame`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL import Image

    from ricl.boxes.codecs.base import BoxCodec
    from ricl.boxes.transforms import SquareTransform

__all__ = [
    "ImagePart",
    "ImageRef",
    "Message",
    "Role",
    "TextPart",
    "codec_frame",
    "messages_fingerprint",
    "messages_to_text",
    "prepared_size",
]

Role = Literal["system", "user", "assistant"]


def prepared_size(
    size: tuple[int, int], transform: SquareTransform | None, max_side: int | None
) -> tuple[int, int]:
    """``(width, height)`` of an image of ``size`` after ``transform`` and the resize."""
    w, h = (transform.side, transform.side) if transform is not None else size
    if max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    return int(w), int(h)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One image of a prompt.

    ``role``: ``query`` or ``exemplar``; ``exemplar_id``/``study_id`` name an exemplar.
    ``path``: the file (absolute), or None for an in-memory query image held in ``image``
    (excluded from equality and repr). ``size``: the ORIGINAL ``(width, height)``.
    ``transform``: the codec's square transform, or None. ``max_side``: the resize bound.
    """

    role: Literal["query", "exemplar"]
    size: tuple[int, int]
    path: Path | None = None
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    transform: SquareTransform | None = None
    max_side: int | None = None
    exemplar_id: int | None = None
    study_id: str | None = None

    @property
    def sent_size(self) -> tuple[int, int]:
        """``(width, height)`` of the pixels the model receives."""
        return prepared_size(self.size, self.transform, self.max_side)

    def describe(self) -> str:
        """A one-line placeholder, e.g. ``<image exemplar 12 (study S1) 1024x1024 -> 512x512>``."""
        who = "query" if self.role == "query" else f"exemplar {self.exemplar_id}"
        if self.study_id:
            who += f" (study {self.study_id})"
        (w, h), (sw, sh) = self.size, self.sent_size
        how = f" {self.transform.kind}" if self.transform is not None else ""
        return f"<image {who} {w}x{h}{how} -> {sw}x{sh}>"

    def render(self) -> Image.Image:
        """The RGB pixels as sent: loaded (windowed like every ricl image), transformed,
        resized. Raises ImageLoadError naming the file."""
        from PIL import Image as PILImage

        from ricl.data.images import to_pil_rgb

        if self.image is not None:
            img = to_pil_rgb(self.image)
        elif self.path is not None:
            img = to_pil_rgb(self.path)
        else:
            raise ValueError("an ImageRef needs a path or an in-memory image")
        if img.size != tuple(self.size):
            raise ValueError(
                f"{self.path or 'query image'}: image is {img.size[0]}x{img.size[1]} but the "
                f"prompt was built for {self.size[0]}x{self.size[1]}"
            )
        if self.transform is not None:
            img = self.transform.apply(img)
        if img.size != self.sent_size:
            img = img.resize(self.sent_size, PILImage.Resampling.BICUBIC)
        return img

    def key(self) -> dict[str, Any]:
        """A JSON-able identity (for fingerprints and logs); in-memory images hash pixels."""
        source: str
        if self.path is not None:
            source = str(self.path)
        elif self.image is not None:
            source = "sha256:" + hashlib.sha256(self.image.tobytes()).hexdigest()[:16]
        else:
            source = ""
        return {
            "role": self.role,
            "source": source,
            "size": list(self.size),
            "sent": list(self.sent_size),
            "transform": self.transform.to_dict() if self.transform else None,
        }


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    image: ImageRef


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn. ``content`` keeps the order of text and images."""

    role: Role
    content: tuple[TextPart | ImagePart, ...]

    @property
    def images(self) -> list[ImageRef]:
        return [p.image for p in self.content if isinstance(p, ImagePart)]

    @property
    def text(self) -> str:
        """The text parts joined (images left out)."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, images as placeholders (see :meth:`ImageRef.describe`)."""
        return {
            "role": self.role,
            "content": [
                {"type": "text", "text": p.text}
                if isinstance(p, TextPart)
                else {"type": "image", "image": p.image.describe()}
                for p in self.content
            ],
        }


def codec_frame(codec: BoxCodec, ref: ImageRef) -> tuple[int, int]:
    """The ``image_size`` to pass to ``codec.format/parse`` for an image sent as ``ref``.

    Without a square transform the sent image is a plain resize of the original, which
    keeps normalized coordinates: the codec is given the SENT size (absolute-pixel codecs
    then write in the frame the model sees). With a transform the codec is given the
    original size, on which its transform is defined.
    """
    return ref.size if ref.transform is not None else ref.sent_size


def messages_to_text(messages: tuple[Message, ...] | list[Message]) -> str:
    """A readable dump: one ``[role]`` header per turn, images as placeholders."""
    lines: list[str] = []
    for m in messages:
        lines.append(f"[{m.role}]")
        body = "".join(
            p.text if isinstance(p, TextPart) else p.image.describe() + "\n" for p in m.content
        )
        lines.append(body.rstrip("\n"))
    return "\n".join(lines)


def messages_fingerprint(messages: tuple[Message, ...] | list[Message]) -> str:
    """sha256 (16 hex) of the messages with image identities: equal prompts, equal hashes."""
    payload = [
        {
            "role": m.role,
            "content": [
                {"text": p.text} if isinstance(p, TextPart) else {"image": p.image.key()}
                for p in m.content
            ],
        }
        for m in messages
    ]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
