"""Load chest radiographs (PNG, JPEG, DICOM) as 8-bit greyscale arrays.

Every loader returns pixels as stored (no resizing, no EXIF rotation), so
``LoadedImage.pixels.shape == (height, width)`` and boxes in the file's pixel
frame stay valid. Any failure is an :class:`~ricl.errors.ImageLoadError` naming
the file; no PIL or pydicom exception escapes. PIL's global
``ImageFile.LOAD_TRUNCATED_IMAGES`` is never changed here (it is ``False`` by
default, so truncated files fail loudly).

Intensity policy:

* 8-bit sources (8-bit PNG/JPEG, any colour mode converted to grey with PIL's
  ``convert("L")``, alpha dropped) are returned as-is, unless
  ``WindowConfig.apply_to_8bit`` is set.
* High-bit-depth sources (16-bit PNG, PIL modes ``I``/``F``, DICOM) are windowed
  by :func:`window_to_uint8`: values are clipped to the
  ``[low_percentile, high_percentile]`` range and scaled linearly to 0..255.
* DICOM: RescaleSlope/RescaleIntercept are applied if present; the DICOM
  WindowCenter/Width and VOI LUTs are ignored (percentile windowing replaces
  them); MONOCHROME1 images are inverted after windowing (``255 - x``) so that
  bone is bright, and ``LoadedImage.inverted`` is ``True``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ricl.errors import ImageLoadError

__all__ = [
    "LoadedImage",
    "WindowConfig",
    "load_image",
    "read_image_size",
    "to_pil_rgb",
    "window_to_uint8",
]

#: Percentiles are computed on at most about this many pixels: larger images are
#: subsampled with the same stride ``s`` on both axes (``values[::s, ::s]``), a
#: deterministic grid. A 1955x1841 radiograph uses stride 2.
MAX_PERCENTILE_SAMPLES = 1 << 20

_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_PIL_8BIT_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
)
# mode -> nominal bit depth of high-bit-depth PIL modes ("I" from a PNG is 16-bit data).
_PIL_HIGH_MODES = {"I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class WindowConfig:
    """How high-bit-depth intensities are mapped to 0..255.

    ``low_percentile``/``high_percentile`` (``0 <= low < high <= 100``) bound the
    window; ``enabled=False`` maps the image's full min..max range linearly
    instead (no clipping of outliers). ``apply_to_8bit=True`` also windows 8-bit
    sources (returned as-is by default). Raises ``ValueError`` (``TypeError`` for a
    non-number) when invalid.
    """

    low_percentile: float = 0.5
    high_percentile: float = 99.5
    enabled: bool = True
    apply_to_8bit: bool = False

    def __post_init__(self) -> None:
        for name in ("low_percentile", "high_percentile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"WindowConfig.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"WindowConfig.{name} must be finite, got {value!r}")
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise ValueError(
                "WindowConfig needs 0 <= low_percentile < high_percentile <= 100, got "
                f"low={self.low_percentile}, high={self.high_percentile}"
            )


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded radiograph.

    ``pixels``: H x W ``uint8`` greyscale after windowing/inversion (for images
    from :func:`load_image`, ``pixels.shape == (height, width)``; the array is not
    copied or made read-only). ``width``/``height``: the original size in pixels.
    ``bit_depth``: 8, 16 (16-bit PNG), 32 (PIL ``I``/``F`` from non-PNG files) or
    the DICOM BitsStored. ``source``: the path read. ``inverted``: whether
    MONOCHROME1 inversion was applied. Compared by identity (``eq=False``).
    """

    pixels: np.ndarray
    width: int
    height: int
    bit_depth: int
    source: str
    inverted: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.pixels, np.ndarray) or self.pixels.ndim != 2:
            raise ValueError("LoadedImage.pixels must be a 2-D numpy array")
        if self.pixels.dtype != np.uint8:
            raise ValueError(f"LoadedImage.pixels must be uint8, got {self.pixels.dtype}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"LoadedImage size must be positive, got {self.width}x{self.height}")

    def to_pil(self) -> Image.Image:
        """The pixels as a PIL image of mode ``"L"`` (size ``(W, H)`` of ``pixels``)."""
        return Image.fromarray(np.ascontiguousarray(self.pixels))

    def to_rgb(self) -> Image.Image:
        """The pixels as a 3-channel PIL ``"RGB"`` image (grey replicated)."""
        return self.to_pil().convert("RGB")


def window_to_uint8(values: np.ndarray, window: WindowConfig | None = None) -> np.ndarray:
    """Map a 2-D array of intensities to ``uint8`` (same shape).

    With ``window.enabled`` the range is ``[p_low, p_high]``, the percentiles of
    ``values`` (on a strided subsample when ``values.size > MAX_PERCENTILE_SAMPLES``);
    otherwise the full ``[min, max]``. Values are clipped to the range and scaled
    linearly (rounded) to 0..255, so the map is monotone non-decreasing. If the
    percentile range is empty the full ``[min, max]`` is used; a constant image
    gives all zeros (no division by zero). Raises ``ValueError`` for an empty,
    non-2-D or non-finite input.
    """
    window = window or WindowConfig()
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a non-empty 2-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise ValueError(f"expected numeric pixel values, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("pixel values contain NaN or infinity")
    lo = hi = 0.0
    if window.enabled:
        stride = max(1, math.ceil(math.sqrt(arr.size / MAX_PERCENTILE_SAMPLES)))
        sample = arr[::stride, ::stride] if stride > 1 else arr
        pct = np.percentile(sample, [window.low_percentile, window.high_percentile])
        lo, hi = float(pct[0]), float(pct[1])
    if not hi > lo:
        lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    out = arr.astype(np.float64 if arr.dtype.itemsize > 2 else np.float32)
    out -= lo
    out *= 255.0 / (hi - lo)
    np.clip(out, 0.0, 255.0, out=out)
    np.rint(out, out=out)
    return out.astype(np.uint8)


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ImageLoadError(path, "file not found") from exc
    except OSError as exc:
        raise ImageLoadError(path, f"cannot access file: {_describe(exc)}") from exc
    if path.is_dir():
        raise ImageLoadError(path, "is a directory, expected an image file")
    if st.st_size == 0:
        raise ImageLoadError(path, "file is empty (0 bytes)")


def _is_dicom(path: Path) -> bool:
    """True for a DICM preamble, or a .dcm/.dicom name without a PNG/JPEG signature."""
    with path.open("rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return True
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        return False
    return path.suffix.lower() in _DICOM_SUFFIXES


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_dicom_header(path: Path) -> Any:
    import pydicom  # lazy: only DICOM users pay for the import

    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def _dicom_size(ds: Any, path: Path) -> tuple[int, int]:
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if not rows or not cols:
        raise ImageLoadError(
            path, "no DICOM image header (Rows/Columns missing): corrupt or not DICOM"
        )
    return int(cols), int(rows)


def _load_dicom(path: Path, window: WindowConfig) -> LoadedImage:
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    width, height = _dicom_size(ds, path)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise ImageLoadError(path, "DICOM file has no pixel data (no PixelData element)")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise ImageLoadError(path, f"multi-frame DICOM ({frames} frames) is not supported")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ImageLoadError(
            path, f"cannot decode DICOM pixel data (transfer syntax {syntax}): {_describe(exc)}"
        ) from exc
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # colour DICOM -> luminance
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.ndim != 2:
        raise ImageLoadError(path, f"unsupported DICOM pixel array shape {arr.shape}")
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    slope = 1.0 if slope is None else float(slope)
    intercept = 0.0 if intercept is None else float(intercept)
    if slope != 1.0 or intercept != 0.0:
        arr = arr.astype(np.float64) * slope + intercept
    bit_depth = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if arr.dtype == np.uint8 and not window.apply_to_8bit:
        pixels = np.array(arr, dtype=np.uint8)
    else:
        pixels = window_to_uint8(arr, window)
    inverted = str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"
    if inverted:
        pixels = 255 - pixels
    return LoadedImage(pixels, width, height, bit_depth, str(path), inverted)


def _load_pil(path: Path, window: WindowConfig) -> LoadedImage:
    with Image.open(path) as im:
        im.load()  # force decoding now: truncated data raises here
        width, height = im.size
        mode = im.mode
        if mode in _PIL_HIGH_MODES:
            bit_depth = 16 if (mode == "I" and im.format == "PNG") else _PIL_HIGH_MODES[mode]
            arr = np.asarray(im)
            if arr.ndim != 2:
                raise ImageLoadError(path, f"unexpected pixel array shape {arr.shape}")
            pixels = window_to_uint8(arr, window)
        elif mode in _PIL_8BIT_MODES:
            bit_depth = 8
            grey = im if mode == "L" else im.convert("L")
            pixels = np.array(grey, dtype=np.uint8)
            if window.apply_to_8bit:
                pixels = window_to_uint8(pixels, window)
        else:
            raise ImageLoadError(path, f"unsupported image mode {mode!r} ({im.format})")
    if pixels.shape != (height, width):
        raise ImageLoadError(path, f"decoded shape {pixels.shape} != size {width}x{height}")
    return LoadedImage(pixels, width, height, bit_depth, str(path), False)


def load_image(path: str | os.PathLike[str], *, window: WindowConfig | None = None) -> LoadedImage:
    """Load a PNG (8/16-bit, grey or colour), JPEG or DICOM file as greyscale ``uint8``.

    DICOM is recognised by its ``DICM`` preamble or a ``.dcm``/``.dicom`` name;
    everything else goes through PIL (by content, so extensions may lie).
    Returns a :class:`LoadedImage` with ``pixels.shape == (height, width)``.
    ``window`` defaults to ``WindowConfig()`` (0.5..99.5 percentiles; see the
    module docstring for which images are windowed).

    Raises :class:`ImageLoadError` (message ``"<path>: <reason>"``) for a missing
    path, a directory, an empty, truncated, corrupt or unreadable file, an
    unsupported mode, or a DICOM without (decodable) pixel data.
    """
    p = Path(path)
    window = window or WindowConfig()
    _check_file(p)
    try:
        if _is_dicom(p):
            return _load_dicom(p, window)
        return _load_pil(p, window)
    except ImageLoadError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(p, "not a recognised image (corrupt or unsupported format)") from exc
    except Exception as exc:  # never let a PIL/pydicom/numpy error escape bare
        raise ImageLoadError(
            p, f"cannot decode image (corrupt or truncated?): {_describe(exc)}"
        ) from exc


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` from the header only (PIL lazy open; pydicom ``stop_before_pixels``).

    Cheap: pixel data is neither decoded nor validated, so a truncated file may
    still report its size here and fail only in :func:`load_image`. Raises
    :class:`ImageLoadError` when the file is missing, a directory, empty, or its
    header cannot be parsed.
    """
    p = Path(path)
    _check_file(p)
    try:
        if _is_dicom(p):
            return _dicom_size(_read_dicom_header(p), p)
        with Image.open(p) as im:
            width, height = im.size
        return int(width), int(height)
    except ImageLoadError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(p, "not a recognised image (corrupt or unsupported format)") from exc
    except Exception as exc:
        raise ImageLoadError(p, f"cannot read image header: {_describe(exc)}") from exc


def to_pil_rgb(image: Any) -> Any:
    """A path, :class:`LoadedImage`, PIL image or uint8 array -> an 8-bit RGB PIL image
    (paths read via :func:`load_image`).

    Raises:
        ImageLoadError: a path that cannot be read (the message names the file).
        TypeError: an unsupported input type.
    """
    if isinstance(image, (str, Path)):
        return load_image(image).to_rgb()
    if isinstance(image, LoadedImage):
        return image.to_rgb()
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(
                f"numpy images must be uint8, got {image.dtype}; use load_image for 16-bit"
            )
        return Image.fromarray(image).convert("RGB")
    raise TypeError(
        f"unsupported image input {type(image).__name__}; pass a path, PIL image or array"
    )
