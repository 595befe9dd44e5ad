"""Tiny random-weight Qwen2-VL checkpoints, built offline, for tests of the VLM backends.

No model hub is reachable here, so tests that need a real Qwen2-VL-architecture checkpoint (the
vLLM server, transformers ``generate``) build one: :func:`build_tiny_qwen2vl` writes an ordinary
Hugging Face directory (``config.json``, ``model.safetensors``, ``generation_config.json``, a
byte-level BPE tokenizer of the Qwen2 kind trained on a fixed radiology corpus, the Qwen2-VL chat
template, ``preprocessor_config.json``), loadable with ``from_pretrained(path)`` and servable with
``vllm serve path``. Same arguments and seed -> byte-identical files.

transformers 5.x without torchvision: ``Qwen2VLProcessor`` also wants a video processor, and
``Qwen2VLVideoProcessor`` imports torchvision, so ``AutoProcessor.from_pretrained`` fails.
:func:`load_qwen2vl_processor` assembles the same processor from its parts instead (the PIL
image processor, the tokenizer, no video processor, the directory's chat template).

Parity with vLLM (checked: identical token ids and top-2 logprob gaps to 1e-4, float32, three
images of different sizes): vLLM's CPU environment has torchvision, so its transformers picks
the torchvision image processor, whose bicubic resize differs slightly from PIL's; serve with
``--mm-processor-kwargs '{"use_fast": false}'`` so that both sides resize with PIL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import Qwen2VLProcessor

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tiny_qwen2vl", "load_qwen2vl_processor"]

# Qwen2-VL's special tokens, in the order of the real vocabulary (they follow the BPE tokens).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip

# The chat template of Qwen2-VL-*-Instruct: string or list content, a default system message,
# image parts (``{"type": "image"}``, ``"image"`` or ``"image_url"`` keys) rendered as
# <|vision_start|><|image_pad|><|vision_end|>; the processor expands <|image_pad|> per image.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Fixed training text for the tokenizer: report phrases, grounding prompts and box answers.
_CORPUS: tuple[str, ...] = (
    "Small nodule in the right upper zone.",
    "Left lower lobe consolidation.",
    "Moderate right pleural effusion with adjacent atelectasis.",
    "Cardiomegaly is present.",
    "Large left pneumothorax with mediastinal shift.",
    "Patchy opacity in the left mid zone.",
    "Bilateral interstitial markings, more prominent at the bases.",
    "No acute findings.",
    "Endotracheal tube tip above the carina.",
    "Right internal jugular central venous catheter.",
    "Healed fracture of the left sixth rib.",
    "Mass in the right hilum.",
    "Cavitating lesion.",
    "Blunting of the left costophrenic angle.",
    "Hyperinflated lungs, flattened diaphragms.",
    "Ground the phrase in the image. Answer with the box (x1,y1),(x2,y2) in 0-1000.",
    "Example: <phrase> -> (120,348),(270,512)",
    "Query image. Phrase: pleural effusion",
    "The finding is located at (605,210),(880,497).",
    "Box: [[37, 90, 418, 766]]",
    "You are a radiologist. Locate the finding described below.",
)


def build_tiny_qwen2vl(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = 1024,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    vision_depth: int = 2,
    vision_embed_dim: int = 64,
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
    initializer_range: float = 0.1,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Write a tiny random Qwen2-VL checkpoint to ``out_dir`` and return its path.

    Text model: ``num_layers`` layers of width ``hidden_size`` with ``num_heads`` heads of
    dimension ``hidden_size // num_heads`` (64 by default, a size vLLM's CPU attention takes;
    keep it a multiple of 16 for the mrope split).
    Vision: ``vision_depth`` blocks of width ``vision_embed_dim``, patch 14, spatial merge 2,
    so a 112x112 image is 8x8 patches = 16 tokens after the merge; ``min_pixels`` /
    ``max_pixels`` bound the resized area (``smart_resize``). ``vocab_size`` caps the BPE
    vocabulary (the fixed corpus yields ~600 tokens); the model's vocabulary is exactly the tokenizer's (BPE + special tokens), so
    every id it can emit decodes. ``initializer_range`` is larger than the usual 0.02 so that
    the random model's greedy choices have clear margins (median top-2 logprob gap 0.38 against
    0.04 at 0.02), so parity across runtimes is not at the mercy of float rounding.
    ``corpus``: texts to train the tokenizer on (default: a fixed radiology corpus); a model
    to be trained passes the phrases and prompt texts it will read.
    """
    import torch
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size, corpus)
    tokenizer.save_pretrained(out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = hidden_size // num_heads
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_heads,
            "max_position_embeddings": 4096,
            "initializer_range": initializer_range,
            # mrope splits the rotary half-dimension over (time, height, width)
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": vision_depth,
            "embed_dim": vision_embed_dim,
            "hidden_size": hidden_size,
            "num_heads": max(1, vision_embed_dim // 32),
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
            "initializer_range": initializer_range,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    image_processor.save_pretrained(out)
    _write_json(out / "preprocessor_config.json", _preprocessor_config(out))
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    return out


def load_qwen2vl_processor(path: str | Path) -> Qwen2VLProcessor:
    """The ``Qwen2VLProcessor`` of a Qwen2-VL directory, built without torchvision.

    ``AutoProcessor.from_pretrained`` needs ``Qwen2VLVideoProcessor`` (torchvision). This builds
    the processor from ``Qwen2VLImageProcessorPil.from_pretrained(path)`` (the same
    ``preprocessor_config.json`` and PIL bicubic resize as a vLLM server started with
    ``--mm-processor-kwargs '{"use_fast": false}'``), ``AutoTokenizer.from_pretrained(path)`` and the directory's chat template, with no
    video processor: images and text work as with ``AutoProcessor``; videos do not. Call it as
    ``processor(text=[prompt], images=images, return_tensors="pt")``; the output includes
    ``mm_token_type_ids``, which a Qwen2-VL forward with images needs.
    """
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    template_file = path / "chat_template.jinja"
    template = (
        template_file.read_text(encoding="utf-8")
        if template_file.is_file()
        else tokenizer.chat_template
    )
    return _image_text_processor_class()(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(path),
        tokenizer=tokenizer,
        chat_template=template,
    )


@cache
def _image_text_processor_class() -> type[Qwen2VLProcessor]:
    """``Qwen2VLProcessor`` without the video processor attribute (defined on first use).

    ``ProcessorMixin`` takes its sub-processors from the ``__init__`` signature and type-checks
    each one; a ``video_processor=None`` fails that check without torchvision. With no
    ``video_processor`` parameter the mixin skips it, and ``__call__`` skips videos.
    """
    from transformers import Qwen2VLProcessor

    class Qwen2VLImageTextProcessor(Qwen2VLProcessor):
        def __init__(
            self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None
        ) -> None:
            # the parent passes video_processor=None positionally; the mixin drops it
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template)

    return Qwen2VLImageTextProcessor


def _train_tokenizer(vocab_size: int, corpus: Iterable[str] | None = None) -> Any:
    """Byte-level BPE with Qwen2's normalizer and pre-tokenizer -> ``Qwen2Tokenizer``.

    The pre-tokenizer regex splits every digit into its own token, as Qwen2's does. The special
    tokens follow the BPE vocabulary, in :data:`SPECIAL_TOKENS` order. The byte alphabet is
    ASCII only, so every token decodes to valid text on its own: a random model then cannot
    emit half a UTF-8 character, which streaming detokenizers (vLLM's) and a one-shot
    ``decode`` render differently. Non-ASCII input characters are dropped by the tokenizer.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=[_byte_to_unicode(b) for b in range(128)],
        special_tokens=[],
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus) if corpus is not None else list(_CORPUS), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) for m in model["merges"]],
        unk_token=None,
        errors="replace",
        model_max_length=4096,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True) for t in SPECIAL_TOKENS]}
    )
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _byte_to_unicode(byte: int) -> str:
    """The character that byte-level BPE uses for ``byte`` (GPT-2's ``bytes_to_unicode``)."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    if byte in kept:
        return chr(byte)
    return chr(0x100 + [b for b in range(256) if b not in kept].index(byte))


def _preprocessor_config(out: Path) -> dict[str, Any]:
    """The saved image-processor config, with the keys real Qwen2-VL checkpoints carry."""
    cfg = json.loads((out / "preprocessor_config.json").read_text(encoding="utf-8"))
    cfg["min_pixels"] = cfg["size"]["shortest_edge"]
    cfg["max_pixels"] = cfg["size"]["longest_edge"]
    cfg["processor_class"] = "Qwen2VLProcessor"
    return cfg


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
