"""Training samples and batches for the LoFi model.

A :class:`LoFiSample` is one study: its image letterboxed to the model's square, the
report (all its sentences), and its grounded findings with boxes on the SQUARE.
:class:`LoFiCollator` turns samples into the tensors ``LoFiModel.forward`` consumes:

* ``pixel_values`` (B, 3, S, S), normalized with the config's ``image_mean`` / ``image_std``
  (SigLIP's 0.5 / 0.5 unless a vision checkpoint says otherwise);
* ``text_ids``/``text_mask`` (B, T) report tokens, ``positives`` (B, B) identical reports;
* ``caption``: (ids, labels, mask) — "Describe the findings." -> the report;
* ``location``: (ids, labels, mask) — per sample, either grounding
  (``Detect all instances of "<phrase>".`` -> ``[[x1,y1,x2,y2],...]``, 0-1000 on the
  padded square, sorted by x1) or dense captioning (``Describe the region [[...]].`` ->
  the phrase), with probability ``grounding_share`` for grounding;
* ``region_masks`` (M, N) patches of each gold box, ``region_image`` (M,),
  ``region_text_ids``/``region_text_mask`` (M, T) phrases, ``region_same`` (M, M).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ricl.boxes.transforms import letterbox
from ricl.encoders.base import box_patch_mask
from ricl.encoders.lofi.config import LoFiConfig
from ricl.encoders.lofi.losses import format_box_answer
from ricl.encoders.lofi.shard import AllGather, BatchShard
from ricl.types import Box, Study

__all__ = [
    "CAPTION_PROMPT",
    "LoFiCollator",
    "LoFiSample",
    "grounding_prompt",
    "load_samples",
    "region_prompt",
]

CAPTION_PROMPT = "Describe the findings."


def grounding_prompt(phrase: str) -> str:
    return f'Detect all instances of "{phrase}".'


def region_prompt(boxes: Sequence[Box]) -> str:
    return f"Describe the region {format_box_answer([b.to_list() for b in boxes])}."


@dataclass(frozen=True, slots=True)
class LoFiSample:
    """One study ready for training. ``pixels``: (S, S) uint8; boxes normalized to the square."""

    study_id: str
    pixels: np.ndarray
    report: str
    findings: tuple[tuple[str, tuple[Box, ...]], ...]


def load_samples(
    studies: Sequence[Study], image_file: Callable[[Study], Path], image_size: int
) -> list[LoFiSample]:
    """Read, window and letterbox each study's image; map its gold boxes onto the square."""
    from ricl.data.images import load_image

    out = []
    for study in studies:
        img = load_image(image_file(study))
        t = letterbox(img.width, img.height, image_size)
        pixels = np.asarray(t.apply(img.to_pil()), dtype=np.uint8)
        findings = []
        for f in study.findings:
            if f.abnormal and f.boxes:
                boxes = tuple(b for b in (t.box_to_square(x) for x in f.boxes) if b is not None)
                if boxes:
                    findings.append((f.sentence_en, boxes))
        report = " ".join(f.sentence_en for f in study.findings)
        out.append(LoFiSample(study.study_id, pixels, report, tuple(findings)))
    return out


