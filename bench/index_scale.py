"""Index builds at scale: build time, bytes on disk, memory, query latency and recall@10 per
index type, and the cost of merging shards.

    python bench/index_scale.py                                  # 100k x 768, every type
    python bench/index_scale.py --n 1000000 --types flat,ivfpq,hnsw-sq
    python bench/index_scale.py --dim 1152 --types flat,ivfpq,hnsw-sq --shards 0
    python bench/index_scale.py --types hnsw-sq:M=16,ivfpq:m=384 # parameters after colons
    python bench/index_scale.py --n 1M --dim 256 --types ivfpq --shards 0 --sweep 16,64,256

Vectors: ``--n`` L2-normalized vectors of dim ``--dim`` around ``n / 1000`` random centres
(``bench/retrieval_scale.py``'s ``--clustered`` distribution, noise norm ``--spread``);
queries are fresh draws. Every index is built by ricl's own code path
(:func:`ricl.retrieval.indexes.make_faiss_index`) in a fresh child process, which writes it
with ``faiss.write_index`` (the ``.faiss`` file ricl ships); a second fresh process reads it
back and serves the queries. Columns:

* build s: ``make_faiss_index`` (training included), vectors already in memory;
* bytes: the ``.faiss`` file on disk (and per vector);
* build peak RSS: the build process's peak resident memory (``VmHWM``), input vectors
  (``n * d * 4`` bytes) included;
* serve RSS: resident memory the loaded index adds to a fresh process;
* p50 1 thread / p50 default: one query per ``search`` call (what ricl does for a single
  query: one OpenMP thread), and with FAISS's default threads; p50 over up to
  ``--queries`` calls, time-boxed by ``--budget-s``;
* recall@10: share of the exact top 10 (``faiss.knn``, inner product) found, over
  ``--eval-queries`` queries; with ``--sweep 16,64,256`` also the recall and one-thread
  p50 of the same index at those ``nprobe`` / ``ef_search`` values (a second table).

Shards (``--shards N``, default 4; 0 skips): the same vectors written as N index shards
(``ricl.retrieval.shards`` layout, synthetic exemplar records without boxes), then
``merge_shards`` into a ``--merge-type`` index (default flat, so that the merge's own cost
shows), against ``write_index`` from one in-memory array; each in a fresh process, with its
peak RSS. Not a test: prints markdown (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:  # run as a script from a checkout
        sys.path.insert(0, str(p))

from retrieval_scale import Distribution, fmt_size, gib, machine, parse_size, parse_types

DEFAULT_TYPES = "flat,hnsw,ivf,ivfpq,hnsw-sq"


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM; ru_maxrss off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # pragma: no cover


def p50_single(index: Any, q: np.ndarray, k: int, budget_s: float, n_max: int) -> list[float]:
    for i in range(min(3, len(q))):  # warm-up
        index.search(q[i : i + 1], k)
    out: list[float] = []
    t_end = time.perf_counter() + budget_s
    for i in range(min(n_max, len(q))):
        t0 = time.perf_counter()
        index.search(q[i : i + 1], k)
        out.append(time.perf_counter() - t0)
        if len(out) >= 30 and time.perf_counter() > t_end:
            break
    return out


# ---------------------------------------------------------------------------- children
def child_build(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one index from the vectors file and write it; report time, size, peak RSS."""
    from ricl.retrieval.indexes import make_faiss_index
    from ricl.retrieval.manifest import IndexConfig

    x = np.load(spec["vectors"], allow_pickle=False)  # in memory, as a build has them
    config = IndexConfig.model_validate(spec["config"])
    t0 = time.perf_counter()
    index, info = make_faiss_index(x, config, seed=spec["seed"])
    build_s = time.perf_counter() - t0
    import faiss

    faiss.write_index(index, spec["index"])
    return {"build_s": build_s, "info": info, "bytes": os.path.getsize(spec["index"]),
            "peak_rss": peak_rss()}  # fmt: skip


