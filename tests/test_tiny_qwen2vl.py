"""The tiny random Qwen2-VL builder: deterministic files, loadable with transformers (no
torchvision) through the public ``from_pretrained`` calls, the Qwen2-VL chat template and
tokenizer conventions, and greedy generation on a two-image chat."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ricl.vlm.tiny_qwen2vl import SPECIAL_TOKENS, build_tiny_qwen2vl, load_qwen2vl_processor

pytest.importorskip("transformers")

IMAGE_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "a", seed=0)


@pytest.fixture(scope="module")
def processor(tiny):
    return load_qwen2vl_processor(tiny)


@pytest.fixture(scope="module")
def model(tiny):
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration.from_pretrained(tiny).eval()


def _images(sizes: list[tuple[int, int]]):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _two_image_chat() -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": "Example: small nodule -> (120,348),(270,512)\n"},
                {"type": "image"},
                {"type": "text", "text": "Query: small nodule ->"},
            ],
        }
    ]


def test_same_seed_same_bytes_other_seed_other_weights(tiny, tmp_path):
    again = build_tiny_qwen2vl(tmp_path / "b", seed=0)
    files = sorted(p.name for p in tiny.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja",
            "preprocessor_config.json", "generation_config.json"} <= set(files)  # fmt: skip
    assert files == sorted(p.name for p in again.iterdir())
    assert all(_sha256(tiny / f) == _sha256(again / f) for f in files)
    other = build_tiny_qwen2vl(tmp_path / "c", seed=1)
    assert _sha256(other / "model.safetensors") != _sha256(tiny / "model.safetensors")
    assert _sha256(other / "tokenizer.json") == _sha256(tiny / "tokenizer.json")


def test_config_is_tiny_and_consistent_with_the_tokenizer(tiny, processor):
    cfg = json.loads((tiny / "config.json").read_text())
    tok = processor.tokenizer
    assert cfg["model_type"] == "qwen2_vl" and cfg["text_config"]["hidden_size"] == 128
    assert cfg["text_config"]["vocab_size"] == len(tok)  # every id the model emits decodes
    assert cfg["image_token_id"] == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg["vision_start_token_id"] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert all(tok.convert_tokens_to_ids(t) != tok.unk_token_id for t in SPECIAL_TOKENS)
    # digits are single tokens, special tokens are atomic, decoding restores the text
    text = "<|box_start|>(120,348),(270,512)<|box_end|>"
    ids = tok(text)["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[:4] == ["<|box_start|>", "(", "1", "2"]
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "(120,348),(270,512)"


def test_the_chat_template_renders_image_parts_as_vision_blocks(processor):
    text = processor.apply_chat_template(
        _two_image_chat(), tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert text.count(IMAGE_BLOCK) == 2
    assert text.endswith("Query: small nodule -><|im_end|>\n<|im_start|>assistant\n")
    string_content = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    assert processor.apply_chat_template(string_content, tokenize=False) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    )


def test_images_become_few_tokens(processor):
    # 112x112 -> 8x8 patches of 14 -> 16 tokens after the 2x2 merge; larger images shrink
    # to at most 112x112 worth of pixels, tiny ones grow to at least 56x56
    text = processor.apply_chat_template(_two_image_chat(), tokenize=False)
    out = processor(text=[text], images=_images([(112, 112), (640, 480)]), return_tensors="pt")
    assert out["image_grid_thw"].tolist()[0] == [1, 8, 8]
    assert out["image_grid_thw"][1].prod().item() <= 64
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_image_tokens = int((out["input_ids"] == image_id).sum())
    assert n_image_tokens == int(out["image_grid_thw"].prod(-1).sum()) // 4
    assert int(out["mm_token_type_ids"].sum()) == n_image_tokens


def test_greedy_generation_on_a_two_image_chat(processor, model):
    import torch

    text = processor.apply_chat_template(
        _two_image_chat(), tokenize=False, add_generation_prompt=True
    )
    inputs = processor(text=[text], images=_images([(112, 112), (90, 70)]), return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        again = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    answer = processor.tokenizer.decode(new, skip_special_tokens=True)
    assert isinstance(answer, str) and 1 <= len(new) <= 8
    assert torch.equal(out, again)
