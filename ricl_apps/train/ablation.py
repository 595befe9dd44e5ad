"""The encoder ablation: arms x seeds of ``train_encoder``, one comparison table.

A recipe (YAML) holds a base :class:`TrainConfig` under ``train``, the ``arms`` as
dotted overrides of it, the ``seeds`` and the ``metrics`` to report::

    train: {dataset: {root: data/phantom}, steps: 600, model: {...}}
    arms:
      sigmoid: {model.weights.caption: 0, model.weights.location: 0}
      lofi: {}
    seeds: [0, 1, 2]
    metrics: [loc_P@5, label_P@5, region_P@5, t2i_R@5]

Each cell trains into ``<out>/<arm>/seed<k>/`` and is skipped when its ``metrics.json``
exists, so an interrupted ablation resumes where it stopped. The table (mean ± std over
seeds) is written as markdown and CSV.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ricl.config import apply_overrides, read_yaml_mapping, validate_mapping
from ricl_apps.train.encoder import TrainConfig, train_encoder

__all__ = ["AblationConfig", "run_ablation"]


class AblationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    metrics: list[str] = Field(
        default_factory=lambda: ["loc_P@5", "label_P@5", "region_P@5", "t2i_R@5"]
    )
    out_dir: str = "eval/runs/encoder_ablation"

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> AblationConfig:
        """Read, override and validate a recipe, every (arm, seed) cell included, so a bad
        ``train.*`` key or arm override fails here as one ConfigError naming file and key."""
        data = read_yaml_mapping(path, what="an encoder ablation configuration")
        cfg = validate_mapping(
            cls, apply_overrides(data, overrides), str(path), what="encoder ablation configuration"
        )
        for seed in cfg.seeds:
            for arm in cfg.arms:
                cfg.cell(arm, seed, source=str(path))
        return cfg

    def cell(self, arm: str, seed: int, source: str = "encoder ablation") -> TrainConfig:
        """The TrainConfig of one (arm, seed) cell, validated.

        Raises ConfigError naming ``source``, the cell and the dotted key of the problem."""
        data = apply_overrides(self.train, {**self.arms[arm], "seed": seed})
        data["out_dir"] = str(Path(self.out_dir) / arm / f"seed{seed}")
        return validate_mapping(
            TrainConfig, data, f"{source} (arm {arm}, seed {seed})",
            what="encoder training configuration",
        )  # fmt: skip


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return mean, math.sqrt(var)


def run_ablation(
    cfg: AblationConfig, *, progress: bool = True, console: Any = None, report_only: bool = False
) -> list[dict[str, Any]]:
    """Train every (arm, seed) cell not done yet; write ``results.md`` / ``results.csv``.

    ``report_only=True`` trains nothing and tabulates the cells already done (``n_seeds``
    says how many per arm; arms with none are left out).
    Returns one row per arm: ``{"arm", "n_seeds", "<metric>_mean", "<metric>_std", "train_seconds_mean"}``.
    """
    # seed-major: after each seed every arm has a result, so a partial run is still a comparison
    cells = [(arm, seed) for seed in cfg.seeds for arm in cfg.arms]
    for arm, seed in cells:
        tc = cfg.cell(arm, seed)  # validate every cell before training any
        if console is not None:
            console.print(f"[bold]{arm}[/bold] seed {seed} -> {tc.out_dir}")
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in cfg.arms}
    for arm, seed in cells:
        tc = cfg.cell(arm, seed)
        done = Path(tc.out_dir) / "metrics.json"
        if report_only and not done.is_file():
            continue
        if not done.is_file():
            resume = (Path(tc.out_dir) / "checkpoint").is_dir()
            if not resume and Path(tc.out_dir).exists():
                import shutil

                shutil.rmtree(tc.out_dir)  # a cell that died before its first checkpoint
            train_encoder(tc, resume=resume, progress=progress)
        results[arm].append(json.loads(done.read_text()))
    rows = []
    for arm, runs in results.items():
        if not runs:
            continue
        row: dict[str, Any] = {"arm": arm, "n_seeds": len(runs)}
        for m in [*cfg.metrics, "train_seconds"]:
            mean, std = _mean_std([float(r.get(m, float("nan"))) for r in runs])
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        rows.append(row)
    _write_tables(cfg, rows)
    return rows


def _write_tables(cfg: AblationConfig, rows: list[dict[str, Any]]) -> None:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    head = ["arm", "seeds", *cfg.metrics, "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" for m in cfg.metrics]
        lines.append(
            f"| {r['arm']} | {r['n_seeds']} | "
            + " | ".join(cells)
            + f" | {r['train_seconds_mean']:.0f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
