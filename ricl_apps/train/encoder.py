"""Training of the LoFi encoder: seeded, resumable, with periodic retrieval evaluation.

A run directory holds::

    config.json          the resolved TrainConfig (model config included)
    log.jsonl            one line per logged step (loss terms) and per evaluation
    checkpoint/          latest LoFi model directory + trainer_state.json + optimizer.safetensors
    model/               the final LoFi model directory (``ricl.encoders.load`` reads it)
    metrics.json         the final retrieval evaluation

Batches are a pure function of (seed, step): the epoch permutation comes from
``default_rng([seed, epoch])`` and the collator's choices from ``default_rng([seed, step])``,
so a resumed run sees exactly the batches an uninterrupted run would.

Under ``torchrun`` (``WORLD_SIZE`` > 1) ``batch_size`` is the GLOBAL batch: every rank
collates the same step's batch and keeps its contiguous slice of ``batch_size / W`` samples
(``LoFiCollator.shard``), contrastive columns are gathered from all ranks and gradients are
averaged (:mod:`ricl_apps.train.distributed`), so W processes follow the same loss curve as
one (up to float rounding). Rank 0 alone writes the run directory and evaluates; every rank
reads the same checkpoint on ``resume``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ricl.config import apply_overrides, read_yaml_mapping, validate_mapping
from ricl.data.spec import DatasetSpec
from ricl.encoders.lofi.config import LoFiConfig, tiny_config
from ricl_apps.train.distributed import DistContext

__all__ = ["TrainConfig", "train_encoder"]


class TrainConfig(BaseModel):
    """Everything a training run needs; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetSpec  # {name, root, images, reader options}: ricl.data.spec
    train_split: str = "train"
    eval_split: str = "test"
    max_train_studies: int | None = Field(None, ge=1)
    max_eval_studies: int | None = Field(None, ge=1)
    model: LoFiConfig = Field(default_factory=tiny_config)
    steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(20, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(0, ge=0)  # 0: evaluate only at the end
    checkpoint_every: int = Field(100, ge=1)
    out_dir: str = "runs/encoder"
    device: str = "auto"

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """YAML or JSON recipe + dotted overrides (``model.weights.caption=0``)."""
        data = read_yaml_mapping(path, what="an encoder training configuration")
        return validate_mapping(
            cls, apply_overrides(data, overrides), str(path), what="encoder training configuration"
        )


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[k * batch_size : (k + 1) * batch_size]


def _save_state(run: Path, model: Any, toks: tuple[Any, Any], optimizer: Any, step: int) -> None:
    """Checkpoint: model directory + optimizer tensors (safetensors) + JSON state. Never pickle."""
    from ricl.encoders.lofi.encoder import save_lofi_model
    from ricl_apps.train.state import save_optimizer_state

    ckpt = save_lofi_model(model, *toks, run / "checkpoint")
    save_optimizer_state(optimizer, ckpt / "optimizer.safetensors")
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": step}))


def _load_state(run: Path, model: Any, optimizer: Any) -> int:
    from safetensors.torch import load_model

    from ricl_apps.train.state import load_optimizer_state

    ckpt = run / "checkpoint"
    load_model(model, str(ckpt / "model.safetensors"))
    load_optimizer_state(optimizer, ckpt / "optimizer.safetensors")
    return int(json.loads((ckpt / "trainer_state.json").read_text())["step"])


def _log(run: Path, row: dict[str, Any]) -> None:
    with (run / "log.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def train_encoder(
    cfg: TrainConfig, *, resume: bool = False, progress: bool = True, stop_after: int | None = None
) -> dict[str, Any] | None:
    """Train a LoFi encoder; returns the final retrieval metrics (also in ``metrics.json``).

    ``resume=True`` continues from ``out_dir/checkpoint`` (same batches as an uninterrupted
    run); without it an existing run directory is refused rather than overwritten.
    ``stop_after=N`` ends this call after global step N (with a checkpoint) and returns
    None: time-sliced training, and how the tests interrupt a run.

    Pretrained towers (``model.vision_pretrained`` / ``model.decoder_pretrained``) bring
    their own tokenizers, image size and normalization (:mod:`ricl.encoders.lofi.pretrained`);
    towers without one get a word tokenizer trained on the training reports and prompts.

    Under torchrun every rank calls this with the same configuration; all return the
    same metrics (ranks other than 0 read rank 0's ``metrics.json``).

    Raises:
        RiclError: the run directory exists without ``resume``, the dataset is bad, or a
            pretrained checkpoint cannot be used (PretrainedError).
        ConfigError: under torchrun, ``batch_size`` is not a multiple of the world size or
            the device cannot be split over ranks (checked before joining the group).
    """
    from ricl.config import ConfigError
    from ricl_apps.train import distributed as D

    world = D.env_world_size()
    if cfg.batch_size % world:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the world size {world}: "
            "batch_size is the global batch, split evenly over the torchrun ranks"
        )
    ctx = D.init_distributed(cfg.device)
    try:
        return _train(cfg, ctx, resume=resume, progress=progress, stop_after=stop_after)
    finally:
        D.destroy(ctx)


def _tokenizer_checksum(*toks: Any) -> int:
    """A 63-bit checksum of the tokenizers' vocabularies (ranks must agree on token ids)."""
    import zlib

    text = json.dumps([sorted(t.get_vocab().items()) for t in toks])
    return zlib.crc32(text.encode()) ^ (len(text) << 32)


