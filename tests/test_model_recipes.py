"""One-command recipes per served model (``eval/configs/padchest_gr_*.yaml``): the header's
``vllm serve`` line matches the config (model, images per prompt, pixel limits), the codec
is the family's, ``max_tokens`` is derived, and ``dataset.root`` is the one change a user
makes; a recipe runs end to end against a fake server speaking its codec."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from ricl.boxes.codecs import get_codec
from ricl_apps.evaluation.run_config import EvalConfig
from ricl_apps.evaluation.runner import run_eval
from tests.agent_fixtures import make_phantom_index
from tests.fake_openai import fake_server, parts

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "padchest_gr_qwen25vl_7b.yaml": ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen25vl"),
    "padchest_gr_qwen3vl_8b.yaml": ("Qwen/Qwen3-VL-8B-Instruct", "qwen3vl"),
    "padchest_gr_medgemma_4b.yaml": ("google/medgemma-4b-it", "medgemma"),
    "padchest_gr_internvl3_8b.yaml": ("OpenGVLab/InternVL3-8B-hf", "internvl"),
    "padchest_gr_openai.yaml": (None, "json"),
}


def _serve_line(path: Path) -> list[str]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("#   vllm serve ")]
    assert len(lines) == 1, f"{path.name}: one `vllm serve` line expected"
    return shlex.split(lines[0].lstrip("# "))


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_serve_line_matches_the_recipe(name):
    path = ROOT / "eval" / "configs" / name
    model, codec = RECIPES[name]
    config = EvalConfig.from_yaml(path, ["dataset.root=/data/PadChest-GR"])
    agent, argv = config.agent, _serve_line(path)
    assert argv[:2] == ["vllm", "serve"]
    assert argv[2] == (model or "$MODEL")
    assert agent.backend_options.get("model") == model
    assert agent.codec == codec and agent.backend == "openai"
    assert agent.backend_options["max_tokens"] == "auto"
    images = json.loads(_flag(argv, "--limit-mm-per-prompt"))["image"]
    assert images >= agent.k + 1  # k exemplars + the query
    assert "--trust-remote-code" not in argv
    kwargs = json.loads(_flag(argv, "--mm-processor-kwargs") or "{}")
    for key in ("min_pixels", "max_pixels"):  # the codec resizes as the server does
        if key in kwargs or key in agent.codec_options:
            assert agent.codec_options.get(key) == kwargs.get(key), key
    # the one change: the dataset root; everything else is fixed or relative to the checkout
    assert (config.dataset.name, config.dataset.root, config.dataset.split) == (
        "padchest-gr", "/data/PadChest-GR", "test")  # fmt: skip
    assert not Path(agent.index).is_relative_to("/data")
    header = path.read_text()
    assert f"ricl eval --config eval/configs/{name} --set dataset.root=/data/PadChest-GR" in header
    assert "ricl probe --base-url" in header


def test_a_recipe_runs_against_a_server_speaking_its_codec(tmp_path):
    """The Qwen2.5-VL recipe on a PadChest-GR-format phantom release against a fake server
    answering the gold boxes in Qwen2.5-VL's resized-pixel frame: perfect scores, the
    derived max_tokens sent, no answer cut off."""
    index, ds = make_phantom_index(tmp_path / "p", n=30)
    test = ds.select("test")
    gold = {i.phrase: i for i in test}
    unique = {p for p in gold if sum(i.phrase == p for i in test) == 1}
    codec = get_codec("qwen25vl", max_pixels=1003520)

    def answer(body):
        text, sizes = parts(body)
        asked = text.rsplit("Locate: ", 1)[-1].strip()  # the query turn comes last
        inst = gold[asked]
        return codec.format(inst.boxes, image_size=sizes[-1], phrase=inst.phrase), "stop"

    with fake_server(answer) as (url, requests):
        config = EvalConfig.from_yaml(ROOT / "eval/configs/padchest_gr_qwen25vl_7b.yaml", [
            f"dataset.root={ds.root}", f"agent.index={index}", "agent.selector=random",
            f"agent.backend_options.base_url={url}", f"runs_dir={tmp_path / 'runs'}",
            "dataset.limit=5", "concurrency=2", "report=false", "rodeo=false",
        ])  # fmt: skip
        summary = run_eval(config, progress=False)
    budget = {r["max_tokens"] for r in requests}
    assert len(budget) == 1 and budget.pop() >= 64
    rows = [json.loads(line) for line in (config.run_dir / "predictions.jsonl").open()]
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)
    from ricl.boxes.geometry import union_iou

    for r in rows:
        if r["phrase"] not in unique:  # the phrase names the image only when unique
            continue
        inst = gold[r["phrase"]]
        size = (64, 64)  # the phantom images, sent as they are (<= max_image_side)
        back = codec.parse(codec.format(inst.boxes, image_size=size), image_size=size).boxes
        # what a perfect model in Qwen2.5-VL's frame scores: quantization on its 56-px grid
        assert r["union_iou"] == pytest.approx(union_iou(back, inst.boxes), abs=1e-9)
    assert summary["n_truncated"] == 0 and summary["metrics"]["n_truncated"] == 0
    assert all(r["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" for r in requests)
