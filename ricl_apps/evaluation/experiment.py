"""``ricl experiment``: a grid of evaluation runs and one comparison table + plot.

    name: prompt_strategies
    base: eval/configs/phantom.yaml          # an eval config file, or an inline mapping
    arms:                                    # named variants: dotted overrides of the base
      knn: {agent.backend: knn}
      random: {agent.selector: random}
      zero-shot: {agent.strategy: zero-shot, agent.k: 0}
    grid:                                    # crossed with every arm
      agent.k: [1, 3, 5]
      agent.seed: [0, 1, 2]
    seed_key: agent.seed                     # aggregated over (mean and std)
    metrics: [union_iou_micro, union_iou_macro, f1@0.5, rodeo_localization]
    plot: {x: agent.k, metric: union_iou_micro}
    baseline: zero-shot                      # optional: per arm, the paired bootstrap 95%
    bootstrap: {n_resamples: 2000, confidence: 0.95, seed: 0}   # CI of its union IoU gain
    # baseline: [zero-shot, knn-transfer]    # several: one CI column per baseline arm

Each cell (arm x grid point) is an eval run under ``runs_dir/<name>/<cell>``; an arm's own
overrides win over grid values, and cells that resolve to the same configuration run once.
A cell whose run is complete and scored is reused as is (cached); any other is resumed.
Outputs in ``runs_dir/<name>/``: ``comparison.md``, ``comparison.csv`` (mean and std over
seeds per arm and non-seed grid point) and ``comparison.png`` (metric vs ``plot.x``, one
line per arm). With ``baseline``, each row also has ``vs_<baseline>``: the difference of
its mean per-instance union IoU (``union_iou_micro``) to the baseline arm's on the same
instances, with the paired bootstrap CI (:mod:`ricl_apps.evaluation.paired`); a list of
baselines gives one such column per baseline (the first also fills ``diff_vs_baseline``,
``ci_low``, ``ci_high`` and ``n_paired``).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ricl.agent_config import apply_overrides, read_yaml_mapping, validate_mapping
from ricl.errors import RiclError
from ricl_apps.evaluation.paired import CI_PREFIXES
from ricl_apps.evaluation.run_config import EvalConfig, EvalConfigError

__all__ = ["ExperimentConfig", "ExperimentResult", "run_experiment"]

# aggregated row keys that are not grid values
_NOT_GRID = ("n_seeds", "diff_vs_baseline", "ci_low", "ci_high", "n_paired")
DEFAULT_METRICS = ["union_iou_micro", "union_iou_macro", "f1@0.5", "rodeo_localization"]


class PlotSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    x: str = "agent.k"
    metric: str = "union_iou_micro"


class BootstrapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    n_resamples: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class ExperimentConfig(BaseModel):
    """A validated experiment file (unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    base: dict[str, Any]
    arms: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"base": {}})
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seed_key: str | None = "agent.seed"
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    plot: PlotSpec | None = Field(default_factory=PlotSpec)
    runs_dir: str | None = None
    baseline: str | list[str] | None = None
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)

    @model_validator(mode="after")
    def _baseline_is_an_arm(self) -> ExperimentConfig:
        for b in self.baselines:
            if b not in self.arms:
                raise ValueError(f"baseline {b!r} is not an arm (arms: {', '.join(self.arms)})")
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"baseline names an arm twice: {self.baselines}")
        return self

    @property
    def baselines(self) -> list[str]:
        """The baseline arms, first = primary (``baseline`` as a list; [] for none)."""
        if self.baseline is None:
            return []
        return [self.baseline] if isinstance(self.baseline, str) else list(self.baseline)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
        """Read ``path``; ``base`` may name an eval config file (relative to the cwd)."""
        p = Path(path)
        data = read_yaml_mapping(p, EvalConfigError, "an experiment")
        if isinstance(data.get("base"), str):
            data["base"] = read_yaml_mapping(data["base"], EvalConfigError, "an experiment's base")
        data = apply_overrides(data, overrides or [])  # base.agent.k=5 reaches the base
        data.setdefault("name", p.stem)
        return validate_mapping(cls, data, str(p), EvalConfigError, "experiment")

    def cells(self) -> list[tuple[str, dict[str, Any], EvalConfig]]:
        """(arm, grid point, resolved eval config) per cell; identical configs once."""
        keys = list(self.grid)
        seen: dict[str, int] = {}
        out: list[tuple[str, dict[str, Any], EvalConfig]] = []
        for arm, arm_over in self.arms.items():
            for values in itertools.product(*(self.grid[k] for k in keys)):
                point = dict(zip(keys, values, strict=True))
                point.update({k: v for k, v in arm_over.items() if k in point})
                sets = [f"{k}={json.dumps(v)}" for k, v in {**point, **arm_over}.items()]
                data = apply_overrides(self.base, sets)
                cell_id = _cell_id(arm, point)
                data["run_id"] = f"{self.name}/{cell_id}"
                if self.runs_dir:
                    data["runs_dir"] = self.runs_dir
                config = EvalConfig.load(data, f"experiment {self.name}, cell {cell_id}")
                key = json.dumps(config.semantic(), sort_keys=True)
                if key in seen:
                    continue
                seen[key] = len(out)
                out.append((arm, point, config))
        return out


@dataclass
class ExperimentResult:
    rows: list[dict[str, Any]]
    table_md: str
    table_md_path: Path
    table_csv_path: Path
    plot_path: Path | None


