"""The ``ricl`` command line (an app on top of the library; no logic of its own).

Every command has ``--help``. Errors ricl raises on purpose (bad data, unknown names)
print one clear line and exit with status 2; nothing else is swallowed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ricl.errors import RiclError

app = typer.Typer(
    name="ricl",
    help="Retrieval-augmented in-context phrase grounding on chest X-rays.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect grounding datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _mount_index_app() -> None:
    from ricl_apps.index_cli import index_app  # light: faiss is imported by the commands

    app.add_typer(index_app, name="index", help="Build and query exemplar indexes.")


_mount_index_app()


def _mount_prompt_app() -> None:
    from ricl_apps.prompt_cli import prompt_app  # light: jinja/yaml are imported by the commands

    app.add_typer(prompt_app, name="prompt", help="List prompt strategies and render prompts.")


_mount_prompt_app()


def _mount_eval_commands() -> None:
    from ricl_apps.evaluation.cli import eval_cmd, experiment_cmd

    app.command("eval")(eval_cmd)
    app.command("experiment")(experiment_cmd)
    from ricl_apps.probe_cli import probe_cmd  # light: openai/PIL are imported by the command

    app.command("probe")(probe_cmd)


_mount_eval_commands()

DatasetOpt = Annotated[str, typer.Option("--dataset", help="padchest-gr, ms-cxr or phantom.")]
RootOpt = Annotated[
    Path, typer.Option("--root", help="The dataset release folder (or MS-CXR CSV).")
]
ImagesOpt = Annotated[
    Path | None, typer.Option("--images", help="Images folder, if not the release default.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
UnboxedOpt = Annotated[
    bool,
    typer.Option(
        "--keep-unboxed", help="Also count positive findings without boxes (gold = empty)."
    ),
]
SkipOpt = Annotated[
    bool, typer.Option("--skip-bad", help="Skip (and count) bad records instead of stopping.")
]


def _console():
    from rich.console import Console

    return Console()


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, dict):
            continue
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    _console().print(table)


@data_app.command("stats")
def data_stats(
    dataset: DatasetOpt,
    root: RootOpt,
    images: ImagesOpt = None,
    json_out: JsonOpt = False,
    keep_unboxed: UnboxedOpt = False,
    skip_bad: SkipOpt = False,
) -> None:
    """Counts per split: studies, patients, findings, positive findings, grounding instances,
    boxes, and per label group."""
    from ricl.data.stats import dataset_stats

    spec = _spec(dataset, root, images, keep_unboxed=keep_unboxed,
                 on_error="skip" if skip_bad else "raise")  # fmt: skip
    ds = spec.open(read_image_sizes=False)  # counts need no pixels
    stats = dataset_stats(ds)
    if json_out:
        typer.echo(json.dumps(stats, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{stats['dataset']} — {stats['root']}")
    headers = {
        "studies": "studies", "patients": "patients", "normal_studies": "normal",
        "findings": "findings", "positive_findings": "positive", "grounding_instances": "instances",
        "boxes": "boxes",
    }  # fmt: skip
    keys = list(headers)
    table.add_column("split")
    for k in keys:
        table.add_column(headers[k], justify="right")
    for split, row in stats["splits"].items():
        table.add_row(split, *(str(row[k]) for k in keys))
    console = _console()
    console.print(table)
    if stats["skipped"]:
        console.print(f"[yellow]{len(stats['skipped'])} records skipped[/yellow] (see --json)")


@app.command()
def phantom(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the release into.")],
    studies: Annotated[int, typer.Option("--studies", min=1, help="Number of studies.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (output is deterministic).")] = 0,
    size: Annotated[
        int, typer.Option("--size", min=32, help="Long side of the images, pixels.")
    ] = 512,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Render processes (same bytes for any number).")
    ] = 2,
    site: Annotated[
        str,
        typer.Option(
            "--site",
            help="Site style: default (the historic phantom), internal training sites A, B, C, "
            "external site X, or the path of a .json site style (e.g. a release's ricl_site.json).",
        ),
    ] = "default",
) -> None:
    """Write a phantom data set in the exact PadChest-GR release format."""
    from ricl.data.phantom import get_site, write_phantom_release

    style = get_site(site)  # unknown names fail here, before anything is written
    summary = write_phantom_release(out, studies, seed=seed, size=size, workers=workers, site=style)
    typer.echo(
        f"wrote {summary.n_studies} studies ({summary.n_patients} patients, {summary.n_boxes} boxes) "
        f"of site {summary.site} to {summary.out_dir} in {summary.seconds:.1f} s"
    )


@app.command()
def score(
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="padchest-gr, ms-cxr or phantom.")
    ] = None,
    root: Annotated[Path | None, typer.Option("--root", help="The dataset release folder.")] = None,
    predictions: Annotated[
        Path | None, typer.Option("--predictions", help="Predictions, JSON lines.")
    ] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Re-score an eval run directory (no model calls).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train, validation or test.")] = "test",
    images: ImagesOpt = None,
    json_out: JsonOpt = False,
    keep_unboxed: UnboxedOpt = False,
    no_rodeo: Annotated[bool, typer.Option("--no-rodeo", help="Skip RoDeO.")] = False,
    allow_incomplete: Annotated[
        bool, typer.Option("--allow-incomplete", help="Score a run with failed instances.")
    ] = False,
) -> None:
    """Score a predictions file against the gold instances of one split, or re-score an
    evaluation run directory (`--run`; writes metrics.json, tables and report.html)."""
    if run is not None:
        from ricl_apps.evaluation.runner import score_run

        metrics = score_run(run, allow_incomplete=allow_incomplete, rodeo=not no_rodeo)
        title = f"run {run}"
    else:
        if dataset is None or root is None or predictions is None:
            raise typer.BadParameter("give --run DIR, or --dataset, --root and --predictions")
        from ricl.data.spec import SplitSpec
        from ricl.evaluation.scoring import score_predictions_file

        data = SplitSpec(name=dataset, root=str(root), images=_str(images), split=split,
                         keep_unboxed=keep_unboxed)  # fmt: skip
        metrics = score_predictions_file(data, predictions, rodeo=not no_rodeo)
        title = f"{dataset} {split}: {predictions}"
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
    else:
        _print_metrics(title, metrics)


@app.command()
def baseline(
    name: Annotated[str, typer.Argument(help="mean-box or phrase-knn.")],
    dataset: DatasetOpt,
    root: RootOpt,
    out: Annotated[Path, typer.Option("--out", help="Predictions file to write (JSON lines).")],
    split: Annotated[str, typer.Option("--split", help="Split to predict.")] = "test",
    train_split: Annotated[
        str, typer.Option("--train-split", help="Split to learn from.")
    ] = "train",
) -> None:
    """Write the predictions of a model-free baseline (for `ricl score`)."""
    from ricl.evaluation.baselines import run_baseline
    from ricl.evaluation.predictions import write_predictions

    ds = _spec(dataset, root).open(read_image_sizes=False)
    preds = run_baseline(name, ds.select(train_split), ds.select(split))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(out, preds)
    typer.echo(f"wrote {len(preds)} predictions to {out}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where data and results go.")] = Path(
        "ricl-demo"
    ),
    studies: Annotated[int, typer.Option("--studies", min=20)] = 600,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[int, typer.Option("--size", min=32)] = 256,
    site_studies: Annotated[
        int, typer.Option("--site-studies", min=20, help="Studies of the external site X.")
    ] = 500,
    no_experiment: Annotated[
        bool, typer.Option("--no-experiment", help="Skip the experiment grid.")
    ] = False,
    no_vlm: Annotated[bool, typer.Option("--no-vlm", help="Skip the VLM runs.")] = False,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process", help="Answer with the VLM in process, even when vLLM is there."
        ),
    ] = False,
) -> None:
    """The main job on embedded defaults: phantom release -> baselines -> embedded encoders ->
    indexes -> evaluation run with report -> the VLM on an external site (zero-shot, random,
    LoFi, two-pass, kNN; paired CIs) -> experiment grid (resumable)."""
    from ricl_apps.demo import run_demo

    run_demo(
        workdir, studies=studies, seed=seed, size=size, site_studies=site_studies,
        experiment=not no_experiment,
        vlm=not no_vlm, serve=not in_process, console=_console(),
    )  # fmt: skip


SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config key: --set model.weights.caption=0 (repeatable)."
    ),
]


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _spec(dataset: str, root: Path, images: Path | None = None, **options: Any) -> Any:
    """The :class:`~ricl.data.spec.DatasetSpec` of a command's ``--dataset/--root/--images``
    flags (and reader options): every command reads data through it."""
    from ricl.data.spec import DatasetSpec

    return DatasetSpec(name=dataset, root=str(root), images=_str(images), **options)


def _overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``--set`` pairs -> ``{dotted key: value}`` (:func:`ricl.config.parse_overrides`)."""
    from ricl.config import parse_overrides

    return parse_overrides(pairs)


