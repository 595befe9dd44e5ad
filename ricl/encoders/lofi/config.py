"""LoFi model configuration: data, validated in one place, unknown keys rejected.

Sizes are config, not code: the tiny phantom preset and a full-size recipe (SigLIP2
so400m vision tower + gemma-3-270m decoder) are the same classes with different
numbers. Tower configs are plain dicts of the transformers config classes
(``SiglipVisionConfig``/``SiglipTextConfig``, or the ``Siglip2*`` ones when ``towers`` is
``siglip2``, and any causal-LM config chosen by its ``model_type``, e.g. ``qwen2`` or
``gemma3_text``). With ``vision_pretrained`` / ``decoder_pretrained`` set, the towers,
image size, normalization and text length come from the checkpoints instead
(:func:`ricl.encoders.lofi.pretrained.resolve_config`); the saved config of a trained
model holds the resolved values, so it rebuilds without the checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ricl.config import apply_overrides, read_yaml_mapping, validate_mapping

__all__ = ["LoFiConfig", "LoRAConfig", "LossWeights", "tiny_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossWeights(_Strict):
    """Weight of each ``*_loss`` term; the trainer sums ``weight * term``. A weight of 0
    switches the term off (it is then not computed). LoFi: sigmoid + 5 x the autoregressive terms."""

    sigmoid: float = Field(1.0, ge=0)
    caption: float = Field(5.0, ge=0)
    location: float = Field(5.0, ge=0)
    pseudo_seg: float = Field(0.0, ge=0)
    region_contrast: float = Field(0.0, ge=0)

    def of(self, loss_key: str) -> float:
        """Weight for a loss key such as ``caption_loss``."""
        return float(getattr(self, loss_key.removesuffix("_loss")))


class LoRAConfig(_Strict):
    """LoRA (peft) on the attention projections of both towers, as LoFi does."""

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")


class LoFiConfig(_Strict):
    """Everything needed to rebuild a LoFi model (saved as ``config.json`` in its directory)."""

    image_size: int = Field(224, ge=16)
    embed_dim: int = Field(256, ge=8)
    # SigLIP family of the vision and text towers (a transformers model_type): "siglip" =
    # fixed resolution (conv patches); "siglip2" = NaFlex (linear patches, resized positions).
    towers: Literal["siglip", "siglip2"] = "siglip"
    # per-channel normalization of the [0, 1] pixels (the vision checkpoint's, when there is one)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    vision: dict[str, Any] = Field(default_factory=dict)
    text: dict[str, Any] = Field(default_factory=dict)
    decoder: dict[str, Any] = Field(default_factory=lambda: {"model_type": "qwen2"})
    # Optional pretrained initialisation (HF id or local dir); None = random init.
    vision_pretrained: str | None = None
    decoder_pretrained: str | None = None
    projector_pool: int = Field(2, ge=1)
    max_text_length: int = Field(64, ge=4)
    max_target_length: int = Field(96, ge=4)
    grounding_share: float = Field(0.5, ge=0, le=1)
    # SigLIP's t' = log 10, b = -10 suit batches of thousands; with small batches the prior
    # log-odds of a positive pair is about -log(B - 1), and b moves slowly from -10 under Adam.
    # "last": SigLIP's last-token pooling (keep it for pretrained SigLIP text towers);
    # "mean": masked mean over tokens, which trains from scratch far more readily.
    text_pooling: Literal["last", "mean"] = "last"
    # BatchNorm (no affine) on projected image/text features before L2 normalization. Trained
    # from random init on look-alike images, both towers start near-constant and SigLIP's loss
    # collapses them onto its prior (all cosines equal); centring the batch removes that mode.
    batchnorm_embeddings: bool = False
    logit_scale_init: float = Field(10.0, gt=0)
    logit_bias_init: float = -10.0
    seg_percentile: float = Field(85.0, gt=0, lt=100)
    seg_sigma: float = Field(1.0, ge=0)
    lora: LoRAConfig | None = None
    weights: LossWeights = LossWeights()

    @model_validator(mode="after")
    def _check(self) -> LoFiConfig:
        if "model_type" not in self.decoder and not self.decoder_pretrained:
            raise ValueError("decoder config needs a 'model_type' (e.g. 'qwen2', 'gemma3_text')")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std}")
        if not self.vision_pretrained:  # else the checkpoint sets the sizes: checked on resolving
            self.check_grid()
        return self

    def check_grid(self) -> None:
        """Raise ValueError unless patches tile ``image_size`` and the pooled grid is whole."""
        patch = self.vision.get("patch_size", 16)
        if self.image_size % patch:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {patch}"
            )
        grid = self.image_size // patch
        if grid % self.projector_pool:
            raise ValueError(
                f"patch grid {grid} must be divisible by projector_pool {self.projector_pool}"
            )

    @property
    def grid(self) -> tuple[int, int]:
        g = self.image_size // self.vision.get("patch_size", 16)
        return (g, g)

    # ------------------------------------------------------------------ files
    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> LoFiConfig:
        """Read JSON or YAML; ``overrides`` are dotted keys (``weights.caption=0``).
        Raises ConfigError naming the file and the key."""
        data = read_yaml_mapping(path, what="a LoFi model configuration")  # JSON is YAML
        return validate_mapping(cls, apply_overrides(data, overrides), str(path),
                                what="LoFi model configuration")  # fmt: skip

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def tiny_config(image_size: int = 64, **changes: Any) -> LoFiConfig:
    """A CPU-sized LoFi (≈1 M parameters): 8 px patches, 2-layer towers and decoder.

    Used by tests and by the phantom recipes; ``changes`` override top-level fields.
    """
    base: dict[str, Any] = {
        "image_size": image_size,
        "embed_dim": 64,
        "vision": {"patch_size": 8, "hidden_size": 64, "intermediate_size": 128,
                   "num_hidden_layers": 2, "num_attention_heads": 4},
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4},
        "decoder": {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "max_position_embeddings": 256, "tie_word_embeddings": True},
        "projector_pool": 2,
        "max_text_length": 32,
        "max_target_length": 48,
    }  # fmt: skip
    base.update(changes)
    return LoFiConfig.model_validate(base)
