"""``ricl demo``: the main job on embedded defaults, every step visible.

Today: write a phantom PadChest-GR release, run the model-free baselines on its test
split, score them with the one scorer, and print a comparison table. Later steps
(encoder, index, VLM) plug in here as they land.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["run_demo"]

# metric key -> short column header
MAIN_METRICS = {
    "union_iou_micro": "IoU micro",
    "union_iou_macro": "IoU macro",
    "acc@0.5": "acc@.5",
    "f1@0.5": "F1@.5",
    "rodeo_localization": "RoDeO loc",
    "rodeo_total": "RoDeO",
}


def run_demo(
    workdir: Path, *, studies: int = 600, seed: int = 0, size: int = 256, console: Any = None
) -> dict[str, dict]:
    """Run the demo into ``workdir``; returns ``{baseline: metrics}``.

    The phantom release is reused when ``workdir/phantom`` already holds one made with
    the same parameters (recorded in ``workdir/phantom/ricl_phantom.json``).
    """
    from rich.console import Console
    from rich.table import Table

    from ricl.data.phantom import write_phantom_release
    from ricl.data.registry import load_dataset
    from ricl.evaluation.baselines import BASELINES, run_baseline
    from ricl.evaluation.predictions import write_predictions
    from ricl.evaluation.scoring import score_predictions_file

    console = console or Console()
    workdir = Path(workdir)
    release = workdir / "phantom"
    params = {"studies": studies, "seed": seed, "size": size}
    stamp = release / "ricl_phantom.json"
    console.rule("[bold]1. phantom PadChest-GR release")
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        console.print(f"reusing {release}")
    else:
        summary = write_phantom_release(release, studies, seed=seed, size=size, workers=2)
        stamp.write_text(json.dumps(params))
        console.print(
            f"wrote {summary.n_studies} studies / {summary.n_patients} patients / "
            f"{summary.n_boxes} boxes to {release} in {summary.seconds:.1f} s"
        )
    ds = load_dataset("phantom", release)
    train, test = ds.select("train"), ds.select("test")
    console.print(
        f"read back with the PadChest-GR reader: {len(train)} train / {len(test)} test instances"
    )

    console.rule("[bold]2. baselines -> predictions -> one scorer")
    results: dict[str, dict] = {}
    for name in BASELINES:
        run_dir = workdir / "runs" / name
        pred_path = run_dir / "predictions.jsonl"
        write_predictions(pred_path, run_baseline(name, train, test))
        metrics = score_predictions_file("phantom", release, pred_path, split="test")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        results[name] = metrics
        console.print(f"{name}: {pred_path} -> {run_dir / 'metrics.json'}")

    table = Table(title=f"phantom test split ({len(test)} instances)")
    table.add_column("baseline")
    for header in MAIN_METRICS.values():
        table.add_column(header, justify="right")
    for name, metrics in results.items():
        table.add_row(name, *(f"{metrics[m]:.3f}" for m in MAIN_METRICS))
    console.print(table)
    return results
