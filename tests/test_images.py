"""Tests of ricl.data.images: PNG/JPEG/DICOM loading, windowing, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFile

from ricl.data.images import (
    LoadedImage,
    WindowConfig,
    load_image,
    read_image_size,
    window_to_uint8,
)
from ricl.errors import ImageLoadError, RiclError


def _ramp16(width: int = 37, height: int = 23, lo: int = 1000, hi: int = 5000) -> np.ndarray:
    return np.linspace(lo, hi, width * height).reshape(height, width).astype(np.uint16)


def _save(arr: np.ndarray, path: Path, **kw: object) -> Path:
    Image.fromarray(arr).save(path, **kw)
    return path


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


# ---------------------------------------------------------------- WindowConfig


def test_window_config_defaults_and_validation() -> None:
    w = WindowConfig()
    assert (w.low_percentile, w.high_percentile, w.enabled, w.apply_to_8bit) == (
        0.5,
        99.5,
        True,
        False,
    )
    WindowConfig(0, 100)
    for low, high in [(5, 5), (10, 5), (-1, 50), (1, 100.5), (float("nan"), 50)]:
        with pytest.raises(ValueError):
            WindowConfig(low, high)
    with pytest.raises(TypeError):
        WindowConfig("1", 50)  # type: ignore[arg-type]


# ---------------------------------------------------------------- PNG / JPEG


def test_16bit_png_narrow_range_uses_full_output_range(tmp_path: Path) -> None:
    arr = _ramp16()
    path = _save(arr, tmp_path / "ramp16.png")
    with Image.open(path) as im:
        assert im.mode == "I;16"
    img = load_image(path)
    assert isinstance(img, LoadedImage)
    assert img.pixels.dtype == np.uint8
    assert img.pixels.shape == (23, 37) == (img.height, img.width)
    assert (img.width, img.height) == (37, 23)
    assert img.bit_depth == 16
    assert img.inverted is False
    assert img.source == str(path)
    assert img.pixels.min() == 0 and img.pixels.max() == 255
    assert len(np.unique(img.pixels)) > 200  # not crushed into a few levels
    assert _corr(img.pixels, arr) > 0.99
    assert np.all(np.diff(img.pixels.ravel().astype(int)) >= 0)  # ramp stays a ramp


def test_hot_pixels_do_not_compress_histogram(tmp_path: Path) -> None:
    arr = _ramp16(64, 48)
    arr.flat[[5, 700, 2000]] = 65535  # 3 of 3072 pixels, < 0.5 %
    img = load_image(_save(arr, tmp_path / "hot.png"))
    normal = np.ones(arr.shape, bool)
    normal.flat[[5, 700, 2000]] = False
    assert img.pixels[~normal].tolist() == [255, 255, 255]
    assert img.pixels[normal].max() - img.pixels[normal].min() > 240

    # Without windowing the hot pixels dominate: the ramp lands in a few dark levels.
    flat = load_image(tmp_path / "hot.png", window=WindowConfig(enabled=False))
    assert flat.pixels[normal].max() <= int(np.ceil(5000 / 65535 * 255))
    assert flat.pixels[~normal].tolist() == [255, 255, 255]


def test_window_disabled_is_min_max_linear(tmp_path: Path) -> None:
    arr = _ramp16(lo=1000, hi=5000)
    img = load_image(_save(arr, tmp_path / "r.png"), window=WindowConfig(enabled=False))
    expected = np.rint((arr.astype(np.float64) - 1000) * 255 / 4000).astype(np.uint8)
    assert np.abs(img.pixels.astype(int) - expected).max() <= 1


def test_constant_16bit_image_no_division_by_zero(tmp_path: Path) -> None:
    arr = np.full((10, 12), 3000, np.uint16)
    with np.errstate(all="raise"):
        img = load_image(_save(arr, tmp_path / "const.png"))
    assert img.pixels.shape == (10, 12)
    assert not img.pixels.any()


def test_16bit_big_endian_mode(tmp_path: Path) -> None:
    arr = _ramp16()
    im = Image.frombytes("I;16B", (37, 23), arr.astype(">u2").tobytes())
    img = load_image(_save(np.asarray(im).astype(np.uint16), tmp_path / "be.png"))
    assert _corr(img.pixels, arr) > 0.99
    # The in-memory I;16B path of the windowing itself:
    assert np.array_equal(window_to_uint8(np.asarray(im)), window_to_uint8(arr))


def test_8bit_png_round_trip_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (23, 37), dtype=np.uint8)
    img = load_image(_save(arr, tmp_path / "g.png"))
    assert img.bit_depth == 8
    assert np.array_equal(img.pixels, arr)  # 8-bit: no windowing by default
    assert read_image_size(tmp_path / "g.png") == (37, 23)


def test_8bit_window_opt_in(tmp_path: Path) -> None:
    arr = np.linspace(100, 150, 23 * 37).reshape(23, 37).astype(np.uint8)
    path = _save(arr, tmp_path / "narrow8.png")
    assert np.array_equal(load_image(path).pixels, arr)
    stretched = load_image(path, window=WindowConfig(apply_to_8bit=True))
    assert stretched.pixels.min() == 0 and stretched.pixels.max() == 255


def test_jpeg_round_trip_approximately(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:23, 0:37]
    arr = (xx * 6 + yy * 2).astype(np.uint8)
    path = _save(arr, tmp_path / "smooth.jpg", quality=95)
    img = load_image(path)
    assert img.pixels.shape == (23, 37) and (img.width, img.height) == (37, 23)
    assert np.abs(img.pixels.astype(int) - arr).mean() < 3
    assert read_image_size(path) == (37, 23)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P"])
def test_colour_modes_converted_to_grey(tmp_path: Path, mode: str) -> None:
    grey = np.linspace(0, 255, 23 * 37).reshape(23, 37).astype(np.uint8)
    im = Image.fromarray(grey).convert(mode)
    path = tmp_path / f"c_{mode}.png"
    im.save(path)
    img = load_image(path)
    assert img.pixels.shape == (23, 37)
    assert img.bit_depth == 8
    assert np.abs(img.pixels.astype(int) - grey).max() <= 2


def test_rgb_channels_weighted(tmp_path: Path) -> None:
    arr = np.zeros((4, 6, 3), np.uint8)
    arr[..., 1] = 200  # pure green
    img = load_image(_save(arr, tmp_path / "green.png"))
    assert 110 <= int(img.pixels[0, 0]) <= 125  # ~0.587 * 200


def test_to_pil_and_rgb(tmp_path: Path) -> None:
    img = load_image(_save(_ramp16(), tmp_path / "r.png"))
    pil = img.to_pil()
    assert pil.mode == "L" and pil.size == (37, 23)
    assert np.array_equal(np.asarray(pil), img.pixels)
    rgb = img.to_rgb()
    assert rgb.mode == "RGB" and rgb.size == (37, 23)
    assert np.array_equal(np.asarray(rgb)[..., 2], img.pixels)


def test_path_may_be_str_and_extension_may_lie(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "actually_png.jpg"
    Image.fromarray(arr).save(path, format="PNG")
    assert np.array_equal(load_image(str(path)).pixels, arr)


# ---------------------------------------------------------------- DICOM


def _rg1_path() -> str:
    """The real radiograph from pydicom-data; skips when pydicom-data is not installed."""
    pytest.importorskip("pydicom")
    pytest.importorskip("data_store", reason="pydicom-data not installed")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    if not path:  # pragma: no cover - depends on the install
        pytest.skip("RG1_UNCR.dcm unavailable (pydicom-data not installed?)")
    return str(path)


def test_real_monochrome1_radiograph() -> None:
    path = _rg1_path()
    import pydicom

    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    raw = ds.pixel_array
    img = load_image(path)
    assert img.inverted is True
    assert (img.width, img.height) == (int(ds.Columns), int(ds.Rows)) == (1841, 1955)
    assert img.pixels.shape == (img.height, img.width) == raw.shape
    assert img.bit_depth == int(ds.BitsStored) == 15
    assert img.pixels.dtype == np.uint8
    assert img.pixels.min() == 0 and img.pixels.max() == 255
    assert _corr(img.pixels[::4, ::4], raw[::4, ::4]) < -0.9  # inversion is real
    assert read_image_size(path) == (1841, 1955)


def test_synthetic_monochrome2_dicom(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def write(path: Path, arr: np.ndarray, *, pixels: bool = True, **extra: object) -> Path:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "DX"
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        for key, value in extra.items():
            setattr(ds, key, value)
        if pixels:
            ds.PixelData = arr.astype("<u2").tobytes()
        ds.save_as(path, enforce_file_format=True)
        return path

    arr = _ramp16(37, 23, 100, 4000)
    path = write(tmp_path / "mono2.dcm", arr)
    img = load_image(path)
    assert img.inverted is False
    assert (img.width, img.height) == (37, 23) and img.pixels.shape == (23, 37)
    assert img.bit_depth == 12
    assert _corr(img.pixels, arr) > 0.99
    assert img.pixels.min() == 0 and img.pixels.max() == 255
    assert read_image_size(path) == (37, 23)

    # Recognised by the DICM preamble without the .dcm extension.
    renamed = tmp_path / "mono2.bin"
    renamed.write_bytes(path.read_bytes())
    assert np.array_equal(load_image(renamed).pixels, img.pixels)

    # A negative RescaleSlope flips the intensities.
    flipped = load_image(write(tmp_path / "neg.dcm", arr, RescaleSlope=-1, RescaleIntercept=0))
    assert _corr(flipped.pixels, arr) < -0.99 and flipped.inverted is False

    # MONOCHROME1 with the same data inverts.
    m1 = load_image(write(tmp_path / "m1.dcm", arr, PhotometricInterpretation="MONOCHROME1"))
    assert m1.inverted is True
    assert np.array_equal(m1.pixels, 255 - img.pixels)

    # No pixel data -> ImageLoadError, but the header size is still readable.
    nopix = write(tmp_path / "nopix.dcm", arr, pixels=False)
    with pytest.raises(ImageLoadError, match="no pixel data") as info:
        load_image(nopix)
    assert str(nopix) in str(info.value)
    assert read_image_size(nopix) == (37, 23)

    # Truncated pixel data -> ImageLoadError.
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(ImageLoadError) as info:
        load_image(cut)
    assert str(cut) in str(info.value)


# ---------------------------------------------------------------- errors


def _assert_load_error(path: Path, fragment: str) -> None:
    for fn in (load_image, read_image_size):
        with pytest.raises(ImageLoadError) as info:
            fn(path)
        err = info.value
        assert isinstance(err, RiclError) and isinstance(err, OSError)
        assert str(path) in str(err) and err.path == str(path)
        assert fragment in str(err).lower(), str(err)


def test_missing_directory_and_empty(tmp_path: Path) -> None:
    _assert_load_error(tmp_path / "nope.png", "not found")
    _assert_load_error(tmp_path, "directory")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _assert_load_error(empty, "empty")


def test_random_bytes_png_and_dcm(tmp_path: Path) -> None:
    junk = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for name in ("junk.png", "junk.dcm"):
        path = tmp_path / name
        path.write_bytes(junk)
        _assert_load_error(path, "")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_files(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, (64, 80), dtype=np.uint8)  # noisy: large compressed payload
    full = _save(arr, tmp_path / f"full{suffix}")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert read_image_size(cut) == (80, 64)  # header only: still readable
    with pytest.raises(ImageLoadError) as info:
        load_image(cut)
    assert str(cut) in str(info.value)
    assert "truncated" in str(info.value).lower()
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_unsupported_mode(tmp_path: Path) -> None:
    path = tmp_path / "hsv.tif"
    Image.new("CMYK", (4, 3)).save(path)  # CMYK is supported: converted
    assert load_image(path).pixels.shape == (3, 4)
    lab = tmp_path / "lab.tif"
    Image.new("LAB", (4, 3)).save(lab)
    with pytest.raises(ImageLoadError, match="unsupported image mode"):
        load_image(lab)


# ---------------------------------------------------------------- windowing


@settings(max_examples=60, deadline=None)
@given(
    raw=hnp.arrays(
        dtype=np.int64,
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
        elements=st.integers(-30000, 65535),
    ),
    dtype=st.sampled_from([np.uint16, np.int32, np.float32]),
    low=st.floats(0, 49),
    width=st.floats(0.5, 51),
    enabled=st.booleans(),
)
def test_window_is_uint8_and_monotone(
    raw: np.ndarray, dtype: type, low: float, width: float, enabled: bool
) -> None:
    values = (np.abs(raw) if dtype is np.uint16 else raw).astype(dtype)
    out = window_to_uint8(values, WindowConfig(low, low + width, enabled))
    assert out.dtype == np.uint8 and out.shape == values.shape
    order = np.argsort(values.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)
    if values.min() == values.max():
        assert not out.any()
    elif not enabled:
        assert out.min() == 0 and out.max() == 255


def test_large_image_percentiles_subsampled_deterministically() -> None:
    rng = np.random.default_rng(3)
    big = rng.integers(0, 4096, (1200, 1100), dtype=np.uint16)
    a, b = window_to_uint8(big), window_to_uint8(big.copy())
    assert np.array_equal(a, b)
    assert a.min() == 0 and a.max() == 255


def test_window_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        window_to_uint8(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError):
        window_to_uint8(np.array([[1.0, np.nan]]))


def test_import_is_light() -> None:
    code = (
        "import sys, ricl.data.images, PIL.ImageFile as F;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'pydicom' not in sys.modules, 'pydicom imported eagerly';"
        "assert F.LOAD_TRUNCATED_IMAGES is False"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
