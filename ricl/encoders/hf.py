"""Any transformers dual encoder (SigLIP, NaFlex SigLIP2, CLIP) as a ricl :class:`Encoder`.

``load_hf_encoder("path/to/model")`` (or ``ricl.encoders.load("hf:path/to/model")``); the
loading itself lives in :mod:`ricl.encoders.hf_loading`.

Families, detected from ``config.model_type``:

* ``siglip``  SigLIP and the fixed-resolution SigLIP2 checkpoints (which use SiglipModel);
* ``siglip2`` NaFlex SigLIP2: fed one square ``g x g`` patch grid, ``g = isqrt(max_num_patches)``;
* ``clip``    CLIP. Anything else raises :class:`EncoderLoadError`.

Preprocessing is ricl's own, from the values of the model's image processor config
(``image_mean``, ``image_std``, ``rescale_factor``, ``max_num_patches``; no processor class,
so no torchvision): every image is letterboxed (black padding, bilinear resize) to the
model's square input side, and the :class:`SquareTransform` is recorded, so boxes map
exactly onto patches. ``letterbox_inputs=False`` stretches instead, like the stock SigLIP
processor; a stretch is an exact ``SquareTransform`` too (kind ``letterbox``, unequal
scales, zero offsets). Unlike the stock CLIP processor nothing is centre-cropped.

Region embeddings pool the patch tokens inside a box with the model's own pooling:
SigLIP/SigLIP2 run the attention-pooling head (``vision_model.head``) with a key padding
mask that keeps only the box's patches (the full-image box of a square or stretched image
gives exactly the global embedding); CLIP projects the mean of the post-layernorm patch
tokens in the box with ``visual_projection`` (CLIP's global embedding is its CLS token, so
there the full-image region differs from the global embedding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ricl.boxes.transforms import SquareTransform, letterbox
from ricl.data.images import to_pil_rgb
from ricl.encoders.base import (
    ImageEncoding,
    ImageInput,
    box_patch_mask,
    fingerprint_files,
)
from ricl.encoders.hf_loading import SUPPORTED_FAMILIES, EncoderLoadError, load_hf_encoder
from ricl.types import Box

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["SUPPORTED_FAMILIES", "EncoderLoadError", "HFEncoder", "load_hf_encoder"]

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class HFEncoder:
    """A transformers dual encoder; see the module docstring. :func:`load_hf_encoder` builds
    it from a loaded ``model`` (eval mode, on its device), its ``tokenizer``, its image
    processor config (a dict, may be empty) and ``source``, the directory or hub id.

    Attributes: ``name`` (``"hf:<name_or_path>"``), ``embed_dim``, ``family``, ``side``
    (input square, px), ``grid`` ``(h, w)``, ``patch_size``, ``model``, ``tokenizer``.
    """

    def __init__(
        self,
        name: str,
        source: str,
        model: Any,
        tokenizer: Any,
        image_processor_config: dict[str, Any],
        *,
        image_size: int | None = None,
        letterbox_inputs: bool = True,
        max_text_length: int | None = None,
    ) -> None:
        self.name, self._source = f"hf:{name}", source
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.family: str = model.config.model_type
        family, proc = self.family, image_processor_config
        vcfg, tcfg = model.config.vision_config, model.config.text_config
        self.patch_size: int = int(vcfg.patch_size)
        if family == "siglip2":
            g = (image_size or 0) // self.patch_size or math.isqrt(
                int(proc.get("max_num_patches", vcfg.num_patches))
            )
            self.side = g * self.patch_size
        else:
            self.side = int(image_size or vcfg.image_size)
            g = self.side // self.patch_size
        self.grid: tuple[int, int] = (g, g)
        self._interpolate = family != "siglip2" and self.side != vcfg.image_size
        self.embed_dim: int = int(
            model.config.projection_dim if family == "clip" else vcfg.hidden_size
        )
        default = (_CLIP_MEAN, _CLIP_STD) if family == "clip" else ((0.5,) * 3, (0.5,) * 3)
        mean, std = (
            (proc.get("image_mean", default[0]), proc.get("image_std", default[1]))
            if proc.get("do_normalize", True)
            else ((0.0,) * 3, (1.0,) * 3)
        )
        rescale = proc.get("rescale_factor", 1 / 255) if proc.get("do_rescale", True) else 1.0
        self._prep = {"side": self.side, "letterbox": letterbox_inputs, "rescale": float(rescale),
                      "mean": [float(v) for v in mean], "std": [float(v) for v in std]}  # fmt: skip
        limit = int(tcfg.max_position_embeddings)
        self.max_text_length = min(max_text_length or (limit if family == "clip" else 64), limit)
        self.tokenizer.padding_side = "right"  # SigLIP pools the last position
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ images
    def transform_for(self, width: int, height: int) -> SquareTransform:
        """The map from a ``width x height`` original into this encoder's input square."""
        if self._prep["letterbox"]:
            return letterbox(width, height, self.side)
        s = self.side
        return SquareTransform("letterbox", width, height, s, s / width, s / height, 0.0, 0.0)

    def _pixels(self, images: Sequence[ImageInput]) -> tuple[torch.Tensor, list[SquareTransform]]:
        """Images -> normalized ``(n, 3, side, side)`` pixels on the model's device and dtype."""
        import numpy as np
        import torch

        arrays, transforms = [], []
        for image in images:
            pil = to_pil_rgb(image)
            t = self.transform_for(*pil.size)
            arrays.append(np.asarray(t.apply(pil, fill=0), dtype=np.float32))
            transforms.append(t)
        mean, std = (np.asarray(self._prep[k], np.float32) for k in ("mean", "std"))
        x = (np.stack(arrays) * np.float32(self._prep["rescale"]) - mean) / std
        pixels = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        return pixels.to(self.device, next(self.model.parameters()).dtype), transforms

    def _vision(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels -> (image features ``(n, d)``, the patch tokens pooling reads ``(n, h*w, c)``)."""
        import torch

        m = self.model
        if self.family == "siglip2":  # patchify like Siglip2ImageProcessor: (row, col, py, px, c)
            n, p, g = pixels.shape[0], self.patch_size, self.grid[0]
            flat = pixels.reshape(n, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, -1)
            out = m.get_image_features(
                pixel_values=flat,
                pixel_attention_mask=torch.ones(n, g * g, dtype=torch.long, device=self.device),
                spatial_shapes=torch.tensor([[g, g]] * n, device=self.device),
            )
            return out.pooler_output, out.last_hidden_state
        out = m.get_image_features(pixel_values=pixels, interpolate_pos_encoding=self._interpolate)
        if self.family == "clip":  # drop CLS; CLIP's last_hidden_state is before post_layernorm
            return out.pooler_output, m.vision_model.post_layernorm(out.last_hidden_state[:, 1:])
        return out.pooler_output, out.last_hidden_state

    def encode_images(self, images: Sequence[ImageInput], batch_size: int = 16) -> ImageEncoding:
        """``n`` images -> embeddings ``(n, embed_dim)`` (normalized), patch_tokens
        ``(n, h*w, c)`` (SigLIP: post-layernorm last hidden state; CLIP: the same without
        CLS), grid ``(h, w)`` and one transform per image. All float32. Raises
        ImageLoadError for an unreadable path, TypeError for an unsupported input."""
        import numpy as np
        import torch

        embs, toks, transforms = [], [], []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                pixels, ts = self._pixels(images[start : start + batch_size])
                feats, tokens = self._vision(pixels)
                embs.append(_normalized(feats))
                toks.append(tokens.float().cpu().numpy())
                transforms += ts
        h, w = self.grid
        c = int(self.model.config.vision_config.hidden_size)
        return ImageEncoding(
            embeddings=np.concatenate(embs) if embs else np.zeros((0, self.embed_dim), np.float32),
            patch_tokens=np.concatenate(toks) if toks else np.zeros((0, h * w, c), np.float32),
            grid=self.grid,
            transforms=transforms,
        )

    # ------------------------------------------------------------------ regions
    def box_mask(self, transform: SquareTransform, box: Box) -> np.ndarray:
        """Boolean ``(h*w,)`` mask of the patches an original-image box covers (never empty).

        The box is mapped into the square by ``transform``; when the grid covers less than
        the side (e.g. 384 px at patch 14 = 27 patches, 378 px) it is rescaled to that part.
        """
        sq = transform.box_to_square(box)
        if sq is None:  # pragma: no cover - letterbox and stretch keep every box
            raise ValueError(f"{box} falls outside the encoder's input square")
        f = self.side / (self.grid[1] * self.patch_size)
        if f != 1.0:
            x0, y0 = min(sq.x_min * f, 1 - 1e-9), min(sq.y_min * f, 1 - 1e-9)
            x1 = min(max(sq.x_max * f, x0 + 1e-9), 1.0)
            sq = Box(x0, y0, x1, min(max(sq.y_max * f, y0 + 1e-9), 1.0))
        return box_patch_mask(sq, self.grid)

    def _pool(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The model's pooling over the kept patches: ``(m, N, c)``, ``(m, N)`` -> ``(m, d)``."""
        if self.family == "clip":
            w = keep.to(tokens.dtype).unsqueeze(-1)
            return self.model.visual_projection((tokens * w).sum(1) / w.sum(1))
        head = self.model.vision_model.head  # Siglip(2)MultiheadAttentionPoolingHead, unrolled
        probe = head.probe.repeat(tokens.shape[0], 1, 1)
        h = head.attention(probe, tokens, tokens, key_padding_mask=~keep)[0]
        h = h + head.mlp(head.layernorm(h))
        return h[:, 0]

    def encode_regions(
        self, images: Sequence[ImageInput], boxes: Sequence[Sequence[Box]], batch_size: int = 16
    ) -> np.ndarray:
        """Regions ``boxes[i]`` of ``images[i]`` -> ``(sum(len(b)), embed_dim)`` float32,
        normalized, in order. Raises ValueError when the two lengths differ."""
        import numpy as np
        import torch

        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        pairs = [(im, list(bs)) for im, bs in zip(images, boxes) if len(bs)]
        out = []
        with torch.inference_mode():
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start : start + batch_size]
                pixels, transforms = self._pixels([im for im, _ in chunk])
                _, tokens = self._vision(pixels)
                idx = [j for j, (_, bs) in enumerate(chunk) for _ in bs]
                masks = [self.box_mask(t, b) for t, (_, bs) in zip(transforms, chunk) for b in bs]
                keep = torch.from_numpy(np.stack(masks)).to(self.device)
                out.append(_normalized(self._pool(tokens[idx], keep)))
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    # ------------------------------------------------------------------ texts
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``n`` texts -> ``(n, embed_dim)`` float32, normalized. SigLIP: lowercased, padded
        to exactly ``max_text_length`` tokens, no attention mask (as trained); CLIP: padded
        to the longest text with its attention mask. Longer texts are truncated."""
        import numpy as np
        import torch

        if isinstance(texts, str):
            raise TypeError("encode_texts takes a sequence of texts, not one string")
        out = []
        siglip = self.family != "clip"
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = [t.lower() if siglip else t for t in texts[start : start + batch_size]]
                enc = self.tokenizer(
                    batch,
                    padding="max_length" if siglip else True,
                    max_length=self.max_text_length,
                    truncation=True,
                    return_tensors="pt",
                )
                kwargs = {"input_ids": enc["input_ids"].to(self.device)}
                if not siglip:
                    kwargs["attention_mask"] = enc["attention_mask"].to(self.device)
                feats = self.model.get_text_features(**kwargs)
                out.append(_normalized(getattr(feats, "pooler_output", feats)))
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """Hash of model class + config.json + weight files (+ the image preprocessing,
        which changes every stored embedding); computed once, then cached."""
        if self._fingerprint is None:
            directory = Path(self._source)
            if not directory.is_dir():  # a hub id: its snapshot in the local cache
                from transformers.utils import cached_file

                path = cached_file(self._source, "config.json", local_files_only=True)
                directory = Path(path).parent
            files = [
                p
                for p in directory.iterdir()
                if p.is_file() and (p.name == "config.json" or p.suffix in (".safetensors", ".bin"))
            ]
            extra = {"class": type(self.model).__name__, "preprocessing": self._prep}
            self._fingerprint = fingerprint_files(files, extra)
        return self._fingerprint

    def __repr__(self) -> str:
        return f"HFEncoder({self.name!r}, family={self.family}, side={self.side}, grid={self.grid})"


def _normalized(x: torch.Tensor) -> np.ndarray:
    """L2-normalize rows in float32 -> numpy ``(n, d)``."""
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy()
