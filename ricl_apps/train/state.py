"""Optimizer state on disk as safetensors (never pickle), for resumable training runs.

AdamW-style states are flat per parameter index (``{"step", "exp_avg", "exp_avg_sq"}``):
each tensor is stored as ``"<index>.<name>"``; the parameter groups come from the
optimizer being restored (same model, same configuration).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_optimizer_state", "save_optimizer_state"]


def save_optimizer_state(optimizer: Any, path: str | Path) -> None:
    """Write ``optimizer``'s per-parameter tensors to ``path`` (safetensors)."""
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
    save_file(tensors, str(path))


def load_optimizer_state(optimizer: Any, path: str | Path) -> None:
    """Restore tensors written by :func:`save_optimizer_state` into ``optimizer``."""
    import torch
    from safetensors.torch import load_file

    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
