"""The one dataset spec (``ricl.data.spec``): every config that names data holds one, and
every reader call of the apps goes through ``DatasetSpec.open``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from ricl.config import ConfigError
from ricl.data.registry import load_dataset
from ricl.data.spec import DatasetSpec, SplitSpec
from ricl.errors import DatasetFormatError, UnknownNameError

from .release_fixture import write_release

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def release(tmp_path):
    return write_release(tmp_path / "release")


def test_open_reads_what_load_dataset_reads_with_the_spec_options(release):
    spec = DatasetSpec(name="padchest-gr", root=str(release))
    assert [i.instance_id for i in spec.open().instances] == [
        i.instance_id for i in load_dataset("padchest-gr", release).instances
    ]
    unboxed = DatasetSpec(name="padchest-gr", root=str(release), keep_unboxed=True)
    assert len(unboxed.open().instances) == len(spec.open().instances) + 1
    # a call's override wins over the spec, for that call only
    assert len(unboxed.open(keep_unboxed=False).instances) == len(spec.open().instances)
    assert spec.open(read_image_sizes=False).instances[0].image_size is None
    assert spec.open().instances[0].image_size is not None


def test_bad_specs_fail_with_the_name_or_key(release):
    with pytest.raises(UnknownNameError, match="padchest-gr"):
        DatasetSpec(name="padchest", root=str(release)).open()
    with pytest.raises(ValueError, match="unknown reader option.*'keep_unboxd'"):
        DatasetSpec(name="padchest-gr", root=str(release)).open(keep_unboxd=True)
    with pytest.raises(ValueError, match="reference"):
        DatasetSpec(name="padchest-gr", root=str(release), reference="second")
    with pytest.raises(ValueError, match="extra_forbidden|Extra inputs"):
        DatasetSpec(name="padchest-gr", root=str(release), splitt="test")


def test_split_spec_selects_and_limits(release):
    spec = SplitSpec(name="padchest-gr", root=str(release), split="train")
    assert len(spec.instances()) == 2
    assert len(spec.model_copy(update={"limit": 1}).instances()) == 1
    ds = spec.open()
    assert spec.instances(ds)[0] is ds.select("train")[0]  # no second read when given
    with pytest.raises(DatasetFormatError, match=r"split 'test' has no grounding.*splits here: train"):
        spec.model_copy(update={"split": "test"}).instances()


def test_every_config_naming_data_holds_the_one_spec(tmp_path, release):
    from ricl_apps.evaluation.run_config import EvalConfig
    from ricl_apps.train.encoder import TrainConfig
    from ricl_apps.train.vlm.config import SourceSpec

    assert EvalConfig.model_fields["dataset"].annotation is SplitSpec
    assert TrainConfig.model_fields["dataset"].annotation is DatasetSpec
    assert issubclass(SourceSpec, DatasetSpec)
    # the same keys mean the same thing in a training recipe
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"dataset": {"name": "padchest-gr", "root": str(release),
                                                  "keep_unboxed": True}}))  # fmt: skip
    cfg = TrainConfig.from_file(recipe)
    assert len(cfg.dataset.open().instances) == 3
    recipe.write_text(yaml.safe_dump({"dataset": {"root": str(release), "on_eror": "skip"}}))
    with pytest.raises(ConfigError, match=r"recipe.yaml.*dataset.on_eror"):
        TrainConfig.from_file(recipe)


def _calls(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
    ]


def test_apps_read_data_only_through_the_spec():
    """No app calls ``load_dataset`` (or a reader) itself: one path, one set of options."""
    offenders = []
    for path in sorted((REPO / "ricl_apps").rglob("*.py")):
        for fn in ("load_dataset", "load_padchest_gr", "load_ms_cxr"):
            offenders += [f"{path.relative_to(REPO)}:{n} {fn}" for n in _calls(path, fn)]
    assert offenders == []