def run_experiment(exp: ExperimentConfig, *, progress: bool = True) -> ExperimentResult:
    """Run every cell (cached/resumed), then aggregate over seeds and write the outputs.

    Raises the first cell's RunAborted/RunIncomplete (other cells' finished runs are kept;
    rerunning the experiment resumes)."""
    from rich.console import Console

    from ricl_apps.evaluation.runner import run_eval

    console = Console()
    cells = exp.cells()
    if not cells:
        raise EvalConfigError(f"experiment {exp.name}: no cells (empty arms or grid)")
    results: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for n, (arm, point, config) in enumerate(cells, start=1):
        cached = _cached_metrics(config)
        where = config.run_dir
        if cached is not None:
            console.print(f"[{n}/{len(cells)}] {config.run_id}: cached ({where})")
            results.append((arm, point, cached))
            continue
        console.print(f"[{n}/{len(cells)}] {config.run_id}")
        summary = run_eval(config, resume=True, progress=progress)
        results.append((arm, point, summary["metrics"]))
    out_dir = Path(cells[0][2].runs_dir) / exp.name
    rows = aggregate(results, exp.metrics, exp.seed_key)
    if exp.baselines:
        from ricl_apps.evaluation.paired import add_paired_cis

        b = exp.bootstrap
        for j, name in enumerate(exp.baselines):
            add_paired_cis(rows, cells, name, exp.seed_key, n_resamples=b.n_resamples,
                           confidence=b.confidence, seed=b.seed, primary=j == 0)  # fmt: skip
    md = _markdown(rows, exp.metrics, exp.baselines, exp.bootstrap.confidence)
    md_path, csv_path = out_dir / "comparison.md", out_dir / "comparison.csv"
    md_path.write_text(f"# Experiment {exp.name}\n\n{md}", encoding="utf-8")
    csv_path.write_text(_csv(rows), encoding="utf-8")
    plot_path = _plot(rows, exp, out_dir / "comparison.png") if exp.plot else None
    return ExperimentResult(rows, md, md_path, csv_path, plot_path)


def aggregate(
    results: list[tuple[str, dict[str, Any], dict[str, Any]]],
    metrics: list[str],
    seed_key: str | None,
) -> list[dict[str, Any]]:
    """Group cells by arm and non-seed grid values; mean and std (sample, n-1; 0 for one
    seed) of each metric; ``n_seeds`` counts the runs in the group."""
    groups: dict[str, dict[str, Any]] = {}
    for arm, point, m in results:
        shown = {k: v for k, v in point.items() if k != seed_key}
        key = json.dumps([arm, shown], sort_keys=True)
        g = groups.setdefault(key, {"arm": arm, **shown, "_values": {k: [] for k in metrics}})
        for k in metrics:
            if k not in m:
                raise RiclError(f"metric {k!r} is not in the scorer's output; known: {sorted(m)}")
            g["_values"][k].append(float(m[k]))
    rows = []
    for g in groups.values():
        values = g.pop("_values")
        row = dict(g)
        row["n_seeds"] = len(next(iter(values.values())))
        for k, vs in values.items():
            row[f"{k}_mean"] = statistics.fmean(vs)
            row[f"{k}_std"] = statistics.stdev(vs) if len(vs) > 1 else 0.0
        rows.append(row)
    return rows


def _markdown(
    rows: list[dict[str, Any]],
    metrics: list[str],
    baselines: list[str] | None = None,
    confidence: float = 0.95,
) -> str:
    baselines = baselines or []
    keys = [k for k in rows[0] if not k.endswith(("_mean", "_std"))
            and not k.startswith(CI_PREFIXES)]  # fmt: skip
    ci_head = [f"Δ union IoU vs {b} ({confidence:.0%} CI, n)" for b in baselines]
    head = "| " + " | ".join(keys + metrics + ci_head) + " |"
    sep = "|" + "|".join(["---"] * len(keys) + ["---:"] * (len(metrics) + len(ci_head))) + "|"
    body = [
        "| "
        + " | ".join([str(r[k]) for k in keys] + [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}"
                                                   for m in metrics]
                     + [f"{r[f'vs_{b}']} (n={r[f'n_paired_vs_{b}']})" for b in baselines])
        + " |"
        for r in rows
    ]  # fmt: skip
    return "\n".join([head, sep, *body]) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _plot(rows: list[dict[str, Any]], exp: ExperimentConfig, path: Path) -> Path | None:
    """Metric vs ``plot.x``, one line per arm (and other non-seed grid values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = exp.plot
    assert spec is not None
    if not rows or spec.x not in rows[0]:
        return None
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        others = [f"{k}={r[k]}" for k in r if k not in {"arm", spec.x, *_NOT_GRID}
                  and not k.endswith(("_mean", "_std")) and not k.startswith(CI_PREFIXES)]  # fmt: skip
        label = " ".join([r["arm"], *others])
        x = r[spec.x]
        if isinstance(x, (int, float)) and not math.isnan(float(x)):
            lines.setdefault(label, []).append(
                (float(x), r[f"{spec.metric}_mean"], r[f"{spec.metric}_std"])
            )
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, pts in sorted(lines.items()):
        pts.sort()
        xs, ys, es = zip(*pts, strict=True)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    ax.set_xlabel(spec.x)
    ax.set_ylabel(spec.metric)
    ax.set_title(f"{exp.name}: {spec.metric} vs {spec.x} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _cached_metrics(config: EvalConfig) -> dict[str, Any] | None:
    run_dir = config.run_dir
    try:
        run = json.loads((run_dir / "run.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not run.get("complete") or not metrics.get("complete", False):
        return None
    import yaml

    saved = EvalConfig.load(yaml.safe_load((run_dir / "config.yaml").read_text()), str(run_dir))
    return metrics if saved.semantic() == config.semantic() else None


def _cell_id(arm: str, point: dict[str, Any]) -> str:
    parts = [arm] + [f"{k.split('.')[-1]}{v}" for k, v in point.items()]
    return "__".join(str(p).replace("/", "-").replace(" ", "") for p in parts)
