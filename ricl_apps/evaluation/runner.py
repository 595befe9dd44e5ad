"""``ricl eval``: run an agent over a dataset split, append every answer, score, report.

A run directory (``runs_dir/run_id/``)::

    config.yaml         the resolved configuration
    run.json            counts, completeness, the agent's settings
    predictions.jsonl   one row per ATTEMPT, appended and flushed as each query finishes;
                        the last row of an instance wins
    metrics.json        the one scorer's output (only for a complete run)
    per_label_group.csv / .md
    report.html         (see :mod:`ricl_apps.evaluation.report`)

Resuming (``resume=True``): instances whose last row is not ``error`` are done; the rest
(never attempted, or failed) run again. A row cut off by a kill (a last line without its
newline) is dropped on resume. A run stops with :class:`RunAborted` after
``max_consecutive_failures`` transport failures in a row (the server went away), keeping
every row written; failures are never scored as empty answers: scoring a run with failed
instances raises :class:`RunIncomplete` unless ``allow_incomplete`` is given (then they
count in ``n_errors``).

What fails where: a query whose image cannot be read (``ImageLoadError``) or that does not
fit the selector (``QueryError``) gets an ``error`` row and the run goes on; a
configuration problem (the index or encoder cannot load, a bad strategy) stops the run at
once, since every query would fail the same way.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ricl.atomic import atomic_write_text
from ricl.errors import DatasetFormatError, RiclError
from ricl.types import Instance, Prediction
from ricl_apps.evaluation.rows import RowWriter, last_rows, read_rows, result_row
from ricl_apps.evaluation.run_config import EvalConfig, EvalConfigError

__all__ = [
    "PREDICTIONS",
    "RunAborted",
    "RunIncomplete",
    "last_rows",
    "load_instances",
    "prepare_run_dir",
    "read_rows",
    "result_row",
    "run_eval",
    "score_run",
]

log = logging.getLogger(__name__)
PREDICTIONS = "predictions.jsonl"


class RunAborted(RiclError):
    """The run stopped early (transport failures in a row); rows written so far are kept."""


class RunIncomplete(RiclError):
    """Some instances have no successful answer; ``--resume`` retries them."""


# ---------------------------------------------------------------------------- the run
def load_instances(config: EvalConfig) -> tuple[Any, list[Instance]]:
    """(dataset, the instances of the configured split, cut to ``limit``)."""
    # the agent reads each image's header itself, when it runs
    ds = config.dataset.open(read_image_sizes=False)
    return ds, config.dataset.instances(ds)


def prepare_run_dir(config: EvalConfig, resume: bool) -> Path:
    """Create the run directory, or check that a resumed run has the same configuration."""
    import yaml

    run_dir = config.run_dir
    cfg_file = run_dir / "config.yaml"
    if cfg_file.is_file():
        old = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
        loaded = EvalConfig.load(old, str(cfg_file))
        unknown = _unrecorded_options(old, loaded)
        if unknown:
            raise EvalConfigError(
                f"{cfg_file}: saved before runs recorded their selector's effective options "
                f"({', '.join(unknown)} missing), so what ran is unknown and its rows cannot be "
                "reused; use another run_id (--set run_id=...) or delete the folder"
            )
        previous = loaded.semantic()
        if previous != config.semantic():
            changed = _diff(previous, config.semantic())
            raise EvalConfigError(
                f"{run_dir}: this run was made with another configuration ({', '.join(changed)} "
                "differ); use another run_id (--set run_id=...)"
            )
        if not resume and read_rows(run_dir / PREDICTIONS):
            raise EvalConfigError(
                f"{run_dir}: the run already has predictions; pass --resume to continue it "
                "(only missing and failed instances run) or choose another run_id"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg_file, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return run_dir


def _unrecorded_options(raw: Any, loaded: EvalConfig) -> list[str]:
    """Selector options a saved config.yaml lacks though its selector has them: a run saved
    before configs recorded the effective options (defaults filled in) would otherwise read
    as made under today's defaults."""
    agent = raw.get("agent") or {}  # ``raw`` has loaded as ``loaded``: mappings all through
    parts = [("agent", agent, loaded.agent)]
    if loaded.agent.first_pass is not None:
        parts.append(("agent.first_pass", agent["first_pass"], loaded.agent.first_pass))
    missing = []
    for where, saved, cfg in parts:
        have = saved.get("selector_options") or {}
        missing += [f"{where}.selector_options.{k}" for k in cfg.selector_options if k not in have]
    return missing


