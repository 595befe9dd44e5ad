"""Prompt strategies as data: every shipped file renders, layouts put images and answers
where they belong, StrictUndefined catches holes, and the schema rejects what it must."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ricl.boxes.codecs import get_codec
from ricl.errors import UnknownNameError
from ricl.prompting.builder import build_prompt, exemplar_image, query_image
from ricl.prompting.messages import ImagePart, messages_to_text
from ricl.prompting.strategies import (
    PromptTemplateError,
    StrategyOptions,
    list_strategies,
    load_strategy,
    prompts_dir,
)
from tests.agent_fixtures import exemplar

SHIPPED = list_strategies()


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, size in [("query", (300, 240)), ("img0", (200, 100)), ("img1", (200, 100)),
                       ("img2", (200, 100))]:  # fmt: skip
        p = tmp_path / f"{name}.png"
        Image.new("L", size, 80).save(p)
        out[name] = p
    return out


def _pairs(images, codec, k=3, phrases=("nodule right upper", "effusion left base")):
    exs = [exemplar(i, list(phrases)) for i in range(k)]
    return [(e, exemplar_image(e, images[f"img{i}"], codec=codec, max_side=None)) for i, e in
            enumerate(exs)]  # fmt: skip


def test_the_required_strategies_ship():
    assert {"zero-shot", "k-shot", "k-shot-interleaved", "text-only"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("codec_name", ["qwen2vl", "json", "qwen25vl", "medgemma"])
def test_every_shipped_strategy_renders_with_every_image_placed_once(name, codec_name, images):
    strategy = load_strategy(name)
    codec = get_codec(codec_name)
    q = query_image(images["query"], codec=codec, max_side=256)
    prompt = build_prompt(strategy, codec, "nodule right", q, _pairs(images, codec))
    n_images = 1 if (strategy.zero_shot or not strategy.exemplar_images) else 4
    assert len(prompt.images) == n_images
    assert prompt.images.count(q) == 1
    assert messages_to_text(prompt.messages).count("nodule right") >= 1
    assert codec.format_hint in prompt.messages[0].text
    assert len(prompt.fingerprint) == 16


def test_k_shot_alternates_turns_and_answers_in_the_codec_format(images):
    codec = get_codec("qwen2vl")
    strategy = load_strategy("k-shot")
    q = query_image(images["query"], codec=codec, max_side=None)
    pairs = _pairs(images, codec)
    prompt = build_prompt(strategy, codec, "nodule", q, pairs)
    roles = [m.role for m in prompt.messages]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]
    for (e, ref), user, assistant in zip(pairs, prompt.messages[1:-1:2], prompt.messages[2::2],
                                         strict=True):  # fmt: skip
        assert user.images == [ref]
        finding = e.findings[0]  # "nodule right upper" is the closest phrase
        assert finding.phrase in user.text
        assert assistant.text == codec.format(finding.boxes, image_size=ref.size,
                                              phrase=finding.phrase)  # fmt: skip
    assert prompt.messages[-1].images == [q]
    assert isinstance(prompt.messages[-1].content[0], ImagePart)  # image before the phrase


def test_order_most_similar_last_reverses_and_other_findings_are_optional(images):
    codec = get_codec("json")
    q = query_image(images["query"], codec=codec, max_side=None)
    pairs = _pairs(images, codec)
    base = load_strategy("k-shot")
    first = build_prompt(base, codec, "nodule", q, pairs)
    last = build_prompt(
        base.with_options({"order": "most-similar-last"}), codec, "nodule", q, pairs
    )
    assert [d.exemplar.exemplar_id for d in first.demos] == [0, 1, 2]
    assert [d.exemplar.exemplar_id for d in last.demos] == [2, 1, 0]
    assert "effusion left base" not in messages_to_text(first.messages)
    shown = build_prompt(base.with_options(StrategyOptions(show_other_findings=True)), codec,
                         "nodule", q, pairs)  # fmt: skip
    assert messages_to_text(shown.messages).count("effusion left base") == 3


def test_text_only_sends_no_exemplar_images_but_their_answers(images):
    codec = get_codec("json")
    q = query_image(images["query"], codec=codec, max_side=None)
    prompt = build_prompt(load_strategy("text-only"), codec, "nodule", q, _pairs(images, codec))
    assert prompt.images == [q]
    text = messages_to_text(prompt.messages)
    for d in prompt.demos:
        assert codec.format(d.finding.boxes, image_size=(200, 100)) in text


def test_zero_shot_ignores_exemplars(images):
    codec = get_codec("json")
    q = query_image(images["query"], codec=codec, max_side=None)
    prompt = build_prompt(load_strategy("zero-shot"), codec, "nodule", q, _pairs(images, codec))
    assert prompt.demos == () and prompt.images == [q]


def test_letterbox_codecs_send_square_images_and_sizes_are_bounded(images):
    codec = get_codec("medgemma")
    q = query_image(images["query"], codec=codec, max_side=128)
    assert q.transform is not None and q.sent_size == (128, 128)
    assert q.render().size == (128, 128)
    plain = query_image(Image.open(images["query"]), codec=get_codec("qwen2vl"), max_side=150)
    assert plain.sent_size == (150, 120) and plain.render().size == (150, 120)


def _write(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(body)
    return p


def test_strict_undefined_names_the_file_and_the_variable(tmp_path, images):
    p = _write(tmp_path, "holey", "name: holey\nversion: 1\ndescription: x\nlayout: single-turn\n"
               "user: '{{ query.image }}{{ query.phrse }}'\n")  # fmt: skip
    codec = get_codec("json")
    q = query_image(images["query"], codec=codec, max_side=None)
    with pytest.raises(PromptTemplateError, match=r"holey\.yaml.*phrse"):
        build_prompt(load_strategy(p), codec, "nodule", q)


def test_a_template_that_drops_the_query_image_is_refused(tmp_path, images):
    p = _write(tmp_path, "blind", "name: blind\nversion: 1\ndescription: x\nlayout: single-turn\n"
               "user: '{{ query.phrase }}'\n")  # fmt: skip
    codec = get_codec("json")
    q = query_image(images["query"], codec=codec, max_side=None)
    with pytest.raises(PromptTemplateError, match="query image is placed 0 times"):
        build_prompt(load_strategy(p), codec, "nodule", q)


def test_text_only_templates_cannot_use_exemplar_images(tmp_path, images):
    p = _write(tmp_path, "peek", "name: peek\nversion: 1\ndescription: x\nlayout: single-turn\n"
               "exemplar_images: false\nuser: '{% for ex in exemplars %}{{ ex.image }}{% endfor %}"
               "{{ query.image }}'\n")  # fmt: skip
    codec = get_codec("json")
    q = query_image(images["query"], codec=codec, max_side=None)
    with pytest.raises(PromptTemplateError, match="image"):
        build_prompt(load_strategy(p), codec, "nodule", q, _pairs(images, codec, k=1))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("name: bad\nversion: 1\ndescription: x\nlayout: single-turn\nuser: a\ncolour: red\n",
         "colour"),
        ("name: bad\nversion: 1\ndescription: x\nlayout: multi-turn\nuser: a\n", "needs"),
        ("name: other\nversion: 1\ndescription: x\nlayout: single-turn\nuser: a\n", "differs"),
        ("name: bad\nversion: 1\ndescription: x\nlayout: single-turn\nuser: '{% for %}'\n",
         "syntax"),
        ("- just\n- a list\n", "mapping"),
    ],
)  # fmt: skip
def test_invalid_strategy_files_are_rejected_with_the_file_named(tmp_path, body, match):
    p = _write(tmp_path, "bad", body)
    with pytest.raises(PromptTemplateError, match=match) as err:
        load_strategy(p)
    assert "bad.yaml" in str(err.value)


def test_unknown_strategy_names_get_suggestions():
    with pytest.raises(UnknownNameError, match="k-shot"):
        load_strategy("k-shots")


def test_strategy_options_reject_unknown_keys():
    with pytest.raises(ValueError, match="colour"):
        load_strategy("k-shot").with_options({"colour": "red"})


def test_prompts_dir_points_at_the_repository_prompts():
    assert prompts_dir() == Path(__file__).resolve().parents[1] / "prompts"


def test_prompt_show_prints_the_messages_with_image_placeholders(images):
    from typer.testing import CliRunner

    from ricl_apps.cli import app

    args = ["prompt", "show", "--image", str(images["query"]), "--phrase", "nodule right",
            "--strategy", "zero-shot", "--codec", "medgemma", "--max-image-side", "128"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "<image query 300x240 letterbox -> 128x128>" in out.output
    assert "Locate: nodule right" in out.output and "[system]" in out.output
    listed = CliRunner().invoke(app, ["prompt", "list"])
    assert all(name in listed.output for name in SHIPPED)


def test_qwen25vl_answers_are_written_in_each_exemplar_images_resized_frame(tmp_path):
    codec = get_codec("qwen25vl", min_pixels=28 * 28, max_pixels=512 * 512)
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.new("L", (300, 150), 50).save(small)
    Image.new("L", (1200, 400), 50).save(large)
    exs = [exemplar(0, ["nodule right"], (300, 150)), exemplar(1, ["nodule right"], (1200, 400))]
    pairs = [(exs[0], exemplar_image(exs[0], small, codec=codec, max_side=None)),
             (exs[1], exemplar_image(exs[1], large, codec=codec, max_side=600))]  # fmt: skip
    q = query_image(small, codec=codec, max_side=None)
    prompt = build_prompt(load_strategy("k-shot"), codec, "nodule", q, pairs)
    answers = [m.text for m in prompt.messages if m.role == "assistant"]
    box = exs[0].findings[0].boxes[0]
    for (e, ref), answer in zip(pairs, answers, strict=True):
        w, h = codec.resized_size(ref.sent_size)
        x0, y0 = round(box.x_min * w), round(box.y_min * h)
        assert f"[{x0}, {y0}," in answer, (answer, w, h)
    assert codec.resized_size((600, 200)) != codec.resized_size((1200, 400))
