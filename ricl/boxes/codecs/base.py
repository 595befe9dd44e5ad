"""The box codec interface: canonical boxes <-> the text one VLM family reads and writes.

A codec owns three things of its model family: the image transform the model's input goes
through (:meth:`BoxCodec.image_transform`), the coordinate frame and syntax of its answers
(:meth:`BoxCodec.format`), and the inverse reader (:meth:`BoxCodec.parse`). Boxes on both
sides are canonical :class:`~ricl.types.Box` (normalized, ORIGINAL image); ``image_size`` is
always the original image's ``(width, height)`` in pixels.

Parsing never raises: unreadable text, a bad ``image_size`` or a bug inside a parser all
give ``status="parse_error"`` with a short ``error``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from ricl.boxes.codecs._parse import Extracted, says_no_box
from ricl.boxes.transforms import SquareTransform
from ricl.errors import InvalidBoxError
from ricl.types import Box

__all__ = [
    "BoxCodec",
    "Extracted",
    "ParseResult",
    "ParseStatus",
    "bin_box",
    "check_size",
    "quantize",
]

ParseStatus = Literal["ok", "empty", "parse_error"]


@dataclass(frozen=True, slots=True)
class ParseResult:
    """A parsed model answer.

    ``boxes`` are canonical (original image, normalized), in the order the model wrote them.
    ``status``: ``ok`` (at least one box), ``empty`` (the model said there is no box: the
    codec's own empty answer, an empty list, or prose such as "No pneumothorax is seen."),
    ``parse_error`` (no usable box and no no-box statement; ``error`` says why).
    ``n_repaired`` counts boxes whose corners were swapped or whose values were clipped into
    the model's coordinate range; ``n_dropped`` counts boxes found but unusable (wrong number
    of values, no area after clipping, entirely outside the image content).
    """

    boxes: tuple[Box, ...]
    status: ParseStatus
    raw: str
    n_repaired: int = 0
    n_dropped: int = 0
    error: str | None = None


def check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """Validate an original image ``(width, height)``.

    Raises TypeError unless two integers, ValueError unless both are positive.
    """
    try:
        w, h = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height), got {image_size!r}") from None
    if (
        isinstance(w, bool)
        or isinstance(h, bool)
        or not isinstance(w, int)
        or not isinstance(h, int)
    ):
        raise TypeError(f"image_size must be two integers (width, height), got {image_size!r}")
    if w <= 0 or h <= 0:
        raise ValueError(f"image_size must be positive, got {w}x{h}")
    return w, h


def quantize(values: Sequence[float], scale_x: int, scale_y: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` in [0, 1] -> integers on a ``scale_x`` x ``scale_y`` grid.

    Each value is ``round(v * scale)`` (Python round: half to even), clamped to
    ``0..scale``; swapped corners are reordered; a zero-width/height result is widened by
    one unit (towards ``scale`` unless already there), so no degenerate box is written.
    Raises ValueError unless given 4 finite numbers.
    """
    if len(values) != 4 or not all(math.isfinite(float(v)) for v in values):
        raise ValueError(f"a box needs 4 finite coordinates, got {values!r}")

    def q(v: float, s: int) -> int:
        return min(s, max(0, round(float(v) * s)))

    x0, x1 = sorted((q(values[0], scale_x), q(values[2], scale_x)))
    y0, y1 = sorted((q(values[1], scale_y), q(values[3], scale_y)))
    if x0 == x1:
        x0, x1 = (x0, x1 + 1) if x1 < scale_x else (x0 - 1, x1)
    if y0 == y1:
        y0, y1 = (y0, y1 + 1) if y1 < scale_y else (y0 - 1, y1)
    return x0, y0, x1, y1


_BIN_EPS = 1e-9  # float noise must not push an exact bin edge (0.12 * 100 = 11.99...) down


