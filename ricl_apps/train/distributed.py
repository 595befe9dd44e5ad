"""Data-parallel training under ``torchrun``: process group, collectives, gradient averaging.

``torchrun --nproc_per_node W ...`` starts W copies of the trainer with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`init_distributed`
reads them and joins the process group: NCCL with rank r on ``cuda:LOCAL_RANK``, gloo on CPU.
Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) no process group is made and every helper
here is a no-op, so a plain run behaves exactly as before.

Why a manual gradient all-reduce rather than ``DistributedDataParallel``: the contrastive
losses gather embeddings with a gradient-preserving all-gather whose backward is itself a
collective (:func:`all_gather_rows`). Under DDP that collective would interleave with DDP's
bucket all-reduces at a point fixed by the autograd order, and that order depends on the
data (a rank whose slice has no gold regions builds a smaller graph), so ranks could issue
collectives in different orders and hang. Here every collective is issued from the main
thread in program order: the embedding gather in forward, its all-reduce in backward, then
one bucketed all-reduce of the gradients (:func:`average_gradients`). It also needs no
``find_unused_parameters``: a parameter without a gradient on every rank (a disabled loss
head) keeps ``grad None``, as in a single process. The price is no overlap of gradient
communication with the backward pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ricl.config import ConfigError

__all__ = [
    "DistContext",
    "all_gather_rows",
    "all_same",
    "average_gradients",
    "barrier",
    "broadcast_module",
    "destroy",
    "env_rank",
    "env_world_size",
    "init_distributed",
    "mean_scalars",
]

#: How long a collective (e.g. the barrier while rank 0 evaluates) may wait for the others.
TIMEOUT = timedelta(minutes=60)
BUCKET_ELEMENTS = 1 << 25  # gradient all-reduce bucket: 32 Mi elements (128 MiB in fp32)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, world size and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None  # None: no process group (a single process)

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes files, logs and evaluates."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it; 1 when absent. Raises ConfigError if it is not
    a positive integer. Reads the environment only (no process group needed)."""
    world = _env_int("WORLD_SIZE")
    if world is None:
        return 1
    if world < 1:
        raise ConfigError(f"environment variable WORLD_SIZE={world} must be >= 1")
    return world


def env_rank() -> int:
    """``RANK`` as torchrun sets it; 0 when absent (also after the process group is gone)."""
    return _env_int("RANK") or 0


def _resolve_device(name: str, local_rank: int) -> tuple[str, str]:
    """(device, backend) for a rank: NCCL on ``cuda:LOCAL_RANK``, gloo on CPU."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu", "gloo"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda: no CUDA device is available to this rank")
        return f"cuda:{local_rank}", "nccl"
    raise ConfigError(
        f"device {name!r} under torchrun: use auto, cuda (rank r takes cuda:LOCAL_RANK) or cpu"
    )


def init_distributed(device: str) -> DistContext:
    """Join torchrun's process group, or return a single-process context.

    ``device`` is the trainer's setting (``auto``, ``cuda``, ``cpu``, ``cuda:1``, ...); with
    one process it is resolved as before (``auto`` -> cuda if available). Under torchrun
    ``auto``/``cuda`` give ``cuda:LOCAL_RANK`` with NCCL (the current CUDA device is set),
    ``cpu`` gives gloo. Raises ConfigError for a malformed environment or a device that
    cannot be split over ranks (e.g. ``cuda:1``).
    """
    import torch
    import torch.distributed as dist

    world = env_world_size()
    if world == 1:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return DistContext(device=device)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None or local_rank is None or not 0 <= rank < world:
        raise ConfigError(
            f"WORLD_SIZE={world} needs RANK in [0, {world}) and LOCAL_RANK (start with torchrun)"
        )
    dev, backend = _resolve_device(device, local_rank)
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        kwargs["device_id"] = torch.device(dev)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT, **kwargs)
    return DistContext(rank, world, local_rank, dev, backend)


def destroy(ctx: DistContext) -> None:
    """Leave the process group (no-op without one)."""
    import torch.distributed as dist

    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (no-op without a process group)."""
    import torch.distributed as dist

    if not ctx.enabled:
        return
    if ctx.backend == "nccl":
        dist.barrier(device_ids=[ctx.local_rank])
    else:
        dist.barrier()


