"""One reader contract: every registered dataset takes the same options, validated in one place."""

import itertools
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from ricl.data.dataset import ReaderOptions, read_records
from ricl.data.phantom import write_phantom_release
from ricl.data.registry import DATASETS, load_dataset
from ricl.errors import DatasetFormatError

from .ms_cxr_fixture import PATH, _row, _write
from .release_fixture import records, write_release


def _ms_cxr(tmp_path: Path, broken: bool = False) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [
        _row(),
        _row(label_text="cardiomegaly", category_name="Cardiomegaly", x="300", w="400"),
        _row(dicom_id="b", path="files/p11/p11000011/s52/b.jpg", split="train"),
    ]
    if broken:
        rows[0] = _row(x="900", w="200")  # box outside the 1000x800 image
    root = _write(tmp_path, rows)
    images = tmp_path / "mimic"
    for rel in (PATH, "files/p11/p11000011/s52/b.jpg"):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (1000, 800)).save(images / rel)
    return root, images


def _padchest(tmp_path: Path, broken: bool = False) -> tuple[Path, Path | None]:
    recs = records()
    if broken:
        recs[1]["findings"][1]["boxes"] = [[0.2, 0.2, 1.3, 0.3]]
    return write_release(tmp_path / "release", recs), None


def _phantom(tmp_path: Path, broken: bool = False) -> tuple[Path, Path | None]:
    root = tmp_path / "phantom"
    write_phantom_release(root, 6, seed=0, size=64)
    if broken:
        (reports,) = root.glob("grounded_reports_*.json")
        recs = json.loads(reports.read_text())
        recs[0].pop("ImageID")
        reports.write_text(json.dumps(recs))
    return root, None


WRITERS = {"padchest-gr": _padchest, "phantom": _phantom, "ms-cxr": _ms_cxr}


def test_every_registered_dataset_has_a_fixture():
    assert set(DATASETS.names()) == set(WRITERS)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_dataset_accepts_every_option(tmp_path, name):
    root, images = WRITERS[name](tmp_path)
    default = load_dataset(name, root, images)
    assert len(default) > 0 and default.name == name and default.skipped == []
    for keep, ref, on_error, sizes in itertools.product(
        (False, True), ("primary", "both"), ("raise", "skip"), (False, True)
    ):
        ds = load_dataset(
            name, root, images, keep_unboxed=keep, reference=ref, on_error=on_error,
            read_image_sizes=sizes,
        )  # fmt: skip
        assert len(ds) >= len(default) if keep else len(ds) > 0
        assert ds.skipped == []
        if sizes:
            assert all(i.image_size is not None for i in ds)
    # the same options, as the contract, work through the reader itself too
    opts = ReaderOptions(keep_unboxed=True, on_error="skip", read_image_sizes=False)
    assert len(DATASETS.get(name)(root, images, name=name, **opts.as_kwargs())) > 0


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_skip_vs_raise_on_a_broken_record(tmp_path, name, caplog):
    root, images = WRITERS[name](tmp_path, broken=True)
    good_root, good_images = WRITERS[name](tmp_path / "good")
    with pytest.raises(DatasetFormatError) as err:
        load_dataset(name, root, images)
    message = str(err.value)
    assert ("record" in message or "line" in message) and (
        "StudyID" in message or "dicom_id" in message or "record 0" in message
    )
    with caplog.at_level(logging.WARNING, logger="ricl.data.dataset"):
        ds = load_dataset(name, root, images, on_error="skip")
    assert len(ds.skipped) == 1 and ds.skipped[0].reason == message
    assert len(ds.studies) == len(load_dataset(name, good_root, good_images).studies) - 1
    assert "skipped 1 bad record" in caplog.text


def test_unknown_option_is_named_with_the_known_ones(tmp_path):
    root, _ = _padchest(tmp_path)
    with pytest.raises(ValueError, match=r"unknown reader option\(s\) 'keep_unboxd'") as err:
        load_dataset("padchest-gr", root, keep_unboxd=True)
    for known in ("keep_unboxed", "reference", "on_error", "read_image_sizes"):
        assert known in str(err.value)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        load_dataset("padchest-gr", root, on_error="ignore")
    with pytest.raises(ValueError, match="reference must be"):
        load_dataset("ms-cxr", root, reference="second")


def test_keep_unboxed_changes_counts_as_documented(tmp_path):
    pc, _ = _padchest(tmp_path)
    # the hand-written release has one positive finding without boxes (study 2001)
    assert (
        len(load_dataset("padchest-gr", pc, keep_unboxed=True))
        == len(load_dataset("padchest-gr", pc)) + 1
    )
    # MS-CXR: every phrase has boxes, so keep_unboxed changes nothing
    ms, images = _ms_cxr(tmp_path / "ms")
    assert (
        len(load_dataset("ms-cxr", ms, images, keep_unboxed=True))
        == len(load_dataset("ms-cxr", ms, images))
        == 3
    )


def test_ms_cxr_reference_and_image_sizes(tmp_path):
    root, images = _ms_cxr(tmp_path)
    primary = load_dataset("ms-cxr", root, images)
    both = load_dataset("ms-cxr", root, images, reference="both")
    assert [i.boxes for i in both] == [i.boxes for i in primary]
    with pytest.raises(ValueError, match="reference='extra'.*MS-CXR"):
        load_dataset("ms-cxr", root, images, reference="extra")
    Image.new("L", (500, 400)).save(images / PATH)  # a resized copy: the boxes would be wrong
    with pytest.raises(DatasetFormatError, match=r"is 500x400 but the CSV says 1000x800"):
        load_dataset("ms-cxr", root, images)
    assert len(load_dataset("ms-cxr", root, images, read_image_sizes=False)) == 3
    skipped = load_dataset("ms-cxr", root, images, on_error="skip")
    assert [s.image_id for s in skipped.studies] == ["b"] and len(skipped.skipped) == 1
    (images / PATH).unlink()
    with pytest.raises(DatasetFormatError, match="not found"):
        load_dataset("ms-cxr", root, images)


def test_read_records_raises_or_skips():
    def parse(where, value):
        if value < 0:
            raise DatasetFormatError(f"f.json {where}: negative")
        return value * 2

    recs = [("record 0", 1), ("record 1", -1), ("record 2", 3)]
    with pytest.raises(DatasetFormatError, match="record 1: negative"):
        read_records(recs, parse, "raise", "f.json")
    parsed, skipped = read_records(recs, parse, "skip", "f.json")
    assert parsed == [2, 6] and [s.where for s in skipped] == ["record 1"]
    with pytest.raises(ZeroDivisionError):  # bugs are not records to skip
        read_records([("r", 0)], lambda w, v: 1 / v, "skip", "f.json")