@app.command("train-encoder")
def train_encoder_cmd(
    config: Annotated[Path, typer.Option("--config", help="Training recipe (YAML).")],
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in out_dir.")] = False,
    stop_after: Annotated[
        int | None,
        typer.Option("--stop-after", min=1, help="End after this global step (checkpointed)."),
    ] = None,
) -> None:
    """Train the LoFi encoder (seeded, resumable, progress bar with loss terms).

    Under torchrun (``torchrun --nproc_per_node N -m ricl_apps.cli train-encoder ...``)
    batch_size is the global batch; rank 0 writes the run and prints the metrics."""
    from ricl_apps.train.distributed import env_rank
    from ricl_apps.train.encoder import TrainConfig, train_encoder

    cfg = TrainConfig.from_file(config, _overrides(overrides))
    metrics = train_encoder(cfg, resume=resume, stop_after=stop_after)
    if env_rank() != 0:
        return
    if metrics is None:
        typer.echo(f"stopped after step {stop_after}; continue with --resume")
        return
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"model: {Path(cfg.out_dir) / 'model'}")


@app.command("train-vlm")
def train_vlm_cmd(
    config: Annotated[Path, typer.Option("--config", help="Training recipe (YAML).")],
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in out_dir.")] = False,
) -> None:
    """Train the project's grounding VLM on episodes rendered as the agent renders queries
    (seeded, resumable, progress bar); writes a Hugging Face directory vLLM can serve."""
    from ricl_apps.train.vlm.config import VLMTrainConfig
    from ricl_apps.train.vlm.trainer import train_vlm

    cfg = VLMTrainConfig.from_yaml(config, overrides or [])
    typer.echo(f"model: {train_vlm(cfg, resume=resume)}")


