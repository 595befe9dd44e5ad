
import pytest

from ricl.data.ms_cxr import load_ms_cxr
from ricl.data.registry import load_dataset
from ricl.data.stats import dataset_stats
from ricl.errors import DatasetFormatError
from ricl.types import Box
from tests.ms_cxr_fixture import PATH, _row, _write  # noqa: F401


def test_groups_rows_into_instances_and_normalizes(tmp_path):
    root = _write(tmp_path, [
        _row(),
        _row(x="600", y="420", w="150", h="80"),
        _row(label_text="cardiomegaly", category_name="Cardiomegaly", x="300", y="300", w="400", h="300"),
        _row(dicom_id="ffff", path="files/p11/p11000011/s5/ffff.jpg", split="train", label_text="effusion",
             category_name="Pleural effusion", image_width="500", image_height="500", x="0", y="0", w="500", h="250"),
    ])  # fmt: skip
    ds = load_ms_cxr(root)
    assert len(ds.studies) == 2 and len(ds.instances) == 3
    pn = ds.instances[0]
    assert pn.phrase == "left basal pneumonia" and pn.label_group == "Pneumonia"
    assert pn.boxes == (Box(0.1, 0.5, 0.3, 0.625), Box(0.6, 0.525, 0.75, 0.625))
    assert (pn.patient_id, pn.study_id, pn.split, pn.image_size) == (
        "p10000032",
        "s50414267",
        "validation",
        (1000, 800),
    )
    assert ds.instances[2].boxes == (Box(0.0, 0.0, 1.0, 0.5),)
    assert dataset_stats(ds)["splits"]["validation"]["boxes"] == 3
    assert load_dataset("ms-cxr", root / "MS_CXR_Local_Alignment_v1.1.0.csv").name == "ms-cxr"


def test_bad_rows_name_the_line(tmp_path):
    with pytest.raises(DatasetFormatError, match=r"line 3 .*does not fit the 1000x800 image"):
        load_ms_cxr(_write(tmp_path, [_row(), _row(x="900", w="200")]))
    with pytest.raises(DatasetFormatError, match=r"line 2 .*'w' = 'abc' is not a number"):
        load_ms_cxr(_write(tmp_path, [_row(w="abc")]))
    with pytest.raises(DatasetFormatError, match=r"line 3 .*image size differs"):
        load_ms_cxr(_write(tmp_path, [_row(), _row(image_width="999")]))
    ds = load_ms_cxr(
        _write(tmp_path, [_row(x="900", w="200"), _row(dicom_id="b", path="p1/s2/b.jpg")]),
        on_error="skip",
    )
    assert [s.image_id for s in ds.studies] == ["b"] and len(ds.skipped) == 1
    with pytest.raises(DatasetFormatError, match="no MS_CXR_Local_Alignment"):
        load_ms_cxr(tmp_path / "nowhere")