def pixels_to_tensor(
    pixels: Sequence[np.ndarray],
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> Any:
    """(S, S) uint8 grey images -> (B, 3, S, S) float32: ``(x / 255 - mean[c]) / std[c]`` for
    each of the 3 channels (the defaults, SigLIP's, give [-1, 1]). Raises ValueError when
    the images differ in size (they cannot be stacked)."""
    import torch

    x = torch.from_numpy(np.stack(pixels)).float().div_(255.0).unsqueeze(1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


class LoFiCollator:
    """Samples -> batch dict. Deterministic for a seed (one RNG for task/finding choice)."""

    def __init__(
        self, config: LoFiConfig, text_tokenizer: Any, decoder_tokenizer: Any, seed: int = 0
    ):
        self.config = config
        self.text_tok = text_tokenizer
        self.dec_tok = decoder_tokenizer
        self.rng = np.random.default_rng(seed)

    def _texts(self, texts: Sequence[str]) -> tuple[Any, Any]:
        enc = self.text_tok(list(texts), padding="max_length", truncation=True, padding_side="right",
                            max_length=self.config.max_text_length, return_tensors="pt")  # fmt: skip
        return enc["input_ids"], enc["attention_mask"]

    def _token_rows(
        self, pairs: Sequence[tuple[str, str | None]]
    ) -> list[tuple[list[int], list[int]]]:
        """(prompt, target or None) -> (ids, labels) lists, labels -100 on the prompt."""
        tok, limit = self.dec_tok, self.config.max_target_length
        rows = []
        for prompt, target in pairs:
            p = tok(prompt)["input_ids"]
            t = (
                []
                if target is None
                else tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            )
            rows.append(((p + t)[:limit], ([-100] * len(p) + t)[:limit]))
        return rows

    def _pack(self, rows: Sequence[tuple[list[int], list[int]]]) -> tuple[Any, Any, Any]:
        """Token rows -> ids, labels (-100 on prompt/padding), mask; (B, T), right-padded."""
        import torch

        width = max((len(r[0]) for r in rows), default=1)
        ids = torch.full((len(rows), width), self.dec_tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (a, b) in enumerate(rows):
            ids[i, : len(a)] = torch.tensor(a)
            labels[i, : len(b)] = torch.tensor(b)
            mask[i, : len(a)] = 1
        return ids, labels, mask

    def _sequences(self, pairs: Sequence[tuple[str, str | None]]) -> tuple[Any, Any, Any]:
        """(prompt, target or None) -> ids, labels (-100 on prompt/padding), mask; (B, T)."""
        return self._pack(self._token_rows(pairs))

    def _location_pair(self, sample: LoFiSample) -> tuple[str, str | None]:
        if not sample.findings:
            return CAPTION_PROMPT, None  # nothing to localize: unsupervised row
        phrase, boxes = sample.findings[int(self.rng.integers(len(sample.findings)))]
        if self.rng.random() < self.config.grounding_share:
            return grounding_prompt(phrase), format_box_answer([b.to_list() for b in boxes])
        return region_prompt(boxes), phrase

    def __call__(self, samples: Sequence[LoFiSample]) -> dict[str, Any]:
        """The batch of ``samples`` (see the module docstring for its keys and shapes)."""
        return self._collate(samples, 0, len(samples))[0]

    def shard(
        self, samples: Sequence[LoFiSample], rank: int, world: int, all_gather: AllGather
    ) -> dict[str, Any]:
        """Rank ``rank``'s contiguous ``len(samples) / world`` samples of a global batch.

        The random choices are those ``self(samples)`` makes (drawn for the whole batch, in
        order); ``positives`` is (b, B) and ``region_same`` (m, M) against the whole batch;
        ``batch["shard"]`` is the :class:`BatchShard` ``LoFiModel.forward`` needs. Every
        rank must collate the same samples with the same seed. Raises ValueError when
        ``len(samples)`` is not a multiple of ``world`` or ``rank`` is out of range.
        """
        n = len(samples)
        if world < 1 or n % world or not 0 <= rank < world:
            raise ValueError(f"cannot split {n} samples into {world} equal shards (rank {rank})")
        b = n // world
        batch, regions, caption_tokens, location_tokens = self._collate(
            samples, rank * b, (rank + 1) * b
        )
        batch["shard"] = BatchShard(
            rank=rank,
            sample_sizes=(b,) * world,
            region_sizes=tuple(sum(regions[r * b : (r + 1) * b]) for r in range(world)),
            caption_tokens=caption_tokens,
            location_tokens=location_tokens,
            all_gather=all_gather,
        )
        return batch

    def _collate(
        self, samples: Sequence[LoFiSample], lo: int, hi: int
    ) -> tuple[dict[str, Any], list[int], int, int]:
        """Batch of ``samples[lo:hi]`` with the whole batch's random choices and cross terms,
        + (regions per sample, supervised caption tokens, supervised location tokens) of
        the whole batch."""
        import torch

        reports = [s.report for s in samples]
        caption = self._token_rows([(CAPTION_PROMPT, r) for r in reports])
        location = self._token_rows([self._location_pair(s) for s in samples])  # RNG: in order
        phrases = [p for s in samples for p, boxes in s.findings for _ in boxes]
        regions = [sum(len(boxes) for _, boxes in s.findings) for s in samples]
        r0, r1 = sum(regions[:lo]), sum(regions[:hi])
        local = samples[lo:hi]
        text_ids, text_mask = self._texts(reports[lo:hi])
        masks, image_index = [], []
        for i, s in enumerate(local):
            for _, boxes in s.findings:
                for b in boxes:
                    masks.append(box_patch_mask(b, self.config.grid))
                    image_index.append(i)
        n_patches = self.config.grid[0] * self.config.grid[1]
        batch: dict[str, Any] = {
            "pixel_values": pixels_to_tensor(
                [s.pixels for s in local], self.config.image_mean, self.config.image_std
            ),
            "text_ids": text_ids,
            "text_mask": text_mask,
            "positives": torch.tensor(
                [[a == b for b in reports] for a in reports[lo:hi]], dtype=torch.bool
            ).reshape(hi - lo, len(reports)),
            "caption": self._pack(caption[lo:hi]),
            "location": self._pack(location[lo:hi]),
            "region_masks": torch.from_numpy(np.array(masks, dtype=bool).reshape(-1, n_patches)),
            "region_image": torch.tensor(image_index, dtype=torch.long),
            "region_same": torch.tensor(
                [[a == b for b in phrases] for a in phrases[r0:r1]], dtype=torch.bool
            ).reshape(r1 - r0, len(phrases)),
        }
        if r1 > r0:
            batch["region_text_ids"], batch["region_text_mask"] = self._texts(phrases[r0:r1])
        else:
            t = self.config.max_text_length
            batch["region_text_ids"] = torch.zeros((0, t), dtype=torch.long)
            batch["region_text_mask"] = torch.zeros((0, t), dtype=torch.long)

        def supervised(rows: list[tuple[list[int], list[int]]]) -> int:
            return sum(1 for _, labels in rows for y in labels if y != -100)

        return batch, regions, supervised(caption), supervised(location)
