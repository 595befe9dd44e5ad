"""Speed of the project's grounding VLM: training steps/s, and queries/s at k = 0, 1, 3, 5
in process (``hf`` backend) and against a vLLM server (concurrency 1, 4, 8).

    python bench/vlm_speed.py --model ricl/assets/vlm/phantom-qwen2vl \\
        --root ricl-demo/phantom --index ricl-demo/indexes/phantom-lofi
    python bench/vlm_speed.py ... --server http://127.0.0.1:8000/v1     # also a running server
    python bench/vlm_speed.py ... --serve          # start a local CPU vLLM server for --model
    python bench/vlm_speed.py ... --train-config eval/vlm/phantom_sites.yaml --train-steps 20

Queries: the first ``--queries`` test instances with boxes, exemplars from the index
(``fine-grained`` selector, leakage guard on), the ``k-shot`` strategy and ``qwen2vl``
codec, images at <= 112 px, greedy decoding up to 48 new tokens. Steps/s: ``train_vlm`` for
``--train-steps`` steps of the given recipe into a temporary folder (after 2 warm-up steps).
Prints markdown tables; not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ricl.agent import GroundingAgent, GroundingQuery
from ricl.agent_config import AgentConfig


def queries(root: str, n: int) -> list[GroundingQuery]:
    from ricl.data import load_dataset

    ds = load_dataset("phantom", root, read_image_sizes=False)
    out = [
        GroundingQuery(ds.images_root / i.image_path, i.phrase, study_id=i.study_id,
                       patient_id=i.patient_id)
        for i in ds.select("test") if i.boxes
    ]  # fmt: skip
    return out[:n]


def in_process(args: argparse.Namespace, qs: list[GroundingQuery]) -> str:
    from ricl.vlm.hf import HFBackend

    backend = HFBackend(args.model, max_tokens=48)
    rows = [
        "| k | queries | seconds | queries/s | mean answer tokens |",
        "|---:|---:|---:|---:|---:|",
    ]
    for k in (0, 1, 3, 5):
        agent = GroundingAgent(
            AgentConfig(index=args.index, k=k, strategy="k-shot" if k else "zero-shot",
                        codec="qwen2vl", max_image_side=112),
            backend=backend,
        )  # fmt: skip
        agent.ground(qs[0].image, qs[0].phrase)  # warm-up
        t0 = time.perf_counter()
        results = [agent.ground(q.image, q.phrase, study_id=q.study_id, patient_id=q.patient_id)
                   for q in qs]  # fmt: skip
        dt = time.perf_counter() - t0
        toks = sum(len(backend.processor.tokenizer(r.raw)["input_ids"]) for r in results) / len(qs)
        rows.append(f"| {k} | {len(qs)} | {dt:.2f} | {len(qs) / dt:.2f} | {toks:.1f} |")
    return "\n".join(rows)


def served(args: argparse.Namespace, qs: list[GroundingQuery]) -> str:
    from ricl.vlm.openai import OpenAIBackend

    rows = ["| k | concurrency | queries | seconds | queries/s |", "|---:|---:|---:|---:|---:|"]
    for k in (0, 1, 3, 5):
        for c in (1, 4, 8):
            backend = OpenAIBackend(None, args.server, max_tokens=48, max_concurrency=c)
            agent = GroundingAgent(
                AgentConfig(index=args.index, k=k, strategy="k-shot" if k else "zero-shot",
                            codec="qwen2vl", max_image_side=112),
                backend=backend,
            )  # fmt: skip
            agent.ground_many(qs[:2])  # warm-up
            t0 = time.perf_counter()
            agent.ground_many(qs)
            dt = time.perf_counter() - t0
            rows.append(f"| {k} | {c} | {len(qs)} | {dt:.2f} | {len(qs) / dt:.2f} |")
    return "\n".join(rows)


def training(args: argparse.Namespace) -> str:
    from ricl_apps.train.vlm.config import VLMTrainConfig
    from ricl_apps.train.vlm.trainer import train_vlm

    with tempfile.TemporaryDirectory() as tmp:
        cfg = VLMTrainConfig.from_yaml(args.train_config, [f"out_dir={tmp}/run", "log_every=1"])
        train_vlm(cfg, progress=False, stop_after=2)
        t0 = time.perf_counter()
        train_vlm(cfg, resume=True, progress=False, stop_after=args.train_steps)
        dt = time.perf_counter() - t0
    return (f"| recipe | batch | steps | seconds | steps/s |\n|---|---:|---:|---:|---:|\n"
            f"| {args.train_config} | {cfg.batch_size} | {args.train_steps} | {dt:.1f} | "
            f"{args.train_steps / dt:.2f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--server", default=None, help="base URL of a running server")
    ap.add_argument("--serve", action="store_true", help="start a local vLLM server for --model")
    ap.add_argument("--train-config", default=None)
    ap.add_argument("--train-steps", type=int, default=20)
    args = ap.parse_args(argv)
    import torch

    print(f"# VLM speed: {args.model}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, cuda {torch.cuda.is_available()}\n")  # fmt: skip
    qs = queries(args.root, args.queries)
    print("## In process (hf backend, sequential)\n")
    print(in_process(args, qs))
    if args.serve:
        from ricl.vlm.serve import VLLMServer

        with VLLMServer(args.model, max_images=6) as server:
            args.server = server.base_url
            print("\n## vLLM server (openai backend, ground_many)\n")
            print(served(args, qs))
    elif args.server:
        print("\n## vLLM server (openai backend, ground_many)\n")
        print(served(args, qs))
    if args.train_config:
        print("\n## Training\n")
        print(training(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
