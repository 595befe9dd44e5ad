import csv
import zipfile

import pytest

from ricl.data.padchest_gr import load_padchest_gr, parse_list_string
from ricl.data.registry import load_dataset
from ricl.data.stats import dataset_stats
from ricl.errors import DatasetFormatError, UnknownNameError
from ricl.types import Box

from .release_fixture import SIZES, records, rows, write_release


@pytest.fixture
def release(tmp_path):
    return write_release(tmp_path / "release")


def test_reads_release_into_studies_and_instances(release):
    ds = load_padchest_gr(release)
    assert [s.study_id for s in ds.studies] == ["1001", "1002", "2001"]
    s2 = ds.studies[1]
    assert (s2.patient_id, s2.split, s2.image_size) == ("P1", "train", SIZES["1002_b.png"])
    assert (s2.previous_study_id, s2.previous_image_id) == ("1001", "1001_a.png")
    assert s2.metadata["PatientSex_DICOM"] == "F" and "label" not in s2.metadata
    assert ds.studies[0].is_normal and not s2.is_normal
    neg = s2.findings[2]
    assert (neg.abnormal, neg.boxes, neg.labels, neg.label_group) == (False, (), (), None)
    # 2 boxed positive findings; the unboxed cardiomegaly is not an instance by default
    assert [i.instance_id for i in ds.instances] == ["1002/0", "1002/1"]
    eff, nod = ds.instances
    assert eff.boxes == (Box(0.05, 0.7, 0.3, 0.9), Box(0.7, 0.72, 0.95, 0.9))
    assert (eff.phrase, eff.label_group, eff.locations) == (
        "Bilateral pleural effusion.",
        "pleural",
        ("bilateral",),
    )
    # locations fall back to the CSV when the JSON finding has none
    assert nod.locations == ("right upper lobe",) and nod.label_group == "nodule/mass"
    assert nod.extra_boxes == (Box(0.21, 0.19, 0.31, 0.29),)
    assert ds.image_file(nod).name == "1002_b.png" and ds.image_file(nod).is_file()
    assert [i.instance_id for i in ds.select("train")] == ["1002/0", "1002/1"]
    assert ds.select("test") == [] and ds.splits == ["train", "test"]


def test_options_keep_unboxed_and_reference(release):
    ds = load_padchest_gr(release, keep_unboxed=True)
    card = [i for i in ds.instances if i.study_id == "2001"]
    assert len(card) == 1 and card[0].boxes == () and card[0].label_group == "cardiac"
    extra = load_padchest_gr(release, reference="extra")
    assert [(i.instance_id, len(i.boxes)) for i in extra.instances] == [("1002/1", 1)]
    both = load_padchest_gr(release, reference="both")
    assert [len(i.boxes) for i in both.instances] == [2, 2]


def test_zipped_csv_and_no_images(tmp_path):
    root = write_release(tmp_path / "r", images=False)
    csv_path = root / "master_table.csv"
    with zipfile.ZipFile(root / "master_table.csv.zip", "w") as zf:
        zf.write(csv_path, "master_table.csv")
    csv_path.unlink()
    ds = load_padchest_gr(root)
    assert ds.images_root is None and all(s.image_size is None for s in ds.studies)
    assert len(ds.instances) == 2
    with pytest.raises(DatasetFormatError, match="no images folder"):
        ds.image_file(ds.instances[0])


