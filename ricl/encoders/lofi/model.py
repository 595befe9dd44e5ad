"""The LoFi model: SigLIP towers + attention pooling + a projector into a small causal LM.

The towers are SigLIP's (``SiglipVisionModel`` / ``SiglipTextModel``) or, with
``config.towers == "siglip2"``, NaFlex SigLIP 2's (``Siglip2VisionModel``, fed the square
patch grid as flattened patches, and ``Siglip2TextModel``); same pooling head either way.

Shapes (B images, N = h * w patches, C vision width, D embed_dim, H decoder width):

    pixel_values (B, 3, S, S) -> vision tower -> patch tokens (B, N, C)
    attention pooling (SigLIP MAP head)       -> pooled (B, C) -> image_proj -> (B, D)
    masked attention pooling over a box       -> region (M, C) -> image_proj -> (M, D)
    text tower (last token, SigLIP style)     -> (B, D)
    avg-pool patch grid by projector_pool, MLP -> image tokens (B, N / pool^2, H) -> decoder

Global, region and text embeddings share one space (``image_proj`` serves global and
region pooling), so retrieval by image, by image + region and by phrase all work.
``forward(batch)`` returns a dict of named loss terms (``*_loss``) plus logged scalars;
the trainer sums ``weight * term`` over the ``*_loss`` keys.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ricl.encoders.lofi import losses as L
from ricl.encoders.lofi.config import LoFiConfig
from ricl.encoders.lofi.shard import BatchShard

__all__ = ["LoFiModel"]


def _towers(config: LoFiConfig) -> tuple[nn.Module, nn.Module]:
    """Random-init (vision, text) towers of ``config.towers``: ``Siglip(2)VisionModel`` with
    its attention-pooling head, ``Siglip(2)TextModel``."""
    import transformers as tf

    text = {**config.text, "max_position_embeddings": config.max_text_length}
    if config.towers == "siglip2":  # positions: a square grid resized to each input's patches
        g = config.grid[0]
        vision = {"num_patches": g * g, **config.vision, "vision_use_head": True}
        return (tf.Siglip2VisionModel(tf.Siglip2VisionConfig(**vision)),
                tf.Siglip2TextModel(tf.Siglip2TextConfig(**text)))  # fmt: skip
    vision = {**config.vision, "image_size": config.image_size, "vision_use_head": True}
    return (tf.SiglipVisionModel(tf.SiglipVisionConfig(**vision)),
            tf.SiglipTextModel(tf.SiglipTextConfig(**text)))  # fmt: skip


class LoFiModel(nn.Module):
    """Build with :meth:`build` (fresh or pretrained towers) or load with ``encoder.load_lofi_model``."""

    def __init__(self, config: LoFiConfig) -> None:
        """Random-init modules from a complete config (``text.vocab_size`` and the decoder's
        ``vocab_size`` set, as :meth:`build` and saved configs have them)."""
        super().__init__()
        from transformers import AutoConfig, AutoModelForCausalLM

        self.config = config
        self.vision, self.text = _towers(config)
        vcfg, tcfg = self.vision.config, self.text.config
        dkw = {k: v for k, v in config.decoder.items() if k != "model_type"}
        dcfg = AutoConfig.for_model(config.decoder["model_type"], **dkw)
        self.decoder = AutoModelForCausalLM.from_config(dcfg)
        c, t, d, h = vcfg.hidden_size, tcfg.hidden_size, config.embed_dim, dcfg.hidden_size
        self.image_proj = nn.Linear(c, d)
        self.text_proj = nn.Linear(tcfg.projection_size or t, d)
        bn = config.batchnorm_embeddings
        self.image_norm = nn.BatchNorm1d(d, affine=False) if bn else nn.Identity()
        self.text_norm = nn.BatchNorm1d(d, affine=False) if bn else nn.Identity()
        self.projector = nn.Sequential(nn.Linear(c, h), nn.GELU(), nn.Linear(h, h))
        self.seg_head = nn.Sequential(nn.Linear(c, c // 2), nn.GELU(), nn.Linear(c // 2, 1))
        self.logit_scale, self.logit_bias = L.init_logit_params(
            config.logit_scale_init, config.logit_bias_init
        )
        self.region_logit_scale, self.region_logit_bias = L.init_logit_params(
            config.logit_scale_init, config.logit_bias_init
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, config: LoFiConfig, text_tokenizer: Any, decoder_tokenizer: Any) -> LoFiModel:
        """A fresh model. When the config names pretrained weights (``vision_pretrained``: a
        SigLIP / SigLIP 2 dual encoder; ``decoder_pretrained``: a causal LM), their
        architectures replace the config's (see :mod:`ricl.encoders.lofi.pretrained`) and
        their weights are loaded; the model's config then holds the resolved architecture
        with the two paths cleared, so a saved model rebuilds without the checkpoints.
        The tokenizers must be the checkpoints' own (``pretrained.load_tokenizers``).

        Raises:
            PretrainedError: a checkpoint cannot be read or does not fit.
        """
        from ricl.encoders.lofi.pretrained import load_pretrained_weights, resolve_config

        resolved = resolve_config(config, text_tokenizer, decoder_tokenizer)
        model = cls(
            resolved.model_copy(update={"vision_pretrained": None, "decoder_pretrained": None})
        )
        load_pretrained_weights(model, resolved)
        if resolved.lora is not None:
            model.apply_lora()
        return model

    def apply_lora(self) -> None:
        """Wrap both towers' attention projections with LoRA adapters (peft)."""
        from peft import LoraConfig, inject_adapter_in_model

        lc = self.config.lora
        assert lc is not None
        peft_cfg = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                              target_modules=list(lc.target_modules))  # fmt: skip
        inject_adapter_in_model(peft_cfg, self.vision)
        inject_adapter_in_model(peft_cfg, self.text)

    # ------------------------------------------------------------------ towers
    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    def vision_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> post-layernorm patch tokens (B, N, C), patches in row-major order.

        NaFlex SigLIP 2 takes flattened patches: each ``p x p`` patch becomes one
        ``(p * p * 3)`` row ordered (py, px, channel), as ``Siglip2ImageProcessor`` lays
        them out, with every patch valid (``pixel_attention_mask`` all ones) and
        ``spatial_shapes`` the ``(h, w)`` grid its position embeddings are resized to.
        """
        if self.config.towers == "siglip2":
            b, c, _, _ = pixel_values.shape
            (h, w), p = self.grid, self.config.vision.get("patch_size", 16)
            flat = pixel_values.reshape(b, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
            flat = flat.reshape(b, h * w, p * p * c)
            mask = torch.ones((b, h * w), dtype=torch.long, device=pixel_values.device)
            shapes = torch.tensor([[h, w]] * b, dtype=torch.long, device=pixel_values.device)
            out = self.vision(pixel_values=flat, pixel_attention_mask=mask, spatial_shapes=shapes)
            return out.last_hidden_state
        return self.vision(pixel_values=pixel_values).last_hidden_state

    def attention_pool(
        self, tokens: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SigLIP MAP-head pooling, optionally restricted to ``keep`` (B, N) bool patches.

        Returns pooled (B, C) and head-averaged attention weights (B, N).
        """
        head = self.vision.head
        probe = head.probe.expand(tokens.shape[0], -1, -1)
        pad = None if keep is None else ~keep
        out, weights = head.attention(probe, tokens, tokens, key_padding_mask=pad,
                                      need_weights=True, average_attn_weights=True)  # fmt: skip
        out = out + head.mlp(head.layernorm(out))
        return out[:, 0], weights[:, 0]

    def image_embeds(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """-> ``embeds`` (B, D) normalized, ``tokens`` (B, N, C), ``attn`` (B, N)."""
        tokens = self.vision_tokens(pixel_values)
        pooled, attn = self.attention_pool(tokens)
        return {
            "embeds": self.project_image(pooled),
            "tokens": tokens,
            "attn": attn,
        }

    def region_embeds(
        self, tokens: torch.Tensor, masks: torch.Tensor, image_index: torch.Tensor
    ) -> torch.Tensor:
        """Regions: ``masks`` (M, N) bool patches of image ``image_index`` (M,) -> (M, D) normalized."""
        if masks.shape[0] == 0:
            return tokens.new_zeros((0, self.config.embed_dim))
        pooled, _ = self.attention_pool(tokens[image_index], keep=masks)
        return self.project_image(pooled)

    def region_features(
        self, tokens: torch.Tensor, masks: torch.Tensor, image_index: torch.Tensor
    ) -> torch.Tensor:
        """Like :meth:`region_embeds` before norm and L2 -> (M, D); M == 0 gives an empty
        tensor that is still connected to ``image_proj`` (a gradient path for every rank)."""
        if masks.shape[0] == 0:
            return self.image_proj(tokens[:0, 0])
        pooled, _ = self.attention_pool(tokens[image_index], keep=masks)
        return self.image_proj(pooled)

    def project_image(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled vision features (B, C) -> embeddings (B, D), L2-normalized (global and regions)."""
        z = self.image_proj(pooled)
        if z.shape[0] > 1 or not self.training:  # BatchNorm cannot train on one row
            z = self.image_norm(z)
        return F.normalize(z, dim=-1)

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids padded to max_text_length -> (B, D) normalized (``config.text_pooling``)."""
        z = self.text_features(input_ids, attention_mask)
        if z.shape[0] > 1 or not self.training:
            z = self.text_norm(z)
        return F.normalize(z, dim=-1)

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> projected text features (B, D), before norm and L2. B == 0 gives an
        empty (0, D) still connected to ``text_proj`` (the towers cannot run on no rows)."""
        if input_ids.shape[0] == 0:
            w = self.text_proj.weight
            return self.text_proj(w.new_zeros((0, self.text_proj.in_features)))
        out = self.text(input_ids=input_ids, attention_mask=attention_mask)
        if self.config.text_pooling == "last":
            pooled = out.pooler_output
        else:
            m = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = self.text.head((out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1))
        return self.text_proj(pooled)

    def image_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, N, C) -> decoder prefix (B, N / pool², H)."""
        b, _, c = tokens.shape
        h, w = self.grid
        p = self.config.projector_pool
        grid = tokens.transpose(1, 2).reshape(b, c, h, w)
        pooled = F.avg_pool2d(grid, p).flatten(2).transpose(1, 2)
        return self.projector(pooled)

    def decoder_loss(self, prefix: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor,
                     mask: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:  # fmt: skip
        """LM loss of ``ids`` (B, T) after the image prefix; ``labels`` -100 where unsupervised
        (``normalizer``: see :func:`~ricl.encoders.lofi.losses.lm_loss`)."""
        emb = self.decoder.get_input_embeddings()(ids)
        inputs = torch.cat([prefix.to(emb.dtype), emb], dim=1)
        pre = torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device)
        full_mask = torch.cat([pre, mask], dim=1)
        full_labels = torch.cat(
            [torch.full(prefix.shape[:2], -100, dtype=labels.dtype, device=labels.device), labels],
            1,
        )
        logits = self.decoder(inputs_embeds=inputs, attention_mask=full_mask).logits
        return L.lm_loss(logits, full_labels, normalizer=normalizer)

    # ------------------------------------------------------------------ training
    def _embed(
        self, feats: dict[str, torch.Tensor], shard: BatchShard | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Projected features ``{image, text, region, phrase: (n, D)}`` -> (this rank's rows,
        every rank's rows), both normalized: batch norm when configured (statistics of the
        whole global batch; skipped for a single row in training) then L2. Texts/phrases
        (the contrastive columns) and, with batch norm, images/regions are gathered from all
        ranks in one collective; without a shard "every rank" is this process."""
        full, offsets = dict(feats), {k: 0 for k in feats}
        if shard is not None:
            sizes = {"image": shard.sample_sizes, "text": shard.sample_sizes,
                     "region": shard.region_sizes, "phrase": shard.region_sizes}  # fmt: skip
            bn = self.config.batchnorm_embeddings
            need = [k for k in feats if bn or k in ("text", "phrase")]
            full.update(shard.gather({k: (feats[k], sizes[k]) for k in need}))
            offsets.update({k: shard.offset(sizes[k]) for k in need})
        local: dict[str, torch.Tensor] = {}
        for k, z in full.items():  # image before region, text before phrase: BN update order
            if z.shape[0] > 1 or not self.training:
                z = (self.image_norm if k in ("image", "region") else self.text_norm)(z)
            full[k] = F.normalize(z, dim=-1)
            local[k] = full[k][offsets[k] : offsets[k] + feats[k].shape[0]]
        return local, full

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One training step's loss terms for a collated batch (see ``lofi.data.LoFiCollator``).

        With ``batch["shard"]`` (a :class:`~ricl.encoders.lofi.shard.BatchShard`, from
        ``LoFiCollator.shard``) the batch is one data-parallel rank's slice and each term is
        this rank's estimate of the global-batch term: the mean over ranks of the terms and
        of their gradients equals the single-process values (see :mod:`.shard`). Every rank
        must then call forward and backward the same number of times (one collective each).
        """
        w = self.config.weights
        shard: BatchShard | None = batch.get("shard")
        tokens = self.vision_tokens(batch["pixel_values"])
        pooled, attn = self.attention_pool(tokens)
        feats = {"image": self.image_proj(pooled)}
        if w.sigmoid > 0 or w.region_contrast > 0:
            feats["text"] = self.text_features(batch["text_ids"], batch["text_mask"])
        if w.region_contrast > 0:
            feats["region"] = self.region_features(
                tokens, batch["region_masks"], batch["region_image"]
            )
            feats["phrase"] = self.text_features(
                batch["region_text_ids"], batch["region_text_mask"]
            )
        local, full = self._embed(feats, shard)
        world = 1 if shard is None else shard.world
        out: dict[str, torch.Tensor] = {}
        if w.sigmoid > 0:
            out["sigmoid_loss"] = L.sigmoid_loss_rows(
                local["image"], full["text"], self.logit_scale, self.logit_bias, batch["positives"],
                row_offset=0 if shard is None else shard.offset(shard.sample_sizes),
            )  # fmt: skip
        if w.caption > 0 or w.location > 0:
            prefix = self.image_prefix(tokens)
            for key in ("caption", "location"):
                if getattr(w, key) > 0:
                    tokens_global = None if shard is None else getattr(shard, f"{key}_tokens")
                    norm = None if tokens_global is None else max(tokens_global, 1) / world
                    out[f"{key}_loss"] = self.decoder_loss(prefix, *batch[key], normalizer=norm)
        if w.pseudo_seg > 0:  # a mean over the (equal-sized) local slice
            body = L.body_mask_from_pixels(batch["pixel_values"], self.grid)
            b = attn.shape[0]
            target = L.pseudo_masks_from_attention(attn.detach().reshape(b, *self.grid), body,
                                                   self.config.seg_percentile, self.config.seg_sigma)  # fmt: skip
            logits = self.seg_head(tokens).reshape(b, *self.grid)
            out["pseudo_seg_loss"] = L.dice_bce_loss(logits, target)
        if w.region_contrast > 0:
            out["region_contrast_loss"] = L.region_contrast_loss(
                local["region"], full["phrase"], self.region_logit_scale, self.region_logit_bias,
                batch["region_same"],
                row_offset=0 if shard is None else shard.offset(shard.region_sizes),
                normalizer=None if shard is None else max(sum(shard.region_sizes), 1) / world,
            )  # fmt: skip
        out["logit_scale"] = self.logit_scale.detach().exp()
        return out