def bin_box(values: Sequence[float], bins: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` in [0, 1] (ordered) -> bin indices ``0..bins - 1`` per axis.

    Each value goes to the bin it falls in, ``floor(v * bins)`` clamped to ``0..bins - 1``
    (decoders read a bin back as its centre ``(b + 0.5) / bins``); corners sharing a bin are
    widened to the next bin (the previous one at the last bin), so no box collapses.
    """
    x0, y0, x1, y1 = (max(0, min(math.floor(v * bins + _BIN_EPS), bins - 1)) for v in values)
    if x0 == x1:
        x0, x1 = (x0, x1 + 1) if x1 < bins - 1 else (x0 - 1, x1)
    if y0 == y1:
        y0, y1 = (y0, y1 + 1) if y1 < bins - 1 else (y0 - 1, y1)
    return x0, y0, x1, y1


class BoxCodec(ABC):
    """Canonical boxes <-> one VLM family's answer text (see the module doc).

    Subclasses set ``name``, ``description``, ``no_box_answer`` and implement
    :attr:`format_hint`, :meth:`format`, :meth:`_extract` and :meth:`_decode`; most also
    override :meth:`_scale` (the integer grid of their frame).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    no_box_answer: ClassVar[str]  # what format() writes for no box; parse() reads it as empty

    @property
    @abstractmethod
    def format_hint(self) -> str:
        """One sentence telling a model how to answer in this format (zero-shot prompts)."""

    def image_transform(self, size: tuple[int, int]) -> SquareTransform | None:
        """The square transform to apply to the original ``(width, height)`` image's pixels
        before sending it, or None when the image is sent as is (default)."""
        return None

    @abstractmethod
    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        """The assistant answer for ``boxes`` (canonical) on this image.

        No boxes gives :attr:`no_box_answer`. Raises ValueError/TypeError on a bad
        ``image_size`` (see :func:`check_size`) and TypeError when a box is not a :class:`Box`.
        """

    def parse(self, text: str, *, image_size: tuple[int, int], phrase: str = "") -> ParseResult:
        """Read a model answer back into canonical boxes.

        Never raises: any failure is a ``parse_error`` (see :class:`ParseResult`).
        """
        try:
            size = check_size(image_size)
            return self._finish(text, self._extract(text), size)
        except Exception as exc:  # noqa: BLE001 - the contract: any failure is a parse_error
            return ParseResult((), "parse_error", text, error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _extract(self, text: str) -> Extracted:
        """Box candidates in ``text``, as numbers in the codec's units and written order."""

    def _scale(self, size: tuple[int, int]) -> tuple[int, int]:
        """Integer units across the model frame's width and height (default 0..1000)."""
        return 1000, 1000

    def _decode(self, values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
        """4 numbers as written -> ``(x0, y0, x1, y1)`` normalized to the model's frame,
        unclipped. Default: ``x0, y0, x1, y1`` divided by :meth:`_scale`."""
        sx, sy = self._scale(size)
        x0, y0, x1, y1 = values
        return x0 / sx, y0 / sy, x1 / sx, y1 / sy

    def _encode(self, box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """A box in the model's frame -> its integers (default: quantize on :meth:`_scale`)."""
        return quantize(box.to_list(), *self._scale(size))

    def _encoded(
        self, boxes: Sequence[Box], size: tuple[int, int]
    ) -> list[tuple[int, int, int, int]]:
        """The boxes in the model's frame, encoded and sorted by ``(x0, y0, x1, y1)``.

        Boxes with no part inside the model's input (outside a centre crop) are left out.
        """
        check_size(size)
        transform = self.image_transform(size)
        out = []
        for box in boxes:
            if not isinstance(box, Box):
                raise TypeError(f"{self.name} codec formats ricl.types.Box objects, got {box!r}")
            framed = box if transform is None else transform.box_to_square(box)
            if framed is not None:
                out.append(self._encode(framed, size))
        return sorted(out)

    def _finish(self, text: str, found: Extracted, size: tuple[int, int]) -> ParseResult:
        """Candidates -> canonical boxes, counting repairs and drops, and decide the status.

        Clipping to the image content when mapping back through a letterbox is not counted
        as a repair: a coordinate quantized onto the padding is rounding, not a model error.
        """
        transform = self.image_transform(size)
        boxes: list[Box] = []
        repaired = dropped = 0
        for values in found.groups:
            if len(values) != 4:
                dropped += 1
                continue
            try:
                box, changed = Box.clip(*self._decode(values, size))
            except InvalidBoxError:
                dropped += 1
                continue
            if transform is not None:
                mapped = transform.box_from_square(box)
                if mapped is None:
                    dropped += 1
                    continue
                box = mapped
            boxes.append(box)
            repaired += changed
        if boxes:
            return ParseResult(tuple(boxes), "ok", text, repaired, dropped)
        if dropped:
            error = f"{dropped} box(es) found but unusable (wrong arity, no area, or off the image)"
            return ParseResult((), "parse_error", text, 0, dropped, error)
        if found.said_empty or says_no_box(text):
            return ParseResult((), "empty", text)
        error = "truncated box" if found.truncated else "no box and no 'no finding' statement"
        return ParseResult((), "parse_error", text, error=error)