def _bad(tmp_path, mutate, **kw):
    recs = records()
    mutate(recs)
    return load_padchest_gr(write_release(tmp_path / "bad", recs), **kw)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r[1]["findings"][1].__setitem__("boxes", [[0.2, 0.2, 1.3, 0.3]]),
         r"StudyID 1002\) finding 1: boxes\[0\].*x_max=1.3 is outside"),
        (lambda r: r[1]["findings"][0].__setitem__("boxes", [[0.4, 0.2, 0.3, 0.3]]),
         r"StudyID 1002\) finding 0: boxes\[0\].*must be < x_max"),
        (lambda r: r[1]["findings"][0].pop("abnormal"), r"StudyID 1002\) finding 0: missing required key 'abnormal'"),
        (lambda r: r[0].pop("ImageID"), r"record 0: missing required key 'ImageID'"),
        (lambda r: r[2].__setitem__("StudyID", "999"), r"StudyID 999\): no row in master_table.csv"),
        (lambda r: r[2].__setitem__("ImageID", "../../etc/x.png"), "escapes the images folder"),
        (lambda r: r[2].__setitem__("ImageID", "missing.png"), "missing.png not found"),
        (lambda r: r.append(dict(r[0])), "duplicate StudyID"),
        (lambda r: r[1]["findings"][1].__setitem__("labels", "nodule"), "'labels' must be a list of strings"),
    ],
)  # fmt: skip
def test_bad_records_name_the_record(tmp_path, mutate, needle):
    with pytest.raises(DatasetFormatError, match=needle):
        _bad(tmp_path, mutate)


def test_skip_is_counted_never_silent(tmp_path):
    ds = _bad(
        tmp_path,
        lambda r: r[1]["findings"][1].__setitem__("boxes", [[0.2, 0.2, 1.3, 0.3]]),
        on_error="skip",
    )
    assert [s.study_id for s in ds.studies] == ["1001", "2001"]
    assert len(ds.skipped) == 1 and "StudyID 1002" in ds.skipped[0].reason
    assert dataset_stats(ds)["skipped"][0]["reason"] == ds.skipped[0].reason


def test_csv_problems(tmp_path):
    bad_rows = rows()
    bad_rows[2]["split"] = "test"  # same study in two splits
    with pytest.raises(DatasetFormatError, match="line 4.*split 'train' and 'test'"):
        load_padchest_gr(write_release(tmp_path / "a", csv_rows=bad_rows))
    bad_rows = rows()
    bad_rows[0]["split"] = "holdout"
    with pytest.raises(DatasetFormatError, match="unknown split 'holdout'"):
        load_padchest_gr(write_release(tmp_path / "b", csv_rows=bad_rows))
    root = write_release(tmp_path / "c")
    with (root / "master_table.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["StudyID", "ImageID"], ["1", "a.png"]])
    with pytest.raises(DatasetFormatError, match="missing columns"):
        load_padchest_gr(root)
    (root / "master_table.csv").unlink()
    with pytest.raises(DatasetFormatError, match="master_table.csv .*not found"):
        load_padchest_gr(root)
    with pytest.raises(DatasetFormatError, match="no grounded_reports"):
        load_padchest_gr(tmp_path)


def test_parse_list_string_is_safe():
    assert parse_list_string("['pleural', 'right']", "x") == ["pleural", "right"]
    assert parse_list_string("", "x") == [] and parse_list_string("nan", "x") == []
    assert parse_list_string("cardiac", "x") == ["cardiac"]
    with pytest.raises(DatasetFormatError, match="cannot read"):
        parse_list_string("[__import__('os').system('echo hi')]", "x")
    with pytest.raises(DatasetFormatError, match="list of strings"):
        parse_list_string("[1, 2]", "x")


def test_stats_counts(release):
    stats = dataset_stats(load_padchest_gr(release))
    train = stats["splits"]["train"]
    assert train == {
        "studies": 2, "patients": 1, "normal_studies": 1, "findings": 4, "positive_findings": 2,
        "grounding_instances": 2, "boxes": 3,
        "per_label_group": {"nodule/mass": {"boxes": 1, "instances": 1}, "pleural": {"boxes": 2, "instances": 1}},
    }  # fmt: skip
    assert stats["splits"]["test"]["grounding_instances"] == 0
    assert stats["splits"]["all"]["studies"] == 3 and stats["splits"]["all"]["patients"] == 2


def test_registry_by_name_and_suggestion(release):
    assert len(load_dataset("padchest-gr", release).instances) == 2
    assert load_dataset("phantom", release).name == "phantom"
    with pytest.raises(UnknownNameError, match="Did you mean 'padchest-gr'"):
        load_dataset("padchest", release)
