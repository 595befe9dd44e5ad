"""``ricl train-encoder`` under torchrun: 2 gloo ranks on CPU against 1 process.

The runs are real subprocesses (``python -m torch.distributed.run ... -m ricl_apps.cli``),
one thread each, on the tiny phantom release of the other trainer tests. Measured on a
2-core machine (fp32, 6 steps of a global batch of 8): the logged loss terms of 1 and 2
processes differ by <= 2e-7 relative; the tests allow 1e-5.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ricl.config import ConfigError
from ricl.data.phantom import write_phantom_release
from ricl.encoders.lofi.config import tiny_config
from ricl_apps.train import distributed as D

ROOT = Path(__file__).resolve().parents[1]
LOSS_RTOL = 1e-5  # measured <= 2e-7 (fp32)
# Weights: everything within WEIGHT_ATOL except the attention key biases, whose exact gradient
# is 0 (a softmax ignores a per-query constant): Adam turns their rounding noise into steps of
# up to lr, differently in each run, so they are only bounded by lr * steps.
WEIGHT_ATOL = 2e-5  # measured 2.4e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    path = [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1", **extra}


def _torchrun(n: int, *args: str, module: str = "ricl_apps.cli") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n),
           "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", module, *args]  # fmt: skip
    return subprocess.run(
        cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )


def _single(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ricl_apps.cli", *args]
    return subprocess.run(
        cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _losses(run: Path) -> dict[int, dict[str, float]]:
    rows = [r for r in _log(run) if "loss" in r]
    return {r["step"]: {k: v for k, v in r.items() if k.endswith("loss")} for r in rows}


def _assert_same_curve(a: Path, b: Path) -> float:
    la, lb = _losses(a), _losses(b)
    assert la.keys() == lb.keys() == set(range(1, 7))
    worst = 0.0
    for step in la:
        assert la[step].keys() == lb[step].keys()
        for k, v in la[step].items():
            assert lb[step][k] == pytest.approx(v, rel=LOSS_RTOL), (step, k)
            worst = max(worst, abs(lb[step][k] - v) / abs(v))
    return worst


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    write_phantom_release(tmp / "release", 50, seed=2, size=96)
    data = {"dataset": {"name": "phantom", "root": str(tmp / "release")}, "steps": 6, "batch_size": 8,
            "log_every": 1, "checkpoint_every": 3, "warmup_steps": 2, "max_eval_studies": 5,
            "model": tiny_config(64).model_dump()}  # fmt: skip
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def runs(recipe) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """The same recipe trained by 1 process and by 2 torchrun ranks."""
    out = {}
    for name, launch in (("one", _single), ("two", lambda *a: _torchrun(2, *a))):
        run = recipe.parent / name
        r = launch("train-encoder", "--config", str(recipe), "--set", f"out_dir={run}")
        assert r.returncode == 0, r.stderr[-3000:]
        out[name] = (run, r)
    return out


def test_two_ranks_follow_the_single_process_loss_curve(runs):
    worst = _assert_same_curve(runs["one"][0], runs["two"][0])
    assert worst < LOSS_RTOL


def test_two_ranks_end_with_the_single_process_weights(runs):
    from safetensors.torch import load_file

    a = load_file(str(runs["one"][0] / "model" / "model.safetensors"))
    b = load_file(str(runs["two"][0] / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        atol = 1e-3 * 6 if k.endswith("k_proj.bias") else WEIGHT_ATOL  # lr * steps: see above
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=atol, msg=k)


def test_only_rank_zero_writes_and_prints(runs):
    (one, _), (two, r2) = runs["one"], runs["two"]

    def tree(run: Path) -> set[str]:
        return {str(p.relative_to(run)) for p in run.rglob("*")}

    assert tree(two) == tree(one)
    steps = [r["step"] for r in _log(two)]
    assert steps == [1, 2, 3, 4, 5, 6, 6]  # each step logged once, then the final evaluation
    assert "eval" in _log(two)[-1]
    assert r2.stdout.count("model: ") == 1 and r2.stdout.count('"loc_P@5"') == 1
    m1, m2 = (json.loads((run / "metrics.json").read_text()) for run in (one, two))
    assert m1.keys() == m2.keys()


def test_resume_under_two_ranks_reproduces_the_curve(recipe, runs):
    run = recipe.parent / "resumed"
    args = ("train-encoder", "--config", str(recipe), "--set", f"out_dir={run}")
    r = _torchrun(2, *args, "--stop-after", "4")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped after step 4" in r.stdout and not (run / "model").exists()
    assert json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"] == 4
    r = _torchrun(2, *args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_curve(runs["one"][0], run)
    assert [r["step"] for r in _log(run)] == [1, 2, 3, 4, 5, 6, 6]


def test_indivisible_batch_size_fails_with_one_line(recipe, tmp_path):
    args = ("train-encoder", "--config", str(recipe), "--set", "batch_size=7",
            "--set", f"out_dir={tmp_path / 'x'}")  # fmt: skip
    want = "error: batch_size 7 is not divisible by the world size 2"
    # one rank as torchrun starts it: checked before joining the group, so it cannot hang
    cmd = [sys.executable, "-m", "ricl_apps.cli", *args]
    env = _env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and r.stderr.strip().startswith(want)
    assert len(r.stderr.strip().splitlines()) == 1
    # under torchrun: the first rank to fail prints that line and exits 2 (torchrun may stop
    # the other rank before it gets there), and torchrun itself exits non-zero
    r = _torchrun(2, *args)
    assert r.returncode != 0
    assert r.stderr.count(want) >= 1 and "exitcode  : 2" in r.stderr
    assert not (tmp_path / "x").exists()


def test_sharded_step_equals_the_global_batch_step(recipe, tmp_path):
    """float64, every loss on, batch-norm embeddings, 4 ranks of 2 samples (some without
    regions): loss means and averaged gradients equal the one-process global-batch step."""
    out = tmp_path / "grads.json"
    release = str(recipe.parent / "release")
    r = _torchrun(4, release, str(out), module="tests.ddp_worker")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert 0 in res["region_sizes"] and sum(res["region_sizes"]) > 0
    assert all(d < 1e-12 for d in res["loss_diff"].values()), res["loss_diff"]
    assert res["grad_rel_diff"] < 1e-10 and res["grad_presence_mismatch"] == []
    assert res["bn_stat_diff"] < 1e-12


# --- one process: the helpers are no-ops and the environment is checked ------------------


def test_without_torchrun_nothing_is_distributed(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx = D.init_distributed("cpu")
    assert not ctx.enabled and ctx.is_main and ctx.world_size == 1 and ctx.device == "cpu"
    assert D.mean_scalars(ctx, {"a": 1.5}) == {"a": 1.5} and D.all_same(ctx, 3)
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 2.0)
    D.average_gradients(ctx, [p])
    D.barrier(ctx)
    D.destroy(ctx)
    assert p.grad.tolist() == [2.0, 2.0]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not D.init_distributed("auto").enabled


@pytest.mark.parametrize(
    ("env", "device", "match"),
    [({"WORLD_SIZE": "2"}, "cpu", "RANK"), ({"WORLD_SIZE": "two"}, "cpu", "not an integer"),
     ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "cuda:1", "LOCAL_RANK")],
)  # fmt: skip
def test_a_bad_torchrun_environment_is_a_config_error(monkeypatch, env, device, match):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=match):
        D.init_distributed(device)


def test_collator_shards_are_slices_of_the_whole_batch(tmp_path):
    """Concatenating the shards' samples, targets and cross terms gives the whole batch."""
    from ricl.data import load_dataset
    from ricl.encoders.lofi.data import LoFiCollator, load_samples
    from ricl.encoders.tokenizer import build_word_tokenizer

    write_phantom_release(tmp_path / "r", 24, seed=4, size=96)
    ds = load_dataset("phantom", tmp_path / "r")
    samples = load_samples(ds.studies_of("train"), ds.image_file, 64)[:8]
    tok = build_word_tokenizer([s.report for s in samples] + ['Detect all instances of "".'])
    config = tiny_config(64)
    whole = LoFiCollator(config, tok, tok, seed=9)(samples)
    parts = [LoFiCollator(config, tok, tok, seed=9).shard(samples, r, 4, None) for r in range(4)]
    for key in ("pixel_values", "text_ids", "positives", "region_masks", "region_same"):
        assert torch.equal(torch.cat([p[key] for p in parts]), whole[key]), key
    for key in ("caption", "location"):  # same tokens; each shard pads to its own width
        rows = [ids[m.bool()].tolist() for p in parts for ids, m in zip(p[key][0], p[key][2])]
        assert rows == [ids[m.bool()].tolist() for ids, m in zip(whole[key][0], whole[key][2])]
    shard = parts[1]["shard"]
    assert shard.sample_sizes == (2, 2, 2, 2) and sum(shard.region_sizes) == len(
        whole["region_image"]
    )
    assert shard.caption_tokens == int((whole["caption"][1] != -100).sum())
    assert shard.location_tokens == int((whole["location"][1] != -100).sum())
    with pytest.raises(ValueError, match="equal shards"):
        LoFiCollator(config, tok, tok).shard(samples, 0, 3, None)