def run_eval(
    config: EvalConfig,
    *,
    resume: bool = False,
    predict_only: bool = False,
    allow_incomplete: bool = False,
    agent: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns the run summary (``run.json``'s content,
    plus ``metrics`` unless ``predict_only``).

    Raises RunAborted (the server went away; rows kept, ``resume`` continues), RunIncomplete
    (instances failed; ``resume`` retries them), EvalConfigError, DatasetFormatError.
    """
    from ricl.agent import GroundingAgent

    run_dir = prepare_run_dir(config, resume)
    ds, instances = load_instances(config)
    path = run_dir / PREDICTIONS
    history = read_rows(path, repair=True)  # read once: last rows and attempt counts
    previous = last_rows(history)
    attempts = dict(Counter(row["instance_id"] for row in history))
    todo = [
        i for i in instances if previous.get(i.instance_id, {}).get("status", "error") == "error"
    ]
    agent = agent or GroundingAgent(resolve_agent_config(config, instances))
    _apply_concurrency(agent, config.concurrency)
    summary = _summary(config, ds, instances, previous, agent, started=time.time())
    atomic_write_text(run_dir / "run.json", json.dumps(summary, indent=2))
    aborted = None
    if todo:
        aborted = _predict(agent, ds.images_root, todo, path, attempts, config, progress)
    rows = last_rows(read_rows(path))
    summary = _summary(config, ds, instances, rows, agent, started=summary["started"])
    atomic_write_text(run_dir / "run.json", json.dumps(summary, indent=2))
    if aborted is not None:
        raise RunAborted(
            f"{run_dir}: stopped after {config.max_consecutive_failures} failures in a row "
            f"({aborted}); {summary['n_done']} of {summary['n_instances']} instances are done "
            "and kept. Fix the cause and rerun with --resume."
        )
    if predict_only:
        return summary
    summary["metrics"] = score_run(run_dir, allow_incomplete=allow_incomplete, dataset=ds,
                                   instances=instances, rodeo=config.rodeo)  # fmt: skip
    return summary


def resolve_agent_config(config: EvalConfig, instances: Sequence[Instance]) -> Any:
    """The run's agent configuration with ``backend_options.max_tokens: auto`` replaced by
    the budget of the codec's answer for the split's largest gold box count
    (:func:`ricl.vlm.budget.dataset_token_budget`), so long answers are not cut off."""
    from ricl.boxes.codecs import get_codec
    from ricl.vlm.budget import AUTO, dataset_token_budget

    agent = config.agent
    if agent.backend_options.get("max_tokens") != AUTO:
        return agent
    codec = get_codec(agent.codec, **agent.codec_options)
    budget = dataset_token_budget(codec, instances)
    return agent.model_copy(update={"backend_options": {**agent.backend_options,
                                                        "max_tokens": budget}})  # fmt: skip


def _apply_concurrency(agent: Any, concurrency: int) -> None:
    backend = agent.backend
    if hasattr(backend, "max_concurrency"):
        backend.max_concurrency = concurrency


def _predict(
    agent: Any,
    images_root: Path,
    todo: Sequence[Instance],
    path: Path,
    attempts: dict[str, int],
    config: EvalConfig,
    show: bool,
) -> str | None:
    """Answer ``todo`` with the configured engine (:mod:`ricl_apps.evaluation.engines`),
    appending each row as it finishes. Transport failures in a row stop new queries after
    ``max_consecutive_failures``; per-query failures (image, selector) do not count.
    Returns the last transport failure when the run was aborted, else None."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,  # fmt: skip
        TimeRemainingColumn,
    )

    from ricl_apps.evaluation.engines import ENGINES

    engine = ENGINES.get(config.engine.name)
    by_id = {i.instance_id: i for i in todo}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[failed]}"))  # fmt: skip
    with path.open("a", encoding="utf-8") as out, Progress(*columns, disable=not show) as bar:
        task = bar.add_task(config.run_id or "eval", total=len(todo), rate="", failed="")

        def progress(w: RowWriter) -> None:
            bar.update(task, advance=1, rate=f"{w.rate:.2f} q/s",
                       failed=f"failed {w.failed}" if w.failed else "")  # fmt: skip

        writer = RowWriter(out, by_id, attempts, config.max_consecutive_failures, progress)
        engine(config, agent, images_root, todo, writer)
    return writer.aborted


