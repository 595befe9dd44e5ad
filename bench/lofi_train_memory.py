"""Derived (not measured on a GPU) training memory and speed of the full-size LoFi recipe.

    python bench/lofi_train_memory.py                  # the numbers in eval/encoder/lofi_so400m_gemma3.yaml
    python bench/lofi_train_memory.py --batch 32 --mfu 0.35

No weights or GPU needed: the architectures are the published configs of
``google/siglip2-so400m-patch14-384`` and ``google/gemma-3-270m`` (written out below).

* parameters: counted exactly on the meta device (no memory);
* static memory: 16 bytes a parameter (fp32 weights, fp32 gradients, AdamW's two fp32
  moments): the trainer trains every parameter in float32, without autocast;
* activations: the bytes autograd saves for backward in one training forward (sigmoid +
  caption + location terms), measured on the CPU at full width with depth 1 and 2 of
  each tower, extrapolated linearly to full depth (27 / 27 / 18 layers), per sample,
  at the recipe's sequence lengths (729 patches, 64 text tokens, 81 prefix + 96 target
  decoder tokens twice); CPU attention saves what GPU memory-efficient attention saves
  (no attention matrix), checked by the largest saved tensor printed below;
* speed: training FLOPs per sample = 6 x (matmul parameters x tokens) + 12 x layers x
  tokens^2 x width (attention), divided by an assumed sustained rate (peak x ``--mfu``).
"""

from __future__ import annotations

import argparse

import torch

from ricl.encoders.lofi.config import LoFiConfig
from ricl.encoders.lofi.model import LoFiModel

SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
          "num_attention_heads": 16, "patch_size": 14}  # fmt: skip
SIGLIP2_TEXT = {**SO400M, "vocab_size": 256000, "projection_size": 1152}
SIGLIP2_TEXT.pop("patch_size")
GEMMA3_270M = {"model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 640,
               "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
               "num_key_value_heads": 1, "head_dim": 256, "query_pre_attn_scalar": 256,
               "sliding_window": 512, "max_position_embeddings": 32768, "tie_word_embeddings": True}  # fmt: skip
# dense peak TFLOP/s of an H100 SXM (H200: the same compute, more memory)
PEAK = {"fp32 (the trainer today)": 67.0, "tf32 matmuls": 495.0, "bf16 autocast": 989.0}


def config(vision_layers: int = 27, text_layers: int = 27, decoder_layers: int = 18) -> LoFiConfig:
    """The resolved full-size config (what ``resolve_config`` makes of the two checkpoints)."""
    return LoFiConfig(
        image_size=378, embed_dim=1152, projector_pool=3, max_text_length=64, max_target_length=96,
        vision={**SO400M, "num_hidden_layers": vision_layers},
        text={**SIGLIP2_TEXT, "num_hidden_layers": text_layers},
        decoder={**GEMMA3_270M, "num_hidden_layers": decoder_layers},
    )  # fmt: skip


