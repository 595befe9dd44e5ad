"""``ricl eval`` and ``ricl experiment``: thin commands over :mod:`ricl_apps.evaluation.runner`
and :mod:`ricl_apps.evaluation.experiment` (mounted by ``ricl_apps.cli``; nothing heavy imported
until a command runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["eval_cmd", "experiment_cmd"]

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set agent.k=5 (repeatable)."),
]


def eval_cmd(
    config: Annotated[Path, typer.Option("--config", help="An eval config (YAML).")],
    set_: SetOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run: missing and failed instances.")
    ] = False,
    predict_only: Annotated[
        bool, typer.Option("--predict-only", help="Write predictions only; no scoring.")
    ] = False,
    allow_incomplete: Annotated[
        bool, typer.Option("--allow-incomplete", help="Score even with failed instances.")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    engine: Annotated[
        str | None,
        typer.Option("--engine", help="Where queries run: local (default) or ray (Ray Data)."),
    ] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            help="An OpenAI-compatible base URL for the ray engine (repeatable: one per "
            "vllm serve replica).",
        ),
    ] = None,
) -> None:
    """Evaluate an agent configuration on a dataset split: a resumable run directory with
    predictions, metrics, per-label-group tables and report.html."""
    from ricl_apps.evaluation.run_config import EvalConfig
    from ricl_apps.evaluation.runner import run_eval

    overrides = list(set_ or [])
    if engine is not None:
        overrides.append(f"engine.name={engine}")
    if endpoint:
        overrides.append(f"engine.endpoints={json.dumps(list(endpoint))}")
    cfg = EvalConfig.from_yaml(config, overrides)
    summary = run_eval(
        cfg,
        resume=resume,
        predict_only=predict_only,
        allow_incomplete=allow_incomplete,
        progress=not no_progress,
    )
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    run_dir = cfg.run_dir
    typer.echo(
        f"{cfg.run_id}: {summary['n_done']}/{summary['n_instances']} done, "
        f"{summary['n_errors']} failed -> {run_dir}"
    )
    metrics = summary.get("metrics")
    if metrics:
        keys = ("union_iou_micro", "union_iou_macro", "acc@0.5", "f1@0.5", "rodeo_localization")
        typer.echo("  " + "  ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics))
        for name in ("metrics.json", "per_label_group.md", "report.html"):
            if (run_dir / name).is_file():
                typer.echo(f"  {run_dir / name}")


def experiment_cmd(
    config: Annotated[Path, typer.Option("--config", help="An experiment config (YAML).")],
    set_: SetOpt = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Run a grid of eval runs (cached and resumable) and write a comparison table and plot."""
    from ricl_apps.evaluation.experiment import ExperimentConfig, run_experiment

    exp = ExperimentConfig.from_yaml(config, set_ or [])
    out = run_experiment(exp, progress=not no_progress)
    typer.echo(out.table_md)
    for path in (out.table_md_path, out.table_csv_path, out.plot_path):
        if path is not None:
            typer.echo(f"wrote {path}")
