"""The one configuration path (ricl.config): overrides, one-line errors naming the file and
the key, every shipped config valid, and every command exiting 2 with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ricl.agent_config import AgentConfig, AgentConfigError
from ricl.config import ConfigError, apply_overrides, parse_overrides, read_yaml_mapping

ROOT = Path(__file__).resolve().parents[1]


def test_overrides_parse_as_yaml_and_never_modify_their_input():
    assert parse_overrides(["k=5", "a.b=x", "xs=[1, 2]", "none="]) == {
        "k": 5, "a.b": "x", "xs": [1, 2], "none": None}  # fmt: skip
    data = {"agent": {"k": 3, "backend_options": {"model": "m"}}}
    out = apply_overrides(data, ["agent.k=5", "agent.backend_options.base_url=http://h:1/v1",
                                 "new.deep.key=1"])  # fmt: skip
    assert out["agent"] == {"k": 5, "backend_options": {"model": "m", "base_url": "http://h:1/v1"}}
    assert out["new"] == {"deep": {"key": 1}}
    assert data == {"agent": {"k": 3, "backend_options": {"model": "m"}}}
    assert apply_overrides(data, {"agent.k": 7})["agent"]["k"] == 7  # the mapping form


@pytest.mark.parametrize("bad, match", [
    (["nonsense"], "must look like key=value"), (["=1"], "must look like key=value"),
    (["k=[1, 2"], "not YAML"),
])  # fmt: skip
def test_malformed_overrides_raise_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides({}, bad)


def test_setting_below_a_scalar_is_refused():
    with pytest.raises(ConfigError, match="'k' is not a mapping"):
        apply_overrides({"k": 3}, ["k.x=1"])


def test_validation_error_is_one_line_naming_the_file_and_the_dotted_key(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text("strategy: zero-shot\nk: -1\nstrategy_options: {nope: 1}\n")
    with pytest.raises(AgentConfigError) as info:
        AgentConfig.from_yaml(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: invalid agent configuration: ")
    assert "k: Input should be greater than or equal to 0 (got -1)" in msg
    assert "strategy_options.nope: Extra inputs are not permitted" in msg
    assert isinstance(info.value, ConfigError)


def test_a_file_that_is_not_a_mapping_names_itself(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=f"{path}: a configuration is a YAML mapping"):
        read_yaml_mapping(path)


def _shipped_configs():
    for sub in ("configs", "experiments", "encoder", "vlm"):
        yield from sorted((ROOT / "eval" / sub).glob("*.yaml"))


@pytest.mark.parametrize("path", list(_shipped_configs()), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_validates(path):
    from ricl_apps.evaluation.experiment import ExperimentConfig
    from ricl_apps.evaluation.run_config import EvalConfig
    from ricl_apps.train.ablation import AblationConfig
    from ricl_apps.train.encoder import TrainConfig
    from ricl_apps.train.vlm.config import VLMTrainConfig

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if "arms" in data and "train" in data:
        AblationConfig.from_file(path)
    elif "arms" in data:
        ExperimentConfig.from_yaml(path)
    elif "agent" in data:
        EvalConfig.from_yaml(path)
    elif path.parent.name == "vlm":
        VLMTrainConfig.from_yaml(path)
    else:
        TrainConfig.from_file(path)


def _ricl(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ricl", *args], capture_output=True, text=True, check=False,
                          cwd=cwd, timeout=120)  # fmt: skip


@pytest.mark.parametrize("argv, names", [
    (["train-encoder", "--config", "eval/encoder/phantom_tiny.yaml", "--set", "nonsense=1"],
     "nonsense"),
    (["train-encoder", "--config", "eval/encoder/phantom_tiny.yaml", "--set", "steps=-3"],
     "steps"),
    (["eval", "--config", "eval/configs/phantom_knn.yaml", "--set", "agent.k=-1"], "agent.k"),
    (["eval", "--config", "eval/configs/phantom_knn.yaml", "--set", "bogus"], "key=value"),
    (["ablate-encoder", "--config", "eval/encoder/ablation_phantom.yaml", "--set", "oops.x=1"],
     "oops"),
    (["ablate-encoder", "--config", "eval/encoder/ablation_phantom.yaml", "--set",
      "train.nonsense=1"], "arm "),  # a cell's TrainConfig, checked before any training
    (["ablate-encoder", "--config", "eval/encoder/ablation_phantom.yaml", "--set",
      "train.dataset.on_eror=skip"], "dataset.on_eror"),
])  # fmt: skip
def test_bad_config_on_the_command_line_is_one_line_and_exit_2(argv, names):
    r = _ricl(*argv)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], r.stderr