def saved_bytes(model: LoFiModel, target_len: int) -> tuple[int, tuple[int, ...]]:
    """Bytes of the activations autograd keeps after one forward of one sample (parameters
    excluded, shared storages counted once), and the shape of the largest one."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}
    largest: list[tuple[int, tuple[int, ...]]] = [(0, ())]

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen[ptr] = t.untyped_storage().nbytes()
            largest[0] = max(largest[0], (seen[ptr], tuple(t.shape)))
        return t

    s, t = model.config.image_size, target_len
    seq = (torch.zeros(1, t, dtype=torch.long), torch.zeros(1, t, dtype=torch.long),
           torch.ones(1, t, dtype=torch.long))  # fmt: skip
    batch = {"pixel_values": torch.zeros(1, 3, s, s), "positives": torch.ones(1, 1, dtype=torch.bool),
             "text_ids": torch.zeros(1, model.config.max_text_length, dtype=torch.long),
             "text_mask": torch.ones(1, model.config.max_text_length, dtype=torch.long),
             "caption": seq, "location": seq}  # fmt: skip
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        model.train()(batch)
    return sum(seen.values()), largest[0][1]


def flops_per_sample(cfg: LoFiConfig, target_len: int) -> float:
    """Training FLOPs (forward + backward) of one sample, matmuls and attention."""
    v, t, d = cfg.vision, cfg.text, cfg.decoder
    n_patch = cfg.grid[0] * cfg.grid[1]
    dec_tokens = 2 * (n_patch // cfg.projector_pool**2 + target_len)  # caption + location passes

    def layer(tower: dict, q: int, kv: int, mlp_mats: int) -> int:
        """Matmul parameters of one layer: q/o, k/v projections and the MLP matrices."""
        w, m = tower["hidden_size"], tower["intermediate_size"]
        return tower["num_hidden_layers"] * (2 * w * q + 2 * w * kv + mlp_mats * w * m)

    vis = layer(v, v["hidden_size"], v["hidden_size"], 2)  # SigLIP: fc1, fc2
    txt = layer(t, t["hidden_size"], t["hidden_size"], 2)
    q, kv = d["num_attention_heads"] * d["head_dim"], d["num_key_value_heads"] * d["head_dim"]
    dec = layer(d, q, kv, 3)  # Gemma: gate, up, down
    dec += d["vocab_size"] * d["hidden_size"]  # the LM head (tied embedding) is a matmul
    attn = 12 * (v["num_hidden_layers"] * n_patch**2 * v["hidden_size"]
                 + t["num_hidden_layers"] * cfg.max_text_length**2 * t["hidden_size"]
                 + d["num_hidden_layers"] * (dec_tokens // 2) ** 2 * q * 2)  # fmt: skip
    return 6.0 * (vis * n_patch + txt * cfg.max_text_length + dec * dec_tokens) + attn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--target-len", type=int, default=96, help="decoder target tokens (cap)")
    ap.add_argument("--mfu", type=float, default=0.4, help="assumed fraction of peak sustained")
    args = ap.parse_args()
    torch.manual_seed(0)
    with torch.device("meta"):
        full = LoFiModel(config())
    counts = {name: sum(p.numel() for p in getattr(full, name).parameters())
              for name in ("vision", "text", "decoder")}  # fmt: skip
    total = sum(p.numel() for p in full.parameters())
    print(
        f"parameters: {', '.join(f'{k} {v / 1e6:.1f} M' for k, v in counts.items())}, all {total / 1e6:.1f} M"
    )
    base, big = saved_bytes(LoFiModel(config(1, 1, 1)), args.target_len)
    per = {}
    for i, name in enumerate(("vision", "text", "decoder")):
        depth = [1, 1, 1]
        depth[i] = 2
        per[name] = saved_bytes(LoFiModel(config(*depth)), args.target_len)[0] - base
    layers = {"vision": 26, "text": 26, "decoder": 17}  # beyond the first
    act = base + sum(per[k] * layers[k] for k in per)
    gib = 2**30
    print(f"largest saved tensor at depth 1: {big}")
    print(
        f"activations per sample: {act / gib:.2f} GiB ("
        + ", ".join(f"{k} {per[k] / 2**20:.0f} MiB/layer" for k in per)
        + f", depth-1 model {base / gib:.2f} GiB)"
    )
    static = 16 * total
    print(f"static (fp32 weights + grads + AdamW): {static / gib:.1f} GiB")
    print(
        f"batch {args.batch}: {(static + args.batch * act) / gib:.1f} GiB + allocator/backward transients"
    )
    f = flops_per_sample(config(), args.target_len)
    print(f"training FLOPs per sample: {f / 1e12:.2f} TFLOP")
    for name, peak in PEAK.items():
        print(
            f"  {name}: {peak * 1e12 * args.mfu / f:.0f} images/s at {args.mfu:.0%} of {peak:.0f} TFLOP/s"
        )


if __name__ == "__main__":
    main()
