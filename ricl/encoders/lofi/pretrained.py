"""Pretrained initialisation of LoFi: what the checkpoints decide, and loading their weights.

``model.vision_pretrained`` names a SigLIP (``SiglipModel``, fixed resolution; also the
fixed-resolution SigLIP 2 releases such as ``siglip2-so400m-patch14-384``) or NaFlex
SigLIP 2 (``Siglip2Model``) dual encoder; ``model.decoder_pretrained`` a causal LM
(e.g. ``Gemma3ForCausalLM``). Each is a local directory or a hub id, read through
``from_pretrained`` (``trust_remote_code`` off). Then the checkpoints, not the recipe, set:

* ``towers`` (the checkpoint's ``model_type``), the vision and text tower dicts, and
  ``max_text_length`` (the text tower's ``max_position_embeddings``);
* ``image_size``: SigLIP -- the processor's ``size`` (else the config's ``image_size``),
  rounded down to whole patches (384 px at patch 14 -> 378 px = 27 x 27 patches, exactly
  the positions the weights hold); NaFlex SigLIP 2 -- a square of
  ``isqrt(max_num_patches)`` patches a side (the processor's, else ``num_patches``);
* ``image_mean`` / ``image_std``: the processor config's (SigLIP's published 0.5 / 0.5
  when there is none); pixels are always rescaled by 1/255 first;
* the decoder dict: the decoder checkpoint's config.

The text tokenizer then comes from the vision checkpoint's directory and the decoder
tokenizer from the decoder's (:func:`load_tokenizers`); without a checkpoint, a word
tokenizer is trained on the given corpus (:func:`ricl.encoders.tokenizer.build_word_tokenizer`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ricl.encoders.lofi.config import LoFiConfig
from ricl.errors import RiclError

__all__ = ["PretrainedError", "load_pretrained_weights", "load_tokenizers", "resolve_config"]

TOWER_FAMILIES = ("siglip", "siglip2")
_META_KEYS = {"architectures", "transformers_version", "_name_or_path", "model_type", "torch_dtype",
              "dtype", "id2label", "label2id", "output_attentions", "output_hidden_states"}  # fmt: skip


class PretrainedError(RiclError):
    """A pretrained checkpoint cannot be used: unreadable, wrong family, sizes that do not fit."""


def tower_dict(cfg: Any) -> dict[str, Any]:
    """A transformers config -> plain kwargs that rebuild the same architecture."""
    return {k: v for k, v in cfg.to_dict().items() if k not in _META_KEYS}


def _read(what: str, source: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(source, *args, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise PretrainedError(f"model.{what}={source!r}: cannot be loaded: {e}") from e


def _processor_dict(source: str) -> dict[str, Any]:
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        proc, _ = ImageProcessingMixin.get_image_processor_dict(source)
    except OSError:  # no preprocessor_config.json: the family's published defaults
        return {}
    return proc


def _vision_updates(source: str) -> dict[str, Any]:
    """The fields a SigLIP / SigLIP 2 dual-encoder checkpoint decides (configs only)."""
    from transformers import AutoConfig

    cfg = _read("vision_pretrained", source, AutoConfig.from_pretrained)
    family = getattr(cfg, "model_type", None)
    if family not in TOWER_FAMILIES:
        raise PretrainedError(
            f"model.vision_pretrained={source!r} is a {family!r} model; LoFi needs a SigLIP or "
            f"SigLIP 2 dual encoder (model_type one of {TOWER_FAMILIES}, both towers)"
        )
    proc = _processor_dict(source)
    vis, txt = tower_dict(cfg.vision_config), tower_dict(cfg.text_config)
    patch = int(vis["patch_size"])
    if family == "siglip":
        side = int(vis.pop("image_size"))
        size = proc.get("size") or {}
        if size.get("height", side) != size.get("width", side):
            raise PretrainedError(f"{source!r}: non-square processor size {size} is not supported")
        if size.get("height", side) // patch != side // patch:
            raise PretrainedError(
                f"{source!r}: the processor resizes to {size} but the position embeddings "
                f"hold a {side // patch}-patch grid ({side} px)"
            )
        grid = side // patch
    else:
        grid = math.isqrt(int(proc.get("max_num_patches", vis["num_patches"])))
    mean, std = (0.0,) * 3, (1.0,) * 3
    if proc.get("do_normalize", True):
        mean = tuple(float(v) for v in proc.get("image_mean", (0.5,) * 3))
        std = tuple(float(v) for v in proc.get("image_std", (0.5,) * 3))
    return {"towers": family, "vision": vis, "text": txt, "image_size": grid * patch,
            "max_text_length": int(txt.pop("max_position_embeddings")),
            "image_mean": mean, "image_std": std}  # fmt: skip


def resolve_config(
    config: LoFiConfig, text_tokenizer: Any = None, decoder_tokenizer: Any = None
) -> LoFiConfig:
    """The complete config: pretrained checkpoints' architectures (configs only, no weights),
    and for towers trained from scratch the vocabulary sizes and special ids of the given
    tokenizers (when given). ``vision_pretrained`` / ``decoder_pretrained`` are kept (so
    :func:`load_pretrained_weights` can read them) and resolving twice changes nothing.

    Raises:
        PretrainedError: a checkpoint is unreadable or of the wrong family, or its patch
            grid is not divisible by ``projector_pool``.
    """
    from transformers import AutoConfig

    updates: dict[str, Any] = {}
    if config.vision_pretrained:
        updates |= _vision_updates(config.vision_pretrained)
    elif text_tokenizer is not None:
        special = {
            k: getattr(text_tokenizer, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")
        }
        updates["text"] = {**config.text, "vocab_size": len(text_tokenizer),
                           **{k: v for k, v in special.items() if v is not None}}  # fmt: skip
    if config.decoder_pretrained:
        dcfg = _read("decoder_pretrained", config.decoder_pretrained, AutoConfig.from_pretrained)
        updates["decoder"] = {"model_type": dcfg.model_type, **tower_dict(dcfg)}
    elif decoder_tokenizer is not None:
        kw = {k: v for k, v in config.decoder.items() if k != "model_type"}
        kw.setdefault("vocab_size", len(decoder_tokenizer))
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            kw.setdefault(name, getattr(decoder_tokenizer, name))
        updates["decoder"] = {"model_type": config.decoder["model_type"], **kw}
    resolved = LoFiConfig.model_validate({**config.model_dump(), **updates})
    try:
        resolved.check_grid()
    except ValueError as e:
        raise PretrainedError(f"model.vision_pretrained={config.vision_pretrained!r}: {e}") from e
    return resolved


def load_pretrained_weights(model: Any, config: LoFiConfig) -> None:
    """Copy the checkpoints' weights (float32) into ``model`` (built from
    ``resolve_config(config)``): both SigLIP towers, and the whole decoder.

    Strict: a tensor the rebuilt architecture lacks, or one of another shape, raises
    PretrainedError (the saved config would not rebuild the checkpoint's model).
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    pairs = []
    if config.vision_pretrained:
        sig = _read("vision_pretrained", config.vision_pretrained, AutoModel.from_pretrained,
                    dtype=torch.float32)  # fmt: skip
        pairs += [(model.vision, sig.vision_model), (model.text, sig.text_model)]
    if config.decoder_pretrained:
        dec = _read("decoder_pretrained", config.decoder_pretrained,
                    AutoModelForCausalLM.from_pretrained, dtype=torch.float32)  # fmt: skip
        pairs.append((model.decoder, dec))
    for target, source in pairs:
        try:
            target.load_state_dict(source.state_dict(), strict=True)
        except RuntimeError as e:
            raise PretrainedError(f"pretrained weights do not fit the rebuilt tower: {e}") from e


def _prepared(tok: Any, what: str, source: str) -> Any:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.pad_token is None or tok.eos_token is None:
        raise PretrainedError(
            f"{what}={source!r}: its tokenizer has no eos token to pad and stop with"
        )
    return tok


def load_tokenizers(config: LoFiConfig, corpus: Iterable[str]) -> tuple[Any, Any]:
    """``(text_tokenizer, decoder_tokenizer)`` for a fresh model of ``config``.

    The text tokenizer is the vision checkpoint's (``AutoTokenizer.from_pretrained`` of
    ``vision_pretrained``), the decoder tokenizer the decoder checkpoint's; each one
    without a checkpoint is a word tokenizer trained on ``corpus`` (one, shared). The
    text tokenizer pads on the right (SigLIP pools the last position); a tokenizer
    without a pad token pads with its eos token.

    Raises:
        PretrainedError: a checkpoint's tokenizer cannot be loaded or has no eos token.
    """
    from transformers import AutoTokenizer

    from ricl.encoders.tokenizer import build_word_tokenizer

    word = None
    if not (config.vision_pretrained and config.decoder_pretrained):
        word = build_word_tokenizer(corpus)
    text = word
    if config.vision_pretrained:
        text = _read("vision_pretrained", config.vision_pretrained, AutoTokenizer.from_pretrained)
        text = _prepared(text, "model.vision_pretrained", config.vision_pretrained)
        text.padding_side = "right"
    dec = word
    if config.decoder_pretrained:
        dec = _read("decoder_pretrained", config.decoder_pretrained, AutoTokenizer.from_pretrained)
        dec = _prepared(dec, "model.decoder_pretrained", config.decoder_pretrained)
    return text, dec
