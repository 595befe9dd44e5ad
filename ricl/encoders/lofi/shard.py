"""One rank's part of a LoFi training batch that is split over data-parallel ranks.

The trainer collates each step's global batch of B samples on every rank, keeping only a
contiguous slice of B / W samples (``LoFiCollator.shard``); a :class:`BatchShard` in the
batch tells ``LoFiModel.forward`` where that slice sits and how to reach the other ranks'
embeddings. With it, every loss term the model returns is this rank's *estimate* of the
global term, built so that the mean over ranks of the terms (and of their gradients) equals
the single-process term of the whole batch:

* contrastive terms (SigLIP, region contrast): this rank's rows against every rank's
  columns (gathered with gradients), divided by the global row count / W;
* language-model terms: this rank's token cross-entropy sum divided by the global batch's
  supervised-token count / W;
* per-sample means (pseudo segmentation): the mean over the local slice (slices are equal).

Batch-norm embeddings normalize with the statistics of the whole global batch (the
projected features are gathered before the norm). Pure torch: the communication is the
``all_gather`` callable the trainer passes in (``ricl_apps.train.distributed``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AllGather", "BatchShard"]

#: ``x`` (R, D), the same shape on every rank -> (W, R, D) every rank's ``x`` in rank order,
#: with gradients flowing back to each rank's own ``x`` (summed over all ranks' uses).
AllGather = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class BatchShard:
    """Where this rank's rows sit in the global batch, and how to gather the others'.

    ``sample_sizes[r]`` / ``region_sizes[r]``: samples / gold regions of rank r (rank order =
    global order, contiguous); ``caption_tokens`` / ``location_tokens``: supervised target
    tokens of the whole global batch (the language-model divisors).
    """

    rank: int
    sample_sizes: tuple[int, ...]
    region_sizes: tuple[int, ...]
    caption_tokens: int
    location_tokens: int
    all_gather: AllGather

    @property
    def world(self) -> int:
        return len(self.sample_sizes)

    def offset(self, sizes: tuple[int, ...]) -> int:
        """First global row of this rank for a dimension split as ``sizes``."""
        return sum(sizes[: self.rank])

    def gather(self, parts: dict[str, tuple[Tensor, tuple[int, ...]]]) -> dict[str, Tensor]:
        """Every rank's rows of each part in one collective: ``{name: (local (n_rank, D),
        sizes)}`` -> ``{name: (sum(sizes), D)}`` rank-ordered, gradients flowing back to each
        rank's local rows. Parts share D and dtype; each is zero-padded to ``max(sizes)``
        rows for the exchange. Every rank must call it with the same names and sizes (they
        come from the global batch, which every rank sees), or the collective hangs."""
        width = {k: max(sizes) for k, (_, sizes) in parts.items()}
        if not parts or sum(width.values()) == 0:
            return {k: x for k, (x, _) in parts.items()}
        packed = torch.cat(
            [F.pad(x, (0, 0, 0, width[k] - x.shape[0])) for k, (x, _) in parts.items()]
        )
        every = self.all_gather(packed)  # (W, R, D)
        out, start = {}, 0
        for k, (_, sizes) in parts.items():
            out[k] = torch.cat([every[r, start : start + n] for r, n in enumerate(sizes)])
            start += width[k]
        return out
