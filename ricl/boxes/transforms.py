"""Square image transforms and exact box mapping both ways.

Models see square inputs made in one of two ways:

* ``letterbox`` (resize-and-pad, the LoFi family, MedGemma): scale the long side to
  ``side``, pad the short side symmetrically with ``fill``;
* ``center_crop`` (MAIRA-2): cut the central square of side ``min(w, h)``, resize to ``side``.

A :class:`SquareTransform` records the exact affine map actually applied to the
pixels (rounded content size, integer offsets), so boxes map into the square and
back without drift: ``out_px = in_px * scale + offset`` per axis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from ricl.errors import InvalidBoxError
from ricl.types import Box

if TYPE_CHECKING:  # pillow is only needed to transform pixels
    from PIL import Image

__all__ = ["SquareTransform", "center_crop", "letterbox"]

Kind = Literal["letterbox", "center_crop"]


@dataclass(frozen=True, slots=True)
class SquareTransform:
    """An original ``orig_width x orig_height`` image mapped to a ``side x side`` square.

    ``scale_x/scale_y``: output pixels per original pixel; ``offset_x/offset_y``: where
    the original's (0, 0) corner lands in the square, in output pixels (negative for a crop).
    Serializable with :meth:`to_dict` / :meth:`from_dict`.
    """

    kind: Kind
    orig_width: int
    orig_height: int
    side: int
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    # ------------------------------------------------------------------ pixels
    def apply(self, image: Image.Image, fill: int | tuple[int, ...] = 0) -> Image.Image:
        """Transform a PIL image of the original size into the ``side x side`` square."""
        from PIL import Image

        if image.size != (self.orig_width, self.orig_height):
            raise ValueError(
                f"image is {image.size[0]}x{image.size[1]} but the transform was made for "
                f"{self.orig_width}x{self.orig_height}"
            )
        resample = Image.Resampling.BILINEAR
        if self.kind == "letterbox":
            nw = round(self.orig_width * self.scale_x)
            nh = round(self.orig_height * self.scale_y)
            out = Image.new(image.mode, (self.side, self.side), fill)
            out.paste(image.resize((nw, nh), resample), (int(self.offset_x), int(self.offset_y)))
            return out
        crop = round(self.side / self.scale_x)
        left, top = round(-self.offset_x / self.scale_x), round(-self.offset_y / self.scale_y)
        return image.crop((left, top, left + crop, top + crop)).resize(
            (self.side, self.side), resample
        )

    # ------------------------------------------------------------------ boxes
    def box_to_square(self, box: Box) -> Box | None:
        """Original-image box -> box normalized to the square.

        Exact for a letterbox. For a centre crop, parts outside the crop are cut off and
        a box entirely outside gives None.
        """
        s = self.side
        x0 = (box.x_min * self.orig_width * self.scale_x + self.offset_x) / s
        y0 = (box.y_min * self.orig_height * self.scale_y + self.offset_y) / s
        x1 = (box.x_max * self.orig_width * self.scale_x + self.offset_x) / s
        y1 = (box.y_max * self.orig_height * self.scale_y + self.offset_y) / s
        return _clipped_or_none(x0, y0, x1, y1)

    def box_from_square(self, box: Box) -> Box | None:
        """Box normalized to the square -> original-image box.

        Exact inverse of :meth:`box_to_square` on the image content. Parts lying on the
        padding are cut off; a box entirely on the padding gives None.
        """
        s = self.side
        x0 = (box.x_min * s - self.offset_x) / (self.scale_x * self.orig_width)
        y0 = (box.y_min * s - self.offset_y) / (self.scale_y * self.orig_height)
        x1 = (box.x_max * s - self.offset_x) / (self.scale_x * self.orig_width)
        y1 = (box.y_max * s - self.offset_y) / (self.scale_y * self.orig_height)
        return _clipped_or_none(x0, y0, x1, y1)

    def content_box(self) -> Box:
        """The region of the square covered by image content (normalized to the square)."""
        b = self.box_to_square(Box(0.0, 0.0, 1.0, 1.0))
        assert b is not None
        return b

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SquareTransform:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown SquareTransform keys: {sorted(unknown)}")
        return cls(**data)


def _clipped_or_none(x0: float, y0: float, x1: float, y1: float) -> Box | None:
    # Tolerate float round-off at the edges, then cut to [0, 1].
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(1.0, x1), min(1.0, y1)
    if x1 <= x0 or y1 <= y0:
        return None
    try:
        return Box(x0, y0, x1, y1)
    except InvalidBoxError:  # pragma: no cover - guarded above
        return None


def _check(width: int, height: int, side: int) -> None:
    if width <= 0 or height <= 0 or side <= 0:
        raise ValueError(f"sizes must be positive, got image {width}x{height}, side {side}")


def letterbox(width: int, height: int, side: int) -> SquareTransform:
    """Resize-and-pad ``width x height`` into a ``side`` square (content centred)."""
    _check(width, height, side)
    scale = side / max(width, height)
    nw = max(1, min(side, round(width * scale)))
    nh = max(1, min(side, round(height * scale)))
    return SquareTransform(
        kind="letterbox",
        orig_width=width,
        orig_height=height,
        side=side,
        scale_x=nw / width,
        scale_y=nh / height,
        offset_x=float((side - nw) // 2),
        offset_y=float((side - nh) // 2),
    )


def center_crop(width: int, height: int, side: int) -> SquareTransform:
    """Cut the central ``min(w, h)`` square and resize it to ``side``."""
    _check(width, height, side)
    crop = min(width, height)
    left, top = (width - crop) // 2, (height - crop) // 2
    scale = side / crop
    return SquareTransform(
        kind="center_crop",
        orig_width=width,
        orig_height=height,
        side=side,
        scale_x=scale,
        scale_y=scale,
        offset_x=-left * scale,
        offset_y=-top * scale,
    )