def child_serve(spec: dict[str, Any]) -> dict[str, Any]:
    """Read the index back (ricl's search parameters applied), time and score queries."""
    import faiss

    from ricl.retrieval.indexes import set_search
    from ricl.retrieval.manifest import IndexFileInfo

    q = np.load(spec["queries"], allow_pickle=False)
    exact = np.load(spec["exact"], allow_pickle=False)
    k = exact.shape[1]
    before = rss_now()
    index = faiss.read_index(spec["index"])
    serve_rss = rss_now() - before
    info = IndexFileInfo(file="x.faiss", ntotal=index.ntotal, **spec["info"])
    set_search(index, info, {})
    default_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    one = p50_single(index, q, k, spec["budget_s"], spec["queries_max"])
    faiss.omp_set_num_threads(default_threads)
    many = p50_single(index, q, k, spec["budget_s"], spec["queries_max"])
    recall = _recall(index, q[: len(exact)], exact)
    knob = {"hnsw": "ef_search", "hnsw-sq": "ef_search", "ivf": "nprobe", "ivfpq": "nprobe"}
    sweep = []  # other values of the search-time knob, one thread
    faiss.omp_set_num_threads(1)
    for v in spec["sweep"] if info.type in knob else []:
        set_search(index, info, {knob[info.type]: v})
        p50 = float(np.median(p50_single(index, q, k, spec["budget_s"], spec["queries_max"])))
        sweep.append({"knob": knob[info.type], "value": v, "p50_1": p50,
                      "recall": _recall(index, q[: len(exact)], exact)})  # fmt: skip
    return {"serve_rss": serve_rss, "p50_1": float(np.median(one)), "p50_default": float(np.median(many)),
            "p99_1": float(np.quantile(one, 0.99)), "n_timed": len(one),
            "recall": recall, "threads": default_threads, "sweep": sweep}  # fmt: skip


def _recall(index: Any, q: np.ndarray, exact: np.ndarray) -> float:
    _, found = index.search(q, exact.shape[1])
    hits = [len(set(f) & set(e)) for f, e in zip(found.tolist(), exact.tolist(), strict=True)]
    return float(np.mean(hits)) / exact.shape[1]


def _synthetic_exemplars(start: int, stop: int) -> list[Any]:
    from ricl.retrieval.exemplars import Exemplar, ExemplarFinding

    f = (ExemplarFinding(1, "a finding", (), ("nodule",), ("right",), "nodule"),)
    return [Exemplar(i, f"S{i}", f"I{i}", f"P{i // 3}", "train", f"img/{i}.png", f, (1024, 1024))
            for i in range(start, stop)]  # fmt: skip


def _bench_infos() -> dict[str, Any]:
    from ricl.retrieval.manifest import DatasetInfo, EncoderInfo

    return {
        "encoder": EncoderInfo(name="bench", fingerprint="bench", spec="bench"),
        "dataset": DatasetInfo(name="bench", fingerprint="bench", split="train", root="bench",
                               images_root=None, include_normal=False),
    }  # fmt: skip