@app.command("eval-retrieval")
def eval_retrieval_cmd(
    encoder: Annotated[
        str, typer.Option("--encoder", help="Encoder spec: a directory, hf:ID, lofi:DIR.")
    ],
    dataset: DatasetOpt,
    root: RootOpt,
    images: ImagesOpt = None,
    split: Annotated[str, typer.Option("--split", help="Query split.")] = "test",
    gallery_split: Annotated[str, typer.Option("--gallery-split", help="Gallery split.")] = "train",
    json_out: JsonOpt = False,
) -> None:
    """Image<->text R@k, location-aware and location-conditioned precision@k of an encoder."""
    from ricl.encoders import load
    from ricl.evaluation.retrieval import evaluate_retrieval

    ds = _spec(dataset, root, images).open()
    metrics = evaluate_retrieval(
        load(encoder), ds.studies_of(gallery_split), ds.studies_of(split), ds.image_file
    )
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
    else:
        _print_metrics(f"{encoder} on {dataset} {split}", metrics)


@app.command("ablate-encoder")
def ablate_encoder_cmd(
    config: Annotated[Path, typer.Option("--config", help="Ablation recipe (YAML).")],
    overrides: SetOpt = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Train nothing; tabulate the cells already done.")
    ] = False,
) -> None:
    """Train every arm x seed of an encoder ablation (resumable) and write the table."""
    from ricl_apps.train.ablation import AblationConfig, run_ablation

    cfg = AblationConfig.from_file(config, _overrides(overrides))
    run_ablation(cfg, console=_console(), report_only=report_only)
    typer.echo((Path(cfg.out_dir) / "results.md").read_text())


def main() -> None:
    """Console entry point: RiclError -> one red line on stderr, exit status 2."""
    try:
        app()
    except RiclError as e:
        typer.echo(f"error: {e}", err=True)  # one unwrapped line: easy to grep in logs
        sys.exit(2)


if __name__ == "__main__":
    main()
