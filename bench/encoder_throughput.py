"""Encoder throughput: images/s and peak memory of LoFi encoders built from configs.

    python bench/encoder_throughput.py                 # tiny + phantom recipe sizes, CPU
    python bench/encoder_throughput.py --so400m        # adds a SigLIP so400m-sized tower (GPU advised)

Random weights: speed does not depend on their values. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch

from ricl.encoders.lofi.config import LoFiConfig, tiny_config
from ricl.encoders.lofi.encoder import LoFiEncoder
from ricl.encoders.lofi.model import LoFiModel
from ricl.encoders.tokenizer import build_word_tokenizer

SO400M = {  # SigLIP so400m/14 at 384 px (vision tower); decoder kept small: only encode_images is timed
    "image_size": 378,
    "embed_dim": 1152,
    "vision": {"patch_size": 14, "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
               "num_attention_heads": 16},
    "projector_pool": 3,
}  # fmt: skip


def configs(so400m: bool) -> dict[str, LoFiConfig]:
    out = {
        "tiny (64 px)": tiny_config(64),
        "phantom recipe (96 px)": tiny_config(
            96,
            vision={
                "patch_size": 8,
                "hidden_size": 96,
                "intermediate_size": 192,
                "num_hidden_layers": 3,
                "num_attention_heads": 4,
            },
        ),
    }
    if so400m:
        out["so400m-sized (378 px)"] = tiny_config(**SO400M)
    return out


def bench(cfg: LoFiConfig, device: str, batch: int, n: int) -> tuple[float, float, int]:
    tok = build_word_tokenizer(["a b c"])
    model = LoFiModel.build(cfg, tok, tok).to(device)
    if device == "cuda":
        model = model.half()
    enc = LoFiEncoder(model, tok, device=device)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 255, (cfg.image_size, cfg.image_size), dtype=np.uint8) for _ in range(n)
    ]
    enc.encode_images(images[:batch], batch_size=batch)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    enc.encode_images(images, batch_size=batch)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # fmt: skip
    params = sum(p.numel() for p in model.vision.parameters())
    return n / dt, peak / 2**20, params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--so400m", action="store_true")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=256)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device} ({torch.cuda.get_device_name() if device == 'cuda' else platform.processor() or 'cpu'}), "
          f"threads: {torch.get_num_threads()}, torch {torch.__version__}")  # fmt: skip
    print("| config | vision params | batch | images/s | peak memory (MiB) |")
    print("|---|---|---|---|---|")
    for name, cfg in configs(args.so400m).items():
        n = args.n if "so400m" not in name or device == "cuda" else max(args.batch, 16)
        ips, peak, params = bench(cfg, device, args.batch, n)
        print(f"| {name} | {params / 1e6:.1f} M | {args.batch} | {ips:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
