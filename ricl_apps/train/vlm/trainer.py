"""``ricl train-vlm``: train the project's small grounding VLM (Qwen2-VL architecture).

A run directory (``out_dir``)::

    config.json         the resolved configuration
    init/               the initial model (random weights; tokenizer trained on the pools'
                        phrases and prompt texts; chat template; image processor config)
    checkpoint/         latest model + optimizer.safetensors + trainer_state.json
    model/              the final model: an ordinary Hugging Face directory that
                        ``vllm serve``, the ``hf`` backend and ``from_pretrained`` load
    log.jsonl           loss per logging step

Seeded: batch ``s`` is drawn from ``default_rng([seed, s])``, so a resumed run sees the
batches an uninterrupted one would. Uses a GPU when there is one.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ricl.errors import RiclError
from ricl_apps.train.vlm.config import VLMTrainConfig

__all__ = ["train_vlm"]

SERVED_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                "preprocessor_config.json")  # fmt: skip


def _corpus(sampler: Any, rng: np.random.Generator, n: int = 400) -> list[str]:
    """Texts the model will read: the pools' phrases and rendered prompts (for the tokenizer)."""
    texts = [i.phrase for p in sampler.pools for i in p.instances]
    for _ in range(n):
        ep = sampler.sample(rng)
        for turn in ep.conversation:
            content = turn["content"]
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.extend(part["text"] for part in content if part["type"] == "text")
        texts.append(ep.answer)
    return texts


def _collate(items: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    import torch

    n = max(len(it["input_ids"]) for it in items)

    def pad(key: str, value: int) -> Any:
        return torch.tensor([it[key] + [value] * (n - len(it[key])) for it in items])

    batch = {
        "input_ids": pad("input_ids", pad_id),
        "labels": pad("labels", -100),
        "mm_token_type_ids": pad("mm_token_type_ids", 0),
        "attention_mask": torch.tensor(
            [[1] * len(it["input_ids"]) + [0] * (n - len(it["input_ids"])) for it in items]
        ),
    }
    with_images = [it for it in items if "pixel_values" in it]
    if with_images:
        batch["pixel_values"] = torch.cat([it["pixel_values"] for it in with_images])
        batch["image_grid_thw"] = torch.cat([it["image_grid_thw"] for it in with_images])
    return batch


class _Batches:
    """Batch ``s`` of a run: episodes drawn from ``default_rng([seed, s])``, encoded and
    collated. Indexed by step, so DataLoader workers build batches in parallel and a run's
    batches do not depend on the number of workers."""

    def __init__(self, sampler: Any, processor: Any, size: int, seed: int, pad_id: int) -> None:
        self.sampler, self.processor, self.size = sampler, processor, size
        self.seed, self.pad_id = seed, pad_id

    def __getitem__(self, step: int) -> dict[str, Any]:
        from ricl_apps.train.vlm.episodes import encode_episode

        rng = np.random.default_rng([self.seed, step])
        items = [encode_episode(self.sampler.sample(rng), self.processor) for _ in range(self.size)]
        return _collate(items, self.pad_id)


def train_vlm(
    cfg: VLMTrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train (or resume) and return the final model directory.

    Raises RiclError when the run directory exists without ``resume``."""
    import torch
    from rich.progress import Progress
    from transformers import Qwen2VLForConditionalGeneration

    from ricl.boxes.codecs import get_codec
    from ricl.prompting.strategies import load_strategy
    from ricl.vlm.tiny_qwen2vl import build_tiny_qwen2vl, load_qwen2vl_processor
    from ricl_apps.train.state import load_optimizer_state, save_optimizer_state
    from ricl_apps.train.vlm.episodes import EpisodeSampler, load_pools

    run = Path(cfg.out_dir)
    ckpt = run / "checkpoint"
    if run.exists() and any(run.iterdir()) and not resume:
        raise RiclError(f"{run}: run directory exists; pass --resume or choose another out_dir")
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    codec = get_codec(cfg.codec)
    sampler = EpisodeSampler(cfg, load_strategy(cfg.strategy), codec, load_pools(cfg))
    m = cfg.model
    if not (run / "init" / "config.json").is_file() and cfg.init_from:
        shutil.copytree(cfg.init_from, run / "init", dirs_exist_ok=True)
    if not (run / "init" / "config.json").is_file():
        build_tiny_qwen2vl(
            run / "init", seed=cfg.seed, vocab_size=m.vocab_size, hidden_size=m.hidden_size,
            num_layers=m.num_layers, num_heads=m.num_heads, vision_depth=m.vision_depth,
            vision_embed_dim=m.vision_embed_dim, min_pixels=56 * 56,
            max_pixels=m.image_side * m.image_side, initializer_range=m.initializer_range,
            corpus=_corpus(sampler, np.random.default_rng([cfg.seed, 10**6])),
        )  # fmt: skip
    source = ckpt if resume and (ckpt / "trainer_state.json").is_file() else run / "init"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Qwen2VLForConditionalGeneration.from_pretrained(source, dtype=torch.float32).to(device)
    processor = load_qwen2vl_processor(run / "init")
    pad_id = processor.tokenizer.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if source == ckpt:
        load_optimizer_state(opt, ckpt / "optimizer.safetensors")
        start = int(json.loads((ckpt / "trainer_state.json").read_text())["step"])

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        return warm * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))

    for group in opt.param_groups:  # a resumed scheduler needs the base lr recorded
        group.setdefault("initial_lr", cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at, last_epoch=start - 1)
    model.train()
    t0 = time.perf_counter()
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    batches = _Batches(sampler, processor, cfg.batch_size, cfg.seed, pad_id)
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(start, end), num_workers=cfg.workers,
        prefetch_factor=4 if cfg.workers else None, pin_memory=device == "cuda",
    )  # fmt: skip
    with Progress(disable=not progress) as bar:
        task = bar.add_task("train-vlm", total=cfg.steps, completed=start)
        for step, cpu_batch in zip(range(start, end), loader, strict=True):
            batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                row = {"step": done, "loss": round(float(loss.detach()), 4), "lr": sched.get_last_lr()[0],
                       "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
                with (run / "log.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                bar.update(task, description=f"train-vlm loss {row['loss']:.3f}")
            bar.update(task, completed=done)
            if done % cfg.checkpoint_every == 0 or done == end:
                _save(model, run / "init", ckpt)
                save_optimizer_state(opt, ckpt / "optimizer.safetensors")
                (ckpt / "trainer_state.json").write_text(json.dumps({"step": done}))
    if end == cfg.steps:
        _save(model, run / "init", run / "model")
    return run / "model"


def _save(model: Any, init: Path, out: Path) -> None:
    """An HF directory: weights + config + generation config, plus the processor files."""
    model.save_pretrained(out)
    for name in SERVED_FILES:
        shutil.copy2(init / name, out / name)
