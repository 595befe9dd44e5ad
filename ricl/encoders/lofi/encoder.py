"""LoFi model directories (save/load) and the LoFi model as a ricl :class:`Encoder`.

A LoFi directory holds::

    ricl_encoder.json      {"kind": "lofi", "format": 1}   (how ricl.encoders.load finds the kind)
    config.json            the complete LoFiConfig (rebuilds the architecture)
    model.safetensors      all weights (safetensors: never pickle)
    text_tokenizer/        tokenizer of the text tower
    decoder_tokenizer/     tokenizer of the captioning decoder

Saving is atomic (written to a temporary sibling, then renamed), so an interrupted
checkpoint never leaves a directory that loads.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ricl.data.images import to_pil_rgb
from ricl.encoders.base import (
    ImageEncoding,
    ImageInput,
    box_patch_mask,
    fingerprint_files,
)
from ricl.errors import RiclError
from ricl.types import Box

__all__ = ["LoFiEncoder", "load_lofi_encoder", "load_lofi_model", "save_lofi_model"]

FORMAT = 1


def save_lofi_model(
    model: Any, text_tokenizer: Any, decoder_tokenizer: Any, out_dir: str | Path
) -> Path:
    """Write a LoFi directory atomically; returns its path."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "config.json").write_text(model.config.to_json())
        save_model(model, str(tmp / "model.safetensors"))  # handles tied decoder embeddings
        text_tokenizer.save_pretrained(tmp / "text_tokenizer")
        decoder_tokenizer.save_pretrained(tmp / "decoder_tokenizer")
        (tmp / "ricl_encoder.json").write_text(json.dumps({"kind": "lofi", "format": FORMAT}))
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_lofi_model(path: str | Path, device: str | None = None) -> tuple[Any, Any, Any]:
    """-> ``(model, text_tokenizer, decoder_tokenizer)`` from a LoFi directory (eval mode).

    Raises:
        RiclError: the directory is missing a file or has another format version.
    """
    from safetensors.torch import load_model
    from transformers import AutoTokenizer

    from ricl.encoders.lofi.config import LoFiConfig
    from ricl.encoders.lofi.model import LoFiModel

    path = Path(path)
    for name in (
        "ricl_encoder.json",
        "config.json",
        "model.safetensors",
        "text_tokenizer",
        "decoder_tokenizer",
    ):
        if not (path / name).exists():
            raise RiclError(f"{path}: not a LoFi model directory ({name} is missing)")
    meta = json.loads((path / "ricl_encoder.json").read_text())
    if meta.get("kind") != "lofi" or meta.get("format") != FORMAT:
        raise RiclError(
            f"{path}: ricl_encoder.json says {meta}, expected kind 'lofi' format {FORMAT}"
        )
    config = LoFiConfig.model_validate_json((path / "config.json").read_text())
    model = LoFiModel(config)
    if config.lora is not None:
        model.apply_lora()
    load_model(model, str(path / "model.safetensors"), device=device or "cpu")
    model.to(device or "cpu").eval()
    text_tok = AutoTokenizer.from_pretrained(path / "text_tokenizer")
    dec_tok = AutoTokenizer.from_pretrained(path / "decoder_tokenizer")
    return model, text_tok, dec_tok


