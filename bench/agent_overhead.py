"""The grounding agent's own overhead per query, without the VLM, and (optionally) its
throughput against a served model at several concurrencies.

    python bench/agent_overhead.py                      # 100k exemplars, k=3, qwen2vl codec
    python bench/agent_overhead.py --exemplars 10k --k 5 --codec qwen25vl
    python bench/agent_overhead.py --server http://127.0.0.1:8000/v1 --queries 32

Overhead (the issue's target: <= 5 ms p50 at 100k exemplars on 2 cores), per query:

* retrieve: ``Retriever.retrieve`` with a precomputed query embedding (FAISS search with
  the default index type for that size, the leakage guard, de-duplication); the query
  ENCODER is a model and is not counted, like the VLM;
* prompt: strategy rendering, the codec's answers for the demonstrations;
* images: the base64 data URLs of the k+1 images as sent (``OpenAIBackend.payload``),
  measured cold (the exemplar image cache cleared before every query: every image
  encoded) and warm (exemplar images already encoded, only the query's);
* parse: the codec reading a typical answer.

The index: ``--exemplars`` synthetic exemplars (random unit vectors, dim 256) whose images
are the ``--images`` phantom radiographs (512 px) reused in turn, written with ricl's own
store functions. With ``--server``, the agent (``openai`` backend) answers ``--queries``
queries sequentially (``ground`` in a loop) and then with ``ground_many`` at concurrency
1, 2, 4, 8; queries/s is printed for each. Not a test: it prints markdown tables.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from ricl.agent import GroundingAgent, GroundingQuery
from ricl.agent_config import AgentConfig


def parse_count(text: str) -> int:
    text = text.lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def build_index(
    out: Path, images_root: Path, images: list[tuple[str, tuple[int, int]]], n: int, d: int
) -> None:
    """``n`` exemplars (one or two findings each) over the given images, default index."""
    from synthetic_index import write_index_dir

    from ricl.retrieval.exemplars import Exemplar, ExemplarFinding
    from ricl.retrieval.store import default_index_config, make_faiss_index
    from ricl.types import Box

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    config = default_index_config(n)
    g_index, g_info = make_faiss_index(vecs, config, seed=0)
    out.mkdir(parents=True)
    phrases = ["nodule in the right upper zone", "left pleural effusion", "cardiomegaly"]

    def findings(i: int) -> tuple[ExemplarFinding, ...]:
        x = 0.1 + 0.5 * ((i * 37) % 100) / 100
        return tuple(
            ExemplarFinding(
                j,
                phrases[(i + j) % 3],
                (Box(x, 0.2 + 0.1 * j, x + 0.2, 0.5),),
                ("nodule",),
                ("right",),
                "nodule",
            )
            for j in range(1 + i % 2)
        )

    exemplars = (
        Exemplar(
            i,
            f"S{i}",
            f"I{i}",
            f"P{i // 3}",
            "train",
            images[i % len(images)][0],
            findings(i),
            images[i % len(images)][1],
        )
        for i in range(n)
    )
    write_index_dir(out, g_index, g_info, config, exemplars,
                    n_findings=sum(1 + i % 2 for i in range(n)), root=str(out),
                    images_root=str(images_root))  # fmt: skip


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.2f}"


def overhead(agent: GroundingAgent, queries: list[GroundingQuery], answer: str, fmt: str) -> str:
    """Per-query step times (ms). Query images are in memory (PIL, as from the Python API):
    they are encoded for every query, never cached. Exemplar images are files: measured
    cached (the encoder's LRU cache already holds them) and uncached (cache cleared first:
    each read from its 16-bit file, windowed and encoded)."""
    from ricl.prompting.messages import codec_frame
    from ricl.vlm.openai import OpenAIBackend
    from ricl.vlm.payload import _file_data_url

    sender = OpenAIBackend("bench", client=object(), image_format=fmt)  # payloads; never sent
    names = ("retrieve", "prompt", "images, exemplars cached", "images, nothing cached", "parse")
    cols: dict[str, list[float]] = {k: [] for k in names}
    for q in queries:
        request, t = agent.request(q)
        cols["retrieve"].append(t["retrieve"])
        cols["prompt"].append(t["prompt"])
        _file_data_url.cache_clear()
        t0 = time.perf_counter()
        sender.payload(request)
        cols["images, nothing cached"].append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        sender.payload(request)
        cols["images, exemplars cached"].append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        agent.codec.parse(answer, image_size=codec_frame(agent.codec, request.prompt.query))
        cols["parse"].append((time.perf_counter() - t0) * 1e3)

    def total(images: str) -> list[float]:
        keys = ("retrieve", "prompt", images, "parse")
        return [sum(v) for v in zip(*(cols[k] for k in keys), strict=True)]

    rows = ["| step | p50 ms | p99 ms |", "|---|---:|---:|"]
    totals = [
        ("**total, exemplar images cached**", total("images, exemplars cached")),
        ("total, nothing cached", total("images, nothing cached")),
    ]
    for name, values in [*cols.items(), *totals]:
        rows.append(f"| {name} | {pct(values, 50)} | {pct(values, 99)} |")
    return "\n".join(rows)


def throughput(agent: GroundingAgent, queries: list[GroundingQuery], server: str) -> str:
    from ricl.vlm.openai import OpenAIBackend

    rows = ["| mode | queries | seconds | queries/s |", "|---|---:|---:|---:|"]
    agent.backend = OpenAIBackend(None, server, max_tokens=32)
    agent.ground(queries[0].image, queries[0].phrase, embedding=queries[0].embedding)  # warm-up
    t0 = time.perf_counter()
    for q in queries:
        agent.ground(q.image, q.phrase, embedding=q.embedding, study_id=q.study_id)
    dt = time.perf_counter() - t0
    rows.append(f"| sequential loop | {len(queries)} | {dt:.2f} | {len(queries) / dt:.2f} |")
    for c in (1, 2, 4, 8):
        agent.backend = OpenAIBackend(None, server, max_tokens=32, max_concurrency=c)
        t0 = time.perf_counter()
        agent.ground_many(queries)
        dt = time.perf_counter() - t0
        rows.append(
            f"| ground_many, concurrency {c} | {len(queries)} | {dt:.2f} | "
            f"{len(queries) / dt:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--exemplars", default="100k")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--codec", default="qwen2vl")
    ap.add_argument("--strategy", default="k-shot")
    ap.add_argument("--max-image-side", type=int, default=512)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--image-format", default="png", choices=["png", "jpeg"])
    ap.add_argument("--server", default=None, help="OpenAI-compatible base URL (throughput)")
    args = ap.parse_args(argv)
    n = parse_count(args.exemplars)

    from ricl.data import load_dataset
    from ricl.data.phantom import write_phantom_release

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_phantom_release(Path(tmp) / "release", args.images, 0, size=512, workers=1)
        ds = load_dataset("phantom", root=Path(tmp) / "release")
        paths = [s.image_path for s in ds.studies]
        sized = [(s.image_path, s.image_size) for s in ds.studies]
        build_index(Path(tmp) / "index", ds.images_root, sized, n, args.dim)
        setup_s = time.perf_counter() - t0
        agent = GroundingAgent(
            AgentConfig(
                index=str(Path(tmp) / "index"),
                k=args.k,
                codec=args.codec,
                strategy=args.strategy,
                max_image_side=args.max_image_side,
            )
        )
        rng = np.random.default_rng(1)
        qv = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        from ricl.data.images import to_pil_rgb

        in_memory = [to_pil_rgb(ds.images_root / p) for p in paths]  # as from the Python API
        queries = [
            GroundingQuery(
                in_memory[i % len(paths)],
                "nodule in the right upper zone",
                embedding=qv[i],
                study_id=f"Q{i}",
                patient_id=f"QP{i}",
            )
            for i in range(args.queries)
        ]
        answer = agent.codec.format(ds.studies[0].findings[-1].boxes or (), image_size=(512, 512))
        print(
            f"# Agent overhead: {n:,} exemplars, k={args.k}, codec {args.codec}, strategy "
            f"{args.strategy}, images sent at <= {args.max_image_side} px as {args.image_format}"
        )
        print(
            f"machine: {platform.processor() or platform.machine()}, "
            f"{__import__('os').cpu_count()} cores; setup {setup_s:.1f} s; "
            f"index {agent.retriever.settings()['index_type']}\n"
        )
        print(overhead(agent, queries, answer, args.image_format))
        if args.server:
            print()
            print(throughput(agent, queries, args.server))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