def mean_scalars(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Mean over ranks of each scalar (one all-reduce, float64); every rank passes the same
    keys in the same order and gets the same result. Identity without a process group."""
    import torch
    import torch.distributed as dist

    if not ctx.enabled or not values:
        return dict(values)
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return {k: v / ctx.world_size for k, v in zip(values, t.tolist(), strict=True)}


def all_same(ctx: DistContext, value: int) -> bool:
    """Whether every rank passed the same 64-bit integer (e.g. a tokenizer checksum)."""
    import torch
    import torch.distributed as dist

    if not ctx.enabled:
        return True
    t = torch.tensor([value], dtype=torch.int64, device=ctx.device)
    every = [torch.empty_like(t) for _ in range(ctx.world_size)]
    dist.all_gather(every, t)
    return all(int(x.item()) == value for x in every)


def broadcast_module(ctx: DistContext, module: Any) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module`` (as DDP does at
    wrap time), so all ranks start bit-identical whatever their initialisation did."""
    import torch.distributed as dist

    if not ctx.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def _gather_grad_fn() -> Any:
    import torch
    import torch.distributed as dist

    class _AllGatherRows(torch.autograd.Function):
        """(R, D) -> (W, R, D); backward: all-reduce SUM of the output's gradient, own slice."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            world, rank = dist.get_world_size(), dist.get_rank()
            ctx.rank = rank
            x = x.contiguous()
            every = [torch.empty_like(x) for _ in range(world)]
            dist.all_gather(every, x)
            return torch.stack(every)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            grad = grad.contiguous().clone()
            dist.all_reduce(grad)  # every rank's use of this rank's rows, summed
            return grad[ctx.rank]

    return _AllGatherRows


_ALL_GATHER: Any = None


def all_gather_rows(x: Any) -> Any:
    """Gradient-preserving all-gather: ``x`` (R, D), the same shape on every rank -> (W, R, D)
    in rank order. The gradient reaching this rank's ``x`` is the sum over ranks of the
    gradients of their losses with respect to it (so a loss that uses every rank's rows
    back-propagates into each rank's own tower). Works with gloo and NCCL (all_gather +
    all_reduce). Every rank must call it, and run the backward, the same number of times.
    Needs an initialised process group."""
    global _ALL_GATHER
    if _ALL_GATHER is None:
        _ALL_GATHER = _gather_grad_fn()
    return _ALL_GATHER.apply(x)


def average_gradients(ctx: DistContext, params: list[Any]) -> None:
    """Replace each parameter's ``.grad`` with its mean over ranks, in place.

    A parameter with a gradient on some rank but not here gets zeros first; one without a
    gradient on every rank keeps ``None`` (the optimizer skips it, as in one process).
    Gradients travel in flat buckets of up to ``BUCKET_ELEMENTS`` per dtype and device.
    No-op without a process group.
    """
    import torch
    import torch.distributed as dist

    if not ctx.enabled:
        return
    params = [p for p in params if p.requires_grad]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=ctx.device)
    dist.all_reduce(has)
    live = []
    for p, flag in zip(params, has.tolist(), strict=True):
        if flag > 0:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            live.append(p)
    buckets: list[list[Any]] = []
    keys: list[tuple[Any, Any, int]] = []
    for p in live:
        key = (p.grad.dtype, p.grad.device)
        for i, (dtype, device, n) in enumerate(keys):
            if (dtype, device) == key and n + p.numel() <= BUCKET_ELEMENTS:
                buckets[i].append(p)
                keys[i] = (dtype, device, n + p.numel())
                break
        else:
            buckets.append([p])
            keys.append((*key, p.numel()))
    for bucket in buckets:
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        dist.all_reduce(flat)
        flat /= ctx.world_size
        for p, g in zip(bucket, flat.split([p.numel() for p in bucket]), strict=True):
            p.grad.copy_(g.view_as(p.grad))
