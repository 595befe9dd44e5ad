"""Fakes shared by the tests (a helper module, not a test module): a deterministic fake
encoder (no torch), a small synthetic grounding dataset (no images needed: the fake encoder
hashes names) and a k=2 OpenAI-backend request."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from ricl.boxes.codecs import get_codec
from ricl.data.dataset import GroundingDataset
from ricl.prompting.builder import build_prompt, exemplar_image, query_image
from ricl.prompting.strategies import load_strategy
from ricl.types import Box, Finding, Study
from ricl.vlm.base import VLMRequest

DIM = 16
LABELS = ["nodule", "pleural effusion", "cardiomegaly", "pneumothorax", "atelectasis"]


def unit(seed_text: str, dim: int = DIM) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeEncoder:
    """Deterministic embeddings from names: an image by its file name, a region by file
    name + box, a text by its words (identical text -> identical vector). Counts calls.
    ``fail_after``: raise RuntimeError on that many-th ``encode_images`` call (a crash)."""

    def __init__(self, tag: str = "fake", dim: int = DIM, fail_after: int | None = None):
        self.name = f"fake:{tag}"
        self.embed_dim = dim
        self.tag = tag
        self.fail_after = fail_after
        self.image_batches: list[list[str]] = []
        self.region_calls = 0

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.tag}/{self.embed_dim}".encode()).hexdigest()[:16]

    def encode_images(self, images, batch_size: int = 16):
        from ricl.encoders.base import ImageEncoding

        if self.fail_after is not None and len(self.image_batches) >= self.fail_after:
            raise RuntimeError("simulated crash mid-build")
        names = [Path(str(p)).name for p in images]
        self.image_batches.append(names)
        emb = np.stack([unit(n, self.embed_dim) for n in names]) if names else None
        return ImageEncoding(embeddings=emb if emb is not None else np.zeros((0, self.embed_dim)))

    def encode_texts(self, texts, batch_size: int = 64) -> np.ndarray:
        return np.stack([unit("text:" + t.lower().strip(), self.embed_dim) for t in texts])

    def encode_regions(self, images, boxes, batch_size: int = 16) -> np.ndarray:
        self.region_calls += 1
        rows = [
            unit(f"{Path(str(p)).name}|{b.to_list()}", self.embed_dim)
            for p, bs in zip(images, boxes, strict=True)
            for b in bs
        ]
        return np.stack(rows) if rows else np.zeros((0, self.embed_dim), np.float32)


def make_studies(n: int = 30, seed: int = 0, split: str = "train") -> list[Study]:
    """``n`` studies; patient ``P{i // 3}`` (3 studies each); every 5th study is normal;
    study 1 repeats the image of study 0 (a duplicate image, for de-duplication)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        findings: list[Finding] = [Finding(index=0, sentence_en="No pneumothorax.")]
        if i % 5 != 4:
            for j in range(1 + i % 2):
                x, y = rng.uniform(0.05, 0.5, 2)
                boxes = tuple(Box(x + 0.1 * b, y, x + 0.1 * b + 0.2, y + 0.3) for b in range(1 + (i + j) % 2))  # fmt: skip
                label = LABELS[(i + 2 * j) % len(LABELS)]
                findings.append(
                    Finding(index=j + 1, sentence_en=f"{label} number {i}", abnormal=True,
                            boxes=boxes, labels=(label,), locations=("right",), label_group=label)
                )  # fmt: skip
        image = "img0.png" if i == 1 else f"img{i}.png"
        out.append(Study(study_id=f"S{i}", image_id=image, patient_id=f"P{i // 3}", split=split,
                         image_path=f"sub/{image}", findings=tuple(findings), image_size=(100, 80)))  # fmt: skip
    return out


def make_dataset(tmp_path: Path, n: int = 30) -> GroundingDataset:
    root = tmp_path / "release"
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(f'{{"n": {n}}}')
    studies = tuple(make_studies(n))
    return GroundingDataset("synthetic", root, root / "images", studies, ())


def make_request(tmp_path: Path, phrase: str = "nodule") -> VLMRequest:
    """A k=2 request (three images) with the qwen2vl codec."""
    codec = get_codec("qwen2vl")
    paths = []
    for i, shade in enumerate((40, 120, 200)):
        p = tmp_path / f"img{i}.png"
        Image.new("L", (64, 48), shade).save(p)
        paths.append(p)
    q = query_image(paths[2], codec=codec, max_side=None)
    from tests.agent_fixtures import exemplar

    exs = [exemplar(i, ["nodule right upper"], size=(64, 48)) for i in range(2)]
    pairs = [
        (e, exemplar_image(e, paths[i], codec=codec, max_side=None)) for i, e in enumerate(exs)
    ]
    prompt = build_prompt(load_strategy("k-shot"), codec, phrase, q, pairs)
    return VLMRequest(prompt, phrase, codec)
