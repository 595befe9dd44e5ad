"""The encoder commands end to end on a tiny phantom release: train, evaluate, ablate."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from ricl.data.phantom import write_phantom_release
from ricl.encoders.lofi.config import tiny_config
from ricl_apps.cli import app
from ricl_apps.train.ablation import AblationConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("ph") / "release"
    write_phantom_release(root, 50, seed=2, size=96)
    return root


def _recipe(tmp_path, release, **extra):
    data = {"dataset": {"name": "phantom", "root": str(release)}, "steps": 4, "batch_size": 8, "log_every": 2,
            "max_eval_studies": 5, "model": tiny_config(64).model_dump(), **extra}  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_train_then_eval_retrieval(tmp_path, release):
    recipe = _recipe(tmp_path, release, out_dir=str(tmp_path / "run"))
    r = runner.invoke(
        app, ["train-encoder", "--config", str(recipe), "--set", "model.weights.caption=0"]
    )
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["weights"]["caption"] == 0.0  # the override reached the run
    r = runner.invoke(app, ["eval-retrieval", "--encoder", str(tmp_path / "run" / "model"), "--dataset", "phantom",
                            "--root", str(release), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.output)
    assert 0.0 <= metrics["loc_P@5"] <= 1.0 and metrics["n_gallery_images"] > 0


def test_unknown_config_key_is_refused(tmp_path, release):
    recipe = _recipe(tmp_path, release, out_dir=str(tmp_path / "x"), bogus=1)
    r = runner.invoke(app, ["train-encoder", "--config", str(recipe)])
    assert r.exit_code != 0 and "bogus" in str(r.exception)


def test_ablation_trains_every_cell_once_and_writes_the_table(tmp_path, release):
    train = yaml.safe_load(_recipe(tmp_path, release).read_text())
    cfg_path = tmp_path / "ablation.yaml"
    out = tmp_path / "abl"
    cfg_path.write_text(yaml.safe_dump({
        "out_dir": str(out), "seeds": [0, 1], "metrics": ["loc_P@5", "t2i_R@5"], "train": train,
        "arms": {"sigmoid": {"model.weights.caption": 0, "model.weights.location": 0}, "lofi": {}},
    }))  # fmt: skip
    cfg = AblationConfig.from_file(cfg_path)
    assert cfg.cell("sigmoid", 1).model.weights.location == 0.0 and cfg.cell("lofi", 1).seed == 1
    r = runner.invoke(app, ["ablate-encoder", "--config", str(cfg_path)])
    assert r.exit_code == 0, r.output
    table = (out / "results.md").read_text()
    assert "| sigmoid |" in table and "| lofi |" in table and "±" in table
    stamp = (out / "lofi" / "seed1" / "metrics.json").stat().st_mtime_ns
    again = runner.invoke(app, ["ablate-encoder", "--config", str(cfg_path)])
    assert again.exit_code == 0
    assert (
        out / "lofi" / "seed1" / "metrics.json"
    ).stat().st_mtime_ns == stamp  # done cells are not retrained
    # report-only tabulates what is done and trains nothing, even for a new seed
    r = runner.invoke(
        app,
        ["ablate-encoder", "--config", str(cfg_path), "--set", "seeds=[0, 1, 2]", "--report-only"],
    )
    assert r.exit_code == 0, r.output
    assert not (out / "lofi" / "seed2").exists()
    assert "| lofi | 2 |" in (out / "results.md").read_text()