class LoFiEncoder:
    """A LoFi model behind the :class:`ricl.encoders.Encoder` protocol.

    Images are letterboxed to the model's square; boxes map exactly onto its patch grid.
    """

    def __init__(
        self, model: Any, text_tokenizer: Any, path: Path | None = None, device: str = "cpu"
    ):
        self.model = model.eval()
        self.text_tokenizer = text_tokenizer
        self.path = path
        self.device = device
        self.name = f"lofi:{path}" if path else "lofi"
        self.embed_dim = model.config.embed_dim
        self._fingerprint: str | None = None

    def _prepare(self, images: Sequence[ImageInput]) -> tuple[list[np.ndarray], list[Any]]:
        from ricl.boxes.transforms import letterbox

        size = self.model.config.image_size
        pixels, transforms = [], []
        for image in images:
            pil = to_pil_rgb(image).convert("L")
            t = letterbox(pil.width, pil.height, size)
            pixels.append(np.asarray(t.apply(pil), dtype=np.uint8))
            transforms.append(t)
        return pixels, transforms

    def _forward_tokens(self, pixels: list[np.ndarray]) -> Any:
        from ricl.encoders.lofi.data import pixels_to_tensor

        cfg = self.model.config
        x = pixels_to_tensor(pixels, cfg.image_mean, cfg.image_std)
        return self.model.vision_tokens(x.to(self.device))

    def encode_images(self, images: Sequence[ImageInput], batch_size: int = 16) -> ImageEncoding:
        """-> embeddings (n, D), patch tokens (n, N, C), grid, per-image letterbox transforms."""
        import torch

        embs, toks, transforms = [], [], []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                pixels, ts = self._prepare(images[i : i + batch_size])
                tokens = self._forward_tokens(pixels)
                pooled, _ = self.model.attention_pool(tokens)
                embs.append(self.model.project_image(pooled).float().cpu().numpy())
                toks.append(tokens.float().cpu().numpy())
                transforms += ts
        d, c = self.embed_dim, self.model.vision.config.hidden_size
        n = self.model.config.grid[0] * self.model.config.grid[1]
        return ImageEncoding(
            embeddings=np.concatenate(embs) if embs else np.zeros((0, d), np.float32),
            patch_tokens=np.concatenate(toks) if toks else np.zeros((0, n, c), np.float32),
            grid=self.model.config.grid,
            transforms=transforms,
        )

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """-> (n, D) normalized text embeddings."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.text_tokenizer(list(texts[i : i + batch_size]), padding="max_length", truncation=True,
                                          padding_side="right", max_length=self.model.config.max_text_length,
                                          return_tensors="pt")  # fmt: skip
                emb = self.model.text_embeds(
                    enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
                )
                out.append(emb.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def encode_regions(
        self, images: Sequence[ImageInput], boxes: Sequence[Sequence[Box]], batch_size: int = 16
    ) -> np.ndarray:
        """-> (sum(len(b)), D): attention pooling restricted to the patches inside each box."""
        import torch

        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        out = []
        grid = self.model.config.grid
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                pixels, ts = self._prepare(images[i : i + batch_size])
                masks, index = [], []
                for j, (t, bs) in enumerate(zip(ts, boxes[i : i + batch_size], strict=True)):
                    for b in bs:
                        sq = t.box_to_square(b)
                        if sq is None:  # pragma: no cover - letterbox keeps every box
                            raise ValueError(f"box {b} falls outside the image")
                        masks.append(box_patch_mask(sq, grid))
                        index.append(j)
                if not masks:
                    continue
                tokens = self._forward_tokens(pixels)
                emb = self.model.region_embeds(
                    tokens,
                    torch.from_numpy(np.stack(masks)).to(self.device),
                    torch.tensor(index, device=self.device),
                )
                out.append(emb.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def fingerprint(self) -> str:
        """Hash of config + weights (files when loaded from a directory)."""
        if self._fingerprint is None:
            if self.path is not None:
                self._fingerprint = fingerprint_files(
                    [self.path / "config.json", self.path / "model.safetensors"], extra="lofi"
                )
            else:
                import hashlib

                h = hashlib.sha256(self.model.config.to_json().encode())
                for k, v in sorted(self.model.state_dict().items()):
                    h.update(k.encode())
                    h.update(v.detach().float().cpu().numpy().tobytes())
                self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def load_lofi_encoder(target: str | Path, device: str | None = None) -> LoFiEncoder:
    """Registry loader for kind ``lofi``: a LoFi directory -> :class:`LoFiEncoder`."""
    path = Path(target)
    model, text_tok, _ = load_lofi_model(path, device=device)
    return LoFiEncoder(model, text_tok, path=path, device=device or "cpu")
