"""Tiny random checkpoints of the exact classes the real LoFi recipe loads, built offline.

The full-size recipe (``eval/encoder/lofi_so400m_gemma3.yaml``) initialises LoFi from a
SigLIP / SigLIP 2 dual encoder (``model.vision_pretrained``) and a Gemma-3 causal LM
(``model.decoder_pretrained``). No model hub is reachable here, so tests and smoke runs
of that code path build stand-ins of the same architectures with tiny sizes and random
weights, written as ordinary Hugging Face directories that ``from_pretrained(path)`` reads:

* :func:`build_tiny_siglip` -- ``SiglipModel`` (fixed resolution: conv patch embedding,
  one learned position per patch) or ``Siglip2Model`` (NaFlex: a linear embedding of
  flattened patches plus a square grid of learned positions, bilinearly resized to each
  image's ``spatial_shapes``, with a ``pixel_attention_mask`` over padded patches), with
  ``config.json``, ``model.safetensors``, ``preprocessor_config.json`` and a Gemma-style
  tokenizer (what SigLIP 2 ships);
* :func:`build_tiny_gemma3` -- ``Gemma3ForCausalLM`` (``Gemma3TextConfig``: sliding and
  global attention layers, tied, sqrt(hidden)-scaled embeddings) with its tokenizer, the
  Gemma 3 chat template and a ``generation_config.json``.

Tokenizers are byte-fallback BPE (Gemma's pipeline: spaces become ``▁``, unknown
characters fall back to ``<0xNN>`` byte tokens, ``<bos>`` is prepended) trained in about
a second on the phantom vocabulary and LoFi's prompts, wrapped as ``GemmaTokenizer``
(``tokenizer_class`` in ``tokenizer_config.json``, so ``AutoTokenizer`` reads it back).
Same arguments and seed -> the same files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "GEMMA3_CHAT_TEMPLATE",
    "build_gemma_tokenizer",
    "build_tiny_gemma3",
    "build_tiny_siglip",
    "default_corpus",
]

# Gemma's special tokens in the order of the real vocabulary (pad 0, eos 1, bos 2, unk 3).
_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>")

# Gemma 3 instruction-tuned chat template, text parts only (images render as <start_of_image>):
# a leading system message is folded into the first user turn; roles must alternate.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def default_corpus() -> list[str]:
    """Tokenizer training text: LoFi's prompts and box answers, and the phantom's finding
    types and locations (so phantom reports cost few tokens; anything else still encodes)."""
    from ricl.data.phantom.vocab import FINDING_TYPES, LABELS, LOCATIONS
    from ricl.encoders.lofi.data import CAPTION_PROMPT, grounding_prompt

    texts = [CAPTION_PROMPT, "Describe the region [[120,348,270,512]].", "[[37,90,418,766]]"]
    texts += [grounding_prompt(t) for t in FINDING_TYPES]
    texts += [f"{t.capitalize()} in the {loc}." for t in FINDING_TYPES for loc in LOCATIONS]
    texts += [f"Small {label}, moderate {label}, large {label}." for label in LABELS]
    return texts


def build_gemma_tokenizer(
    corpus: Iterable[str] | None = None,
    *,
    vocab_size: int = 1024,
    chat_template: str | None = None,
    model_max_length: int = 512,
) -> Any:
    """Train a byte-fallback BPE on ``corpus`` (default :func:`default_corpus`) ->
    ``transformers.GemmaTokenizer`` with ``<pad>``/``<eos>``/``<bos>``/``<unk>`` at ids
    0/1/2/3, ``<start_of_turn>``/``<end_of_turn>``, the 256 ``<0xNN>`` byte tokens and
    printable ASCII, so every text encodes (nothing maps to ``<unk>``). ``<bos>`` is
    prepended to each encoded text, no ``<eos>`` appended (as Gemma's tokenizer does).
    Deterministic for a corpus; about a second for the default corpus."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import GemmaTokenizer

    bpe = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    # training only: merges stay within a word (GemmaTokenizer itself does not pre-split)
    bpe.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*_SPECIALS, *(f"<0x{b:02X}>" for b in range(256))],
        initial_alphabet=[chr(c) for c in range(0x21, 0x7F)] + ["▁"],
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus) if corpus is not None else default_corpus(), trainer)
    model = json.loads(bpe.to_str())["model"]
    tokenizer = GemmaTokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) for m in model["merges"]],
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=model_max_length,
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_siglip(
    out_dir: str | Path,
    *,
    family: Literal["siglip", "siglip2"] = "siglip",
    image_size: int = 64,
    patch_size: int = 8,
    position_grid: int | None = None,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_text_length: int = 32,
    image_mean: Sequence[float] = (0.5, 0.5, 0.5),
    image_std: Sequence[float] = (0.5, 0.5, 0.5),
    corpus: Iterable[str] | None = None,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a tiny random SigLIP (``family="siglip"``: ``SiglipModel``) or NaFlex SigLIP 2
    (``"siglip2"``: ``Siglip2Model``) dual encoder to ``out_dir``; returns its path.

    Both towers: ``num_layers`` layers of width ``hidden_size``, MLP ``2 * hidden_size``.
    SigLIP: ``image_size`` px inputs, ``(image_size // patch_size)**2`` positions.
    SigLIP 2: the image processor's ``max_num_patches`` is ``(image_size // patch_size)**2``
    (a square ``image_size`` input uses all of them); the learned positions form a
    ``position_grid`` square (default the same grid), resized to the patch grid in the forward.
    The text tower reads at most ``max_text_length`` tokens of a Gemma-style tokenizer
    (:func:`build_gemma_tokenizer`). ``image_mean``/``image_std`` go to the processor config.

    Raises:
        ValueError: ``image_size`` is not a multiple of ``patch_size``.
    """
    import torch
    import transformers as tf

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_gemma_tokenizer(corpus, vocab_size=vocab_size)
    tower = {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
             "num_hidden_layers": num_layers, "num_attention_heads": num_heads}  # fmt: skip
    text = {**tower, "vocab_size": len(tokenizer), "max_position_embeddings": max_text_length,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}  # fmt: skip
    grid = image_size // patch_size
    norm = {"image_mean": list(image_mean), "image_std": list(image_std)}
    torch.manual_seed(seed)
    if family == "siglip":
        from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

        vision = {**tower, "image_size": image_size, "patch_size": patch_size}
        model = tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=vision))
        processor: Any = SiglipImageProcessorPil(
            size={"height": image_size, "width": image_size}, **norm
        )
    elif family == "siglip2":
        from transformers.models.siglip2.image_processing_pil_siglip2 import (
            Siglip2ImageProcessorPil,
        )

        positions = (position_grid or grid) ** 2
        vision = {**tower, "num_patches": positions, "patch_size": patch_size}
        model = tf.Siglip2Model(tf.Siglip2Config(text_config=text, vision_config=vision))
        processor = Siglip2ImageProcessorPil(
            patch_size=patch_size, max_num_patches=grid * grid, **norm
        )
    else:
        raise ValueError(f"family must be 'siglip' or 'siglip2', got {family!r}")
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_gemma3(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    head_dim: int = 32,
    sliding_window: int = 32,
    max_position_embeddings: int = 512,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a tiny random Gemma-3 text decoder (``Gemma3ForCausalLM``) to ``out_dir``.

    ``Gemma3TextConfig`` with ``num_layers`` layers (Gemma 3's pattern: every sixth layer
    attends globally, the others slide over ``sliding_window`` tokens; with fewer than six
    layers the last one is global, so both kinds are built), ``num_heads``
    query and ``num_kv_heads`` key/value heads of ``head_dim``, tied embeddings; with a
    Gemma-style tokenizer carrying :data:`GEMMA3_CHAT_TEMPLATE` and a generation config
    that stops at ``<eos>`` or ``<end_of_turn>``. Returns the directory's path.
    """
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_gemma_tokenizer(
        corpus, vocab_size=vocab_size, chat_template=GEMMA3_CHAT_TEMPLATE
    )
    ids = {k: getattr(tokenizer, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        sliding_window=sliding_window,
        layer_types=[
            "full_attention"
            if (i + 1) % 6 == 0 or i == min(num_layers, 6) - 1
            else "sliding_attention"
            for i in range(num_layers)
        ],
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        **ids,
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config).eval()
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos_token_id"], pad_token_id=ids["pad_token_id"],
        eos_token_id=[ids["eos_token_id"], end_of_turn], do_sample=False,
    )  # fmt: skip
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