def _summary(config: EvalConfig, ds: Any, instances: Sequence[Instance],
             rows: dict[str, dict[str, Any]], agent: Any, started: float) -> dict[str, Any]:  # fmt: skip
    import ricl

    ids = [i.instance_id for i in instances]
    statuses = [rows[i]["status"] for i in ids if i in rows]
    n_errors = statuses.count("error")
    return {
        "run_id": config.run_id,
        "ricl_version": ricl.__version__,
        "dataset": config.dataset.name,
        "root": str(ds.root),
        "split": config.dataset.split,
        "n_instances": len(ids),
        "n_done": len(statuses) - n_errors,
        "n_errors": n_errors,
        "n_missing": len(ids) - len(statuses),
        "complete": n_errors == 0 and len(statuses) == len(ids),
        "status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
        "n_truncated": sum(bool(rows[i].get("truncated")) for i in ids if i in rows),
        "agent": agent.settings(),
        "engine": config.engine.model_dump(mode="json", exclude_defaults=True),
        "started": started,
        "updated": time.time(),
    }


# ---------------------------------------------------------------------------- scoring
def score_run(
    run_dir: str | Path,
    *,
    allow_incomplete: bool = False,
    dataset: Any = None,
    instances: Sequence[Instance] | None = None,
    rodeo: bool = True,
    report: bool | None = None,
) -> dict[str, Any]:
    """Score a run directory's predictions without calling any model; writes
    ``metrics.json``, ``per_label_group.csv/.md`` and (unless disabled) ``report.html``.

    Raises RunIncomplete when instances lack a successful row (unless ``allow_incomplete``).
    """
    import yaml

    from ricl.evaluation.metrics import score
    from ricl_apps.evaluation.tables import write_group_tables

    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise DatasetFormatError(f"{run_dir}: not a run directory (no config.yaml)")
    config = EvalConfig.load(yaml.safe_load(cfg_file.read_text(encoding="utf-8")), str(cfg_file))
    if instances is None:
        dataset, instances = load_instances(config)
    rows = last_rows(read_rows(run_dir / PREDICTIONS))
    failed = [i.instance_id for i in instances if rows.get(i.instance_id, {}).get("status", "error") == "error"]  # fmt: skip
    if failed and not allow_incomplete:
        raise RunIncomplete(
            f"{run_dir}: {len(failed)} of {len(instances)} instances have no successful answer "
            f"(e.g. {failed[0]}); rerun `ricl eval --resume` to retry them, or score with "
            "--allow-incomplete (they then count as errors)"
        )
    preds = {i: row_prediction(r) for i, r in rows.items()}
    metrics = score(instances, preds, rodeo=rodeo and config.rodeo)
    n_cut = sum(bool(rows.get(i.instance_id, {}).get("truncated")) for i in instances)
    metrics = {"run_id": config.run_id, "dataset": config.dataset.name,
               "split": config.dataset.split, "complete": not failed,
               "n_truncated": n_cut, **metrics}  # fmt: skip
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    write_group_tables(run_dir, metrics)
    if report if report is not None else config.report:
        from ricl_apps.evaluation.report import write_report

        write_report(run_dir, instances, dataset.images_root,
                     max_instances=config.report_max_instances)  # fmt: skip
    return metrics


def row_prediction(row: dict[str, Any]) -> Prediction:
    from ricl.evaluation.predictions import prediction_from_dict

    return prediction_from_dict({k: row[k] for k in ("image_id", "phrase", "boxes", "status", "raw")
                                 if row.get(k) is not None})  # fmt: skip


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
