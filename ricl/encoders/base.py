"""The encoder protocol every retrieval encoder implements, and helpers they share.

An encoder embeds images, texts and image regions into one space of dimension
``embed_dim``; every embedding it returns is float32 and L2-normalized, so inner
product = cosine similarity (what the FAISS index uses).

Images may be given as a path (read with :func:`ricl.data.images.load_image`: 16-bit
PNG windowing, DICOM), a :class:`ricl.data.images.LoadedImage`, a PIL image or a
2-D/3-D uint8 numpy array. Boxes are always canonical :class:`ricl.types.Box` on the
ORIGINAL image; each encoder maps them into its own input frame.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

from ricl.boxes.transforms import SquareTransform
from ricl.types import Box

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ricl.data.images import LoadedImage

ImageInput = Union[str, Path, "LoadedImage", "Image.Image", "np.ndarray"]

__all__ = [
    "Encoder",
    "ImageEncoding",
    "ImageInput",
    "box_patch_mask",
    "fingerprint_files",
    "fingerprint_json",
]


@dataclass(slots=True)
class ImageEncoding:
    """What :meth:`Encoder.encode_images` returns for ``n`` images.

    Attributes:
        embeddings: ``(n, d)`` float32, L2-normalized global image embeddings.
        patch_tokens: ``(n, h * w, c)`` float32 patch/region tokens (row-major over the
            grid), or None when the encoder has none.
        grid: ``(h, w)`` of the patch grid on the encoder's input square, or None.
        transforms: per image, the map from the original image to the encoder's input.
    """

    embeddings: np.ndarray
    patch_tokens: np.ndarray | None = None
    grid: tuple[int, int] | None = None
    transforms: list[SquareTransform] = field(default_factory=list)


@runtime_checkable
class Encoder(Protocol):
    """A retrieval encoder. All outputs are float32 and L2-normalized along the last axis."""

    name: str
    embed_dim: int

    def encode_images(self, images: Sequence[ImageInput], batch_size: int = 16) -> ImageEncoding:
        """Embed ``n`` images -> :class:`ImageEncoding` (embeddings ``(n, embed_dim)``)."""
        ...

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``n`` texts -> ``(n, embed_dim)``."""
        ...

    def encode_regions(
        self, images: Sequence[ImageInput], boxes: Sequence[Sequence[Box]], batch_size: int = 16
    ) -> np.ndarray:
        """Embed the regions ``boxes[i]`` of ``images[i]`` -> ``(sum(len(b) for b in boxes), embed_dim)``,
        in order (image 0's boxes first). Pooled from the patch tokens inside each box."""
        ...

    def fingerprint(self) -> str:
        """A short hex id of architecture + weights: indexes record it and refuse a mismatch."""
        ...


# ---------------------------------------------------------------------------- helpers
def box_patch_mask(box_on_square: Box, grid: tuple[int, int]) -> np.ndarray:
    """Boolean ``(h * w,)`` mask of the patches a box (normalized to the input square) covers.

    A patch counts when the box overlaps it at all; a box smaller than a patch still
    selects the patch holding its centre, so the mask is never empty.
    """
    import numpy as np

    h, w = grid
    c0 = int(np.floor(box_on_square.x_min * w))
    c1 = int(np.ceil(box_on_square.x_max * w))
    r0 = int(np.floor(box_on_square.y_min * h))
    r1 = int(np.ceil(box_on_square.y_max * h))
    mask = np.zeros((h, w), dtype=bool)
    mask[max(0, r0) : min(h, max(r1, r0 + 1)), max(0, c0) : min(w, max(c1, c0 + 1))] = True
    if not mask.any():  # pragma: no cover - guarded by the max() above
        cx, cy = box_on_square.center
        mask[min(h - 1, int(cy * h)), min(w - 1, int(cx * w))] = True
    return mask.reshape(-1)


def fingerprint_json(obj: Any) -> str:
    """sha256 (first 16 hex) of a JSON-able object with sorted keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint_files(paths: Sequence[Path], extra: Any = None) -> str:
    """sha256 (first 16 hex) over file names and contents (streamed), plus ``extra``."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for p in sorted(paths, key=lambda q: q.name):
        h.update(p.name.encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]