def child_write_shards(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the vectors as ``spec['shards']`` index shards (the layout build_shard writes)."""
    import ricl
    from ricl.retrieval.exemplars import write_exemplars
    from ricl.retrieval.manifest import Counts
    from ricl.retrieval.shards import ShardInfo, ShardManifest, shard_dir_name, shard_range

    x = np.load(spec["vectors"], mmap_mode="r", allow_pickle=False)
    n, d = x.shape
    count, batch = spec["shards"], 256
    t0 = time.perf_counter()
    for i in range(count):
        start, stop = shard_range(i, count, n, batch)
        out = Path(spec["root"]) / shard_dir_name(i, count)
        out.mkdir(parents=True)
        np.save(out / "global-embeddings.npy", np.ascontiguousarray(x[start:stop]), allow_pickle=False)  # fmt: skip
        np.save(out / "region-embeddings.npy", np.zeros((0, d), np.float32), allow_pickle=False)
        write_exemplars(out / "exemplars.jsonl", _synthetic_exemplars(start, stop))
        m = ShardManifest(
            ricl_version=ricl.__version__, built_at="bench",
            shard=ShardInfo(index=i, count=count, start=start, stop=stop, total=n),
            embed_dim=d, exemplars_digest="bench", batch_size=batch,
            counts=Counts(exemplars=stop - start, regions=0, findings=stop - start, normal_skipped=0),
            index=None, **_bench_infos(),
        )  # fmt: skip
        (out / "manifest.json").write_text(m.model_dump_json(indent=2))
    return {"write_s": time.perf_counter() - t0, "peak_rss": peak_rss()}


def child_merge(spec: dict[str, Any]) -> dict[str, Any]:
    """``merge_shards`` (spec['root'] set) or ``write_index`` from one array (not set)."""
    from ricl.retrieval.build import write_index
    from ricl.retrieval.manifest import IndexConfig
    from ricl.retrieval.shards import merge_shards

    config = IndexConfig.model_validate(spec["config"])
    out = Path(spec["out"])
    t0 = time.perf_counter()
    if spec.get("root"):
        merge_shards([spec["root"]], out, config)
    else:
        x = np.load(spec["vectors"], allow_pickle=False)
        out.mkdir()
        write_index(out, [x], [np.zeros((0, x.shape[1]), np.float32)],
                    _synthetic_exemplars(0, len(x)), embed_dim=x.shape[1], normal_skipped=0,
                    index=config, seed=0, **_bench_infos())  # fmt: skip
    return {"s": time.perf_counter() - t0, "peak_rss": peak_rss()}


CHILDREN = {"build": child_build, "serve": child_serve, "write-shards": child_write_shards,
            "merge": child_merge}  # fmt: skip


def run_child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``kind`` in a fresh interpreter; its last stdout line is the JSON result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- report
def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def ms(s: float) -> str:
    v = s * 1e3
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def index_table(rows: list[dict[str, Any]]) -> str:
    head = ("| n | dim | index | params | build s | bytes on disk | bytes / vector "
            "| build peak RSS MiB | serve RSS MiB | p50 ms, 1 thread | p50 ms, default threads "
            "| recall@10 |")  # fmt: skip
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        p = ", ".join(f"{k}={v}" for k, v in r["info"]["params"].items()) or "-"
        lines.append(
            f"| {fmt_size(r['n'])} | {r['dim']} | {r['info']['type']} | {p} | {r['build_s']:.1f} "
            f"| {gib(r['bytes'])} | {r['bytes'] / r['n']:.0f} | {mib(r['peak_rss'])} "
            f"| {mib(r['serve_rss'])} | {ms(r['p50_1'])} | {ms(r['p50_default'])} "
            f"| {r['recall']:.3f} |"
        )
    return "\n".join(lines)


def load_avg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=parse_size, default=parse_size("100k"), help="vectors (100k, 1M)")
    ap.add_argument("--dim", type=int, default=768, help="embedding dim (768: SigLIP base)")
    ap.add_argument("--types", default=DEFAULT_TYPES, help="index types, e.g. hnsw-sq:M=16")
    ap.add_argument("--vectors-per-centre", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=1.0, help="noise norm around the centres")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=500, help="single-query calls (at most)")
    ap.add_argument("--eval-queries", type=int, default=1000, help="queries for recall@10")
    ap.add_argument("--budget-s", type=float, default=5.0, help="time per latency measurement")
    ap.add_argument("--sweep", type=lambda t: [int(v) for v in t.split(",")], default=[],
                    help="also nprobe / ef_search values to score, e.g. 16,64,256")  # fmt: skip
    ap.add_argument("--shards", type=int, default=4, help="shards for the merge timing (0: skip)")
    ap.add_argument("--merge-type", default="flat", help="index type of the merge timing")
    ap.add_argument("--tmp", default=None, help="scratch folder (vectors, indexes, shards)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.spec))))
        return 0

    import faiss

    command = "python bench/index_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])  # fmt: skip
    n, d = args.n, args.dim
    lines = [f"### {fmt_size(n)} x {d} (`{command.strip()}`)", "",
             f"- machine: {machine()}; load average at start {load_avg()}",
             (f"- vectors: clustered, {max(1, n // args.vectors_per_centre)} centres, noise norm "
             f"{args.spread:g}; k={args.k}; recall over {args.eval_queries} queries vs exact"),
             (f"- input vectors: {n} x {d} float32 = {mib(n * d * 4)} MiB, in every build peak "
             "RSS below (a build holds them in memory)"),
             f"- started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "", ""]  # fmt: skip
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="index-scale-") as tmp_name:
        tmp = Path(tmp_name)
        dist = Distribution(d, True, max(1, n // args.vectors_per_centre), args.spread, args.seed)
        t0 = time.perf_counter()
        x = dist.sample(n, stream=0)
        q = dist.sample(max(args.queries, args.eval_queries), stream=1)
        _, exact = faiss.knn(q[: args.eval_queries], x, args.k, faiss.METRIC_INNER_PRODUCT)
        for name, arr in (("x", x), ("q", q), ("exact", exact.astype(np.int64))):
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        del x
        print(f"[data] vectors + exact top-{args.k} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)  # fmt: skip
        rows: list[dict[str, Any]] = []
        for label, config in parse_types(args.types):
            assert config is not None, "default is not a type here"
            spec = {"vectors": str(tmp / "x.npy"), "config": config.model_dump(),
                    "index": str(tmp / "i.faiss"), "seed": args.seed}  # fmt: skip
            print(f"[{label}] building ...", file=sys.stderr, flush=True)
            built = run_child("build", spec)
            served = run_child("serve", {"index": spec["index"], "info": built["info"],
                                         "queries": str(tmp / "q.npy"), "exact": str(tmp / "exact.npy"),
                                         "budget_s": args.budget_s, "queries_max": args.queries,
                                         "sweep": args.sweep})  # fmt: skip
            rows.append({"n": n, "dim": d, **built, **served})
            print(index_table(rows[-1:]).splitlines()[-1], flush=True)
            os.remove(spec["index"])
        out = "\n".join(lines) + index_table(rows) + "\n"
        threads = rows[0]["threads"] if rows else "?"
        out += f"\nFAISS default threads in the serving process: {threads}.\n"
        sweeps = [(r, s) for r in rows for s in r["sweep"]]
        if sweeps:
            out += ("\nSearch-time knob, same built index (one thread):\n\n"
                    "| index | knob | p50 ms, 1 thread | recall@10 |\n|---|---|---|---|\n")  # fmt: skip
            out += "".join(f"| {r['info']['type']} | {s['knob']}={s['value']} | {ms(s['p50_1'])} "
                           f"| {s['recall']:.3f} |\n" for r, s in sweeps)  # fmt: skip
        if args.shards:
            out += "\n" + shard_timing(args, tmp) + "\n"
    out += f"\nLoad average at the end {load_avg()}; finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.\n"  # fmt: skip
    print("\n" + out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(out)
    return 0


def shard_timing(args: argparse.Namespace, tmp: Path) -> str:
    from ricl.retrieval.manifest import IndexConfig

    config = IndexConfig(type=args.merge_type).model_dump()
    print(f"[shards] writing {args.shards} shards ...", file=sys.stderr, flush=True)
    written = run_child("write-shards", {"vectors": str(tmp / "x.npy"), "shards": args.shards,
                                         "root": str(tmp / "shards")})  # fmt: skip
    merged = run_child("merge", {"root": str(tmp / "shards"), "out": str(tmp / "merged"), "config": config})  # fmt: skip
    whole = run_child("merge", {"vectors": str(tmp / "x.npy"), "out": str(tmp / "whole"), "config": config})  # fmt: skip
    same = (tmp / "merged" / "global.faiss").read_bytes() == (tmp / "whole" / "global.faiss").read_bytes()  # fmt: skip
    return "\n".join([
        (f"Shards: {fmt_size(args.n)} x {args.dim} as {args.shards} shards, merged into a "
        f"`{args.merge_type}` index (each step a fresh process):"), "",
        "| step | s | peak RSS MiB |", "|---|---|---|",
        f"| write {args.shards} shard folders (npy + records + manifest) | {written['write_s']:.1f} | {mib(written['peak_rss'])} |",
        f"| `merge_shards` (validate, memory-map, build, write) | {merged['s']:.1f} | {mib(merged['peak_rss'])} |",
        f"| `write_index` from one in-memory array (unsharded) | {whole['s']:.1f} | {mib(whole['peak_rss'])} |",
        "", f"global.faiss of the merge byte-identical to the unsharded one: {same}.",
    ])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
