"""A torchrun worker for tests/test_train_ddp.py: one float64 training step of a tiny LoFi
model with every loss on and batch-norm embeddings, split over the ranks, against the same
step on the whole batch in one process (computed on rank 0).

    python -m torch.distributed.run --nproc_per_node W ... -m tests.ddp_worker RELEASE OUT.json

Rank 0 writes OUT.json: per-term |rank mean - single| of the losses, the largest gradient
difference over the largest gradient, the largest batch-norm running-stat difference, and
the region count of every rank (so the test knows a rank without regions was covered).
"""

from __future__ import annotations

import copy
import json
import sys

import torch

from ricl.data import load_dataset
from ricl.encoders.lofi.config import LossWeights, tiny_config
from ricl.encoders.lofi.data import LoFiCollator, load_samples
from ricl.encoders.lofi.model import LoFiModel
from ricl.encoders.tokenizer import build_word_tokenizer
from ricl_apps.train import distributed as D


def main(release: str, out: str) -> None:
    torch.set_num_threads(1)
    ctx = D.init_distributed("cpu")
    ds = load_dataset("phantom", release)
    samples = load_samples(ds.studies_of("train"), ds.image_file, 64)
    tok = build_word_tokenizer(
        [s.report for s in samples] + ['Detect all instances of "".', "Describe the region."]
    )
    torch.manual_seed(0)
    weights = LossWeights(pseudo_seg=1.0, region_contrast=1.0)
    config = tiny_config(64, weights=weights, batchnorm_embeddings=True, text_pooling="mean")
    model = LoFiModel.build(config, tok, tok).double().train()
    reference = copy.deepcopy(model)
    b = 8 // ctx.world_size

    def regions(batch: list) -> list[int]:
        n = [sum(len(boxes) for _, boxes in s.findings) for s in batch]
        return [sum(n[r * b : (r + 1) * b]) for r in range(ctx.world_size)]

    # the first window of 8 samples where some rank's slice has no gold region and others do
    start = next(i for i in range(len(samples) - 7)
                 if 0 in regions(samples[i : i + 8]) and sum(regions(samples[i : i + 8])) > 0)  # fmt: skip
    chosen = samples[start : start + 8]

    def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(weights.of(k) * v for k, v in terms.items() if k.endswith("_loss"))

    batch = LoFiCollator(config, tok, tok, seed=3).shard(
        chosen, ctx.rank, ctx.world_size, D.all_gather_rows
    )
    terms = model(batch)
    total(terms).backward()
    D.average_gradients(ctx, list(model.parameters()))
    means = D.mean_scalars(ctx, {k: v.item() for k, v in terms.items()})
    if ctx.is_main:
        ref_terms = reference(LoFiCollator(config, tok, tok, seed=3)(chosen))
        total(ref_terms).backward()
        scale = max(p.grad.abs().max().item() for p in reference.parameters() if p.grad is not None)
        grad_diff, missing = 0.0, []
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            if (p.grad is None) != (q.grad is None):
                missing.append(name)
            elif q.grad is not None:
                grad_diff = max(grad_diff, (p.grad - q.grad).abs().max().item())
        bn = max(
            (a.double() - b.double()).abs().max().item()
            for (n, a), b in zip(model.named_buffers(), reference.buffers(), strict=True)
            if "running" in n
        )
        result = {
            "loss_diff": {k: abs(means[k] - v.item()) for k, v in ref_terms.items()},
            "grad_rel_diff": grad_diff / scale,
            "grad_presence_mismatch": missing,
            "bn_stat_diff": bn,
            "region_sizes": list(batch["shard"].region_sizes),
        }
        with open(out, "w") as fh:
            json.dump(result, fh)
    D.destroy(ctx)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