def _train(
    cfg: TrainConfig, ctx: DistContext, *, resume: bool, progress: bool, stop_after: int | None
) -> dict[str, Any] | None:
    """:func:`train_encoder` on one rank."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ricl.encoders.lofi.data import CAPTION_PROMPT, LoFiCollator, load_samples
    from ricl.encoders.lofi.encoder import LoFiEncoder, load_lofi_model, save_lofi_model
    from ricl.encoders.lofi.model import LoFiModel
    from ricl.encoders.lofi.pretrained import load_tokenizers, resolve_config
    from ricl.errors import RiclError
    from ricl_apps.train import distributed as D

    run = Path(cfg.out_dir)
    if run.exists() and any(run.iterdir()) and not resume:
        raise RiclError(
            f"{run}: run directory exists; pass --resume to continue it or choose another out_dir"
        )
    D.barrier(ctx)  # every rank has looked at the directory before rank 0 writes into it
    if ctx.is_main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(cfg.model_dump_json(indent=2))
    torch.manual_seed(cfg.seed)
    device = ctx.device

    ds = cfg.dataset.open()
    train_studies = ds.studies_of(cfg.train_split)[: cfg.max_train_studies]
    eval_studies = ds.studies_of(cfg.eval_split)[: cfg.max_eval_studies]
    ckpt = run / "checkpoint"
    resuming = resume and ckpt.is_dir()
    if resuming:
        model, text_tok, dec_tok = load_lofi_model(ckpt, device=device)
        image_size = model.config.image_size
    else:  # the vision checkpoint, when there is one, decides the image size
        image_size = resolve_config(cfg.model).image_size
    samples = load_samples(train_studies, ds.image_file, image_size)
    if len(samples) < cfg.batch_size:
        raise RiclError(
            f"{cfg.dataset.root}: {len(samples)} training studies, fewer than batch_size {cfg.batch_size}"
        )
    if not resuming:
        corpus = [s.report for s in samples] + [
            CAPTION_PROMPT,
            'Detect all instances of "".',
            "Describe the region.",
        ]
        text_tok, dec_tok = load_tokenizers(cfg.model, corpus)
        model = LoFiModel.build(cfg.model, text_tok, dec_tok)
    toks = (text_tok, dec_tok)
    if not D.all_same(ctx, _tokenizer_checksum(*toks)):
        raise RiclError(f"{cfg.dataset.root}: the ranks built different tokenizers")
    model.to(device).train()
    D.broadcast_module(ctx, model)
    # no weight decay on biases, norms, embeddings' scalars and the logit scale/bias (as open_clip)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "logit" in n]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    start = _load_state(run, model, optimizer) if resuming else 0
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", cfg.lr)  # LambdaLR needs it to start at step > 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg), last_epoch=start - 1)
    weights = model.config.weights

    def evaluate(step: int) -> dict[str, Any]:
        """Retrieval metrics on rank 0 (the others wait at a barrier and get {})."""
        from ricl.evaluation.retrieval import evaluate_retrieval

        metrics: dict[str, Any] = {}
        if ctx.is_main:
            model.eval()
            metrics = evaluate_retrieval(LoFiEncoder(model, text_tok, device=device), train_studies,
                                         eval_studies, ds.image_file)  # fmt: skip
            model.train()
            _log(run, {"step": step, "eval": metrics})
        D.barrier(ctx)
        return metrics

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[losses]}"), TimeRemainingColumn()]  # fmt: skip
    t0 = time.perf_counter()
    with Progress(*columns, disable=not (progress and ctx.is_main)) as bar:
        task = bar.add_task("train-encoder", total=cfg.steps, completed=start, losses="")
        for step in range(start, cfg.steps):
            collate = LoFiCollator(model.config, *toks, seed=cfg.seed * 1_000_003 + step)
            chosen = [
                samples[i] for i in _batch_indices(len(samples), cfg.batch_size, cfg.seed, step)
            ]
            if ctx.enabled:  # this rank's slice, with the whole batch's random choices
                batch = collate.shard(chosen, ctx.rank, ctx.world_size, D.all_gather_rows)
            else:
                batch = collate(chosen)
            batch = {
                k: v if k == "shard" else (v.to(device) if hasattr(v, "to") else tuple(x.to(device) for x in v))
                for k, v in batch.items()
            }  # fmt: skip
            terms = model(batch)
            loss = sum(weights.of(k) * v for k, v in terms.items() if k.endswith("_loss"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            D.average_gradients(ctx, list(model.parameters()))
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:  # rank means: 1-process values
                values = D.mean_scalars(
                    ctx, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
                )
                row = {"step": done, **values, "lr": scheduler.get_last_lr()[0],
                       "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
                if ctx.is_main:
                    _log(run, row)
                bar.update(
                    task,
                    losses=" ".join(f"{k[:4]}={v:.2f}" for k, v in values.items() if k.endswith("_loss")),
                )  # fmt: skip
            if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
                evaluate(done)
            stopping = stop_after is not None and done >= stop_after
            if (done % cfg.checkpoint_every == 0 or stopping) and done < cfg.steps and ctx.is_main:
                _save_state(run, model, toks, optimizer, done)
            bar.update(task, completed=done)
            if stopping and done < cfg.steps:
                D.barrier(ctx)  # the checkpoint is complete when any rank returns
                return None
    if ctx.is_main:
        save_lofi_model(model.eval(), *toks, run / "model")
    seconds = round(time.perf_counter() - t0, 2)
    metrics = evaluate(cfg.steps)
    if ctx.is_main:
        metrics = {"train_seconds": seconds, **metrics}
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    D.barrier(ctx)
    return metrics if ctx.is_main else json.loads((run / "metrics.json").read_text())
