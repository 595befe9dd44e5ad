"""Exemplar index at scale: build time, memory, query latency and recall@10 vs exact search.

    python bench/retrieval_scale.py                           # 10k, 100k, 1M; dim 768; uniform
    python bench/retrieval_scale.py --sizes 10k,100k --clustered
    python bench/retrieval_scale.py --sizes 10k --types flat,hnsw --out eval/results/x.md

Vectors are random unit vectors of the embedding dim (768 = SigLIP base by default):
``uniform`` (i.i.d. on the sphere: the worst case for approximate search, where the true
neighbours are barely nearer than anything else) or ``--clustered`` (points around random
centres, closer to real image embeddings). Queries are fresh draws of the same
distribution, not indexed vectors.

Indexes are built by ricl's own code path (:func:`ricl.retrieval.store.make_faiss_index`
with an :class:`IndexConfig`; ``default`` is what ``build_index`` picks for that many
vectors when no config is given), so the numbers are what ricl ships. Per index:

* build: seconds to build and fill it (IVF includes k-means training);
* size: bytes of the serialized index (= the ``.faiss`` file ricl writes); RSS: the
  process's resident memory after the build (vectors and queries included) and its change;
* single: latency of one query per ``search`` call, p50/p99 over up to ``--queries``
  calls (fewer when ``--budget-s`` runs out, at least 30), with the threads FAISS uses by
  default (``faiss.omp_get_max_threads()``, printed) unless ``--threads`` says otherwise;
* batch: latency of one ``search`` call of ``--batch`` queries, p50/p99;
* speedup: exact (flat) single-query p50 / this index's single-query p50, same size;
* recall@10: share of the exact top 10 (flat search) found in the index's top 10,
  averaged over ``--eval-queries`` queries.

Optionally (``--e2e``), ``Retriever.retrieve(embedding, k=10, study_id=..., patient_id=...)``
end to end on an index directory of each size with the default configuration: FAISS plus
the leakage guard, de-duplication and result objects (the agent's per-query overhead).

Not a test: it prints a markdown table (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from ricl.retrieval.store import IndexConfig, default_index_config, make_faiss_index


# ---------------------------------------------------------------------------- data
def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected e.g. 10000, 10k, 1M")
    return int(float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()])


def fmt_size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _normalize(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


@dataclass
class Distribution:
    """Uniform on the sphere, or ``n_centres`` random unit centres + Gaussian noise of norm
    about ``spread`` (cosine to the centre about ``1 / sqrt(1 + spread**2)``), normalized."""

    dim: int
    clustered: bool
    n_centres: int = 0
    spread: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clustered:
            rng = np.random.default_rng([self.seed, 1])
            c = rng.standard_normal((self.n_centres, self.dim), dtype=np.float32)
            self.centres = _normalize(c)

    def sample(self, n: int, stream: int, chunk: int = 100_000) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2, stream])
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            x = rng.standard_normal((stop - start, self.dim), dtype=np.float32)
            if self.clustered:
                x *= np.float32(self.spread / math.sqrt(self.dim))
                x += self.centres[rng.integers(0, self.n_centres, stop - start)]
            out[start:stop] = _normalize(x)
        return out


def describe(clustered: bool, per_centre: int, spread: float) -> str:
    if not clustered:
        return "uniform random unit vectors (i.i.d. on the sphere: the worst case for ANN)"
    cos = 1 / math.sqrt(1 + spread**2)
    return (
        f"clustered (`--clustered`): N / {per_centre} random unit centres, Gaussian noise of "
        f"norm {spread:g} (cosine to its centre ~{cos:.2f}), normalized"
    )


# ---------------------------------------------------------------------------- measuring
def rss() -> tuple[int, int]:
    """(current, peak) resident set size of this process in bytes (Linux /proc)."""
    cur = peak = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return cur, peak


def index_nbytes(index: Any) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def time_calls(fn, n: int, budget_s: float, minimum: int = 30) -> np.ndarray:
    """Seconds per call of ``fn(i)`` for i < n, stopping after ``budget_s`` (>= minimum)."""
    for i in range(min(3, n)):  # warm-up
        fn(i)
    out = []
    t_end = time.perf_counter() + budget_s
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
        if i + 1 >= minimum and time.perf_counter() > t_end:
            break
    return np.asarray(out)


def recall_at(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    hits = [
        len(set(f[:k].tolist()) & set(e[:k].tolist())) for f, e in zip(found, exact, strict=True)
    ]
    return float(np.mean(hits)) / k


@dataclass
class Row:
    size: int
    label: str
    params: dict[str, Any]
    build_s: float
    nbytes: int
    rss_after: int
    rss_delta: int
    single: np.ndarray
    batch: np.ndarray
    recall: float
    speedup: float = float("nan")
    note: str = ""
    config: IndexConfig | None = None


def measure(
    x: np.ndarray,
    queries: np.ndarray,
    eval_q: np.ndarray,
    exact_ids: np.ndarray | None,
    label: str,
    config: IndexConfig,
    args: argparse.Namespace,
    keep: bool = False,
) -> tuple[list[Row], np.ndarray, tuple[Any, dict[str, Any]] | None]:
    """Build and time one index; returns its rows (the built parameters first, then with
    ``--sweep`` other search-time values), its top-k ids of ``eval_q`` with the built
    parameters and, with ``keep``, ``(index, info)`` (else the index is freed)."""
    gc.collect()
    before = rss()[0]
    t0 = time.perf_counter()
    index, info = make_faiss_index(x, config, seed=args.seed)
    build_s = time.perf_counter() - t0
    after = rss()[0]
    nbytes = index_nbytes(index)
    k, b = args.k, args.batch
    n_batches = len(queries) // b
    params = {"type": info["type"], **{kk: v for kk, v in info["params"].items() if v is not None}}

    def timed(budget_s: float, params: dict[str, Any], label: str) -> tuple[Row, np.ndarray]:
        single = time_calls(lambda i: index.search(queries[i : i + 1], k), len(queries), budget_s)
        batch = time_calls(
            lambda i: index.search(queries[(i % n_batches) * b : (i % n_batches + 1) * b], k),
            args.batches, budget_s, minimum=min(10, args.batches),
        )  # fmt: skip
        _, found = index.search(eval_q, k)
        recall = 1.0 if exact_ids is None else recall_at(found, exact_ids, k)
        row = Row(len(x), label, params, build_s, nbytes, after, after - before, single, batch, recall)  # fmt: skip
        return row, found

    row, found = timed(args.budget_s, params, label)
    rows = [row]
    knob = {"hnsw": "ef_search", "ivf": "nprobe"}.get(info["type"])
    if args.sweep and knob:
        for value in SWEEP[knob]:
            if value == info["params"][knob]:
                continue
            if knob == "ef_search":
                index.hnsw.efSearch = value
            else:
                index.nprobe = value
            swept, _ = timed(args.budget_s / 3, {**params, knob: value}, f"{info['type']} (search)")
            swept.build_s = float("nan")  # same index as the row above
            rows.append(swept)
        if knob == "ef_search":
            index.hnsw.efSearch = info["params"][knob]
        else:
            index.nprobe = info["params"][knob]
    if keep:
        return rows, found, (index, info)
    index.reset()  # free the vectors now
    return rows, found, None


def e2e_latency(
    g_index: Any, g_info: dict[str, Any], queries: np.ndarray, args: argparse.Namespace
) -> np.ndarray:
    """Seconds per ``Retriever.retrieve(embedding, k, study_id=, patient_id=)`` on an index
    directory holding ``g_index`` (built by ``make_faiss_index``; ``g_info`` what it
    returned), written with ricl's store functions: one exemplar per vector with one
    finding, 3 studies per patient, no regions."""
    from synthetic_index import write_index_dir

    from ricl.retrieval.exemplars import Exemplar, ExemplarFinding
    from ricl.retrieval.retriever import Retriever
    from ricl.types import Box

    n = g_index.ntotal
    config = IndexConfig(type=g_info["type"], **g_info["params"])
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        out = Path(tmp)
        box = (Box(0.1, 0.2, 0.4, 0.5),)
        exemplars = (
            Exemplar(i, f"S{i}", f"I{i}", f"P{i // 3}", "train", f"img/{i}.png",
                     (ExemplarFinding(1, "a finding", box, ("nodule",), ("right",), "nodule"),),
                     (1024, 1024))
            for i in range(n)
        )  # fmt: skip
        write_index_dir(out, g_index, g_info, config, exemplars, n_findings=n, root=tmp,
                        images_root=None, seed=args.seed)  # fmt: skip
        r = Retriever(out)
        rng = np.random.default_rng(args.seed)
        ids = rng.integers(0, n, len(queries))

        def call(i: int) -> None:
            e = int(ids[i])
            got = r.retrieve(queries[i], args.k, study_id=f"S{e}", patient_id=f"P{e // 3}")
            assert len(got) == min(args.k, n)

        return time_calls(call, len(queries), args.budget_s)


# ---------------------------------------------------------------------------- report
def ms(seconds: float) -> str:
    v = seconds * 1e3
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def gib(n: int) -> str:
    if abs(n) >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.0f} MiB" if abs(n) >= 2**20 else f"{n / 2**10:.0f} KiB"


def table(rows: list[Row]) -> str:
    head = (
        "| N | index | params | build s | size | RSS after build | single p50 / p99 ms "
        "| batch p50 / p99 ms | speedup vs exact | recall@10 |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        p = ", ".join(f"{k}={v}" for k, v in r.params.items() if k != "type")
        if r.note:
            lines.append(f"| {fmt_size(r.size)} | {r.label} | {p} | {r.note} |||||||")
            continue
        built = (
            f"{r.build_s:.1f} | {gib(r.nbytes)} | {gib(r.rss_after)}"
            if math.isfinite(r.build_s)
            else "〃 | 〃 | 〃"  # a search-time variant of the index above
        )
        lines.append(
            f"| {fmt_size(r.size)} | {r.label} | {p or '-'} | {built} "
            f"| {ms(np.median(r.single))} / {ms(np.quantile(r.single, 0.99))} "
            f"| {ms(np.median(r.batch))} / {ms(np.quantile(r.batch, 0.99))} "
            f"| {r.speedup:.1f}x | {r.recall:.3f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    import faiss

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return (
        f"{os.cpu_count()} cores ({cpu}), {gib(mem)} RAM, "
        f"Python {platform.python_version()}, numpy {np.__version__}, faiss {faiss.__version__}, "
        f"faiss OpenMP threads {faiss.omp_get_max_threads()}"
    )


# ---------------------------------------------------------------------------- main
SWEEP = {"ef_search": (32, 64, 128, 256, 512), "nprobe": (8, 16, 32, 64, 128)}


def parse_types(text: str) -> list[tuple[str, IndexConfig | None]]:
    """``flat,hnsw,ivf,default`` or ``hnsw:M=16:ef_search=64`` -> (label, config or None)."""
    out: list[tuple[str, IndexConfig | None]] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, *kv = item.split(":")
        if kind == "default":
            out.append((item, None))
            continue
        params = {}
        for pair in kv:
            key, _, value = pair.partition("=")
            params[key] = json.loads(value)
        out.append((item, IndexConfig(type=kind, **params)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k,100k,1M", help="comma list: 10000, 10k, 1M")
    ap.add_argument("--dim", type=int, default=768, help="embedding dim (768: SigLIP base)")
    ap.add_argument("--types", default="flat,default,hnsw,ivf",
                    help="indexes: flat, hnsw, ivf, default (what build_index picks), or with "
                         "parameters, e.g. hnsw:M=16:ef_search=64, ivf:nprobe=32")  # fmt: skip
    ap.add_argument("--clustered", action="store_true", help="vectors around random centres")
    ap.add_argument("--vectors-per-centre", type=int, default=1000, help="--clustered: N / centres")
    ap.add_argument("--spread", type=float, default=1.0, help="--clustered: noise norm")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000, help="single-query calls (at most)")
    ap.add_argument("--batch", type=int, default=64, help="queries per batched call")
    ap.add_argument("--batches", type=int, default=50, help="batched calls (at most)")
    ap.add_argument("--eval-queries", type=int, default=1000, help="queries for recall@10")
    ap.add_argument("--budget-s", type=float, default=15.0, help="time per latency measurement")
    ap.add_argument(
        "--threads", type=int, default=None, help="faiss OpenMP threads (default: faiss's)"
    )
    ap.add_argument("--max-build-s", type=float, default=None,
                    help="skip an index whose build, extrapolated from the previous size, would "
                         "take longer than this")  # fmt: skip
    ap.add_argument("--sweep", action="store_true",
                    help="also time other search-time values on the same index: "
                         f"hnsw ef_search {SWEEP['ef_search']}, ivf nprobe {SWEEP['nprobe']}")  # fmt: skip
    ap.add_argument("--e2e", action="store_true", help="also time Retriever.retrieve end to end")
    ap.add_argument("--e2e-max", type=parse_size, default=parse_size("100k"),
                    help="--e2e: largest size timed end to end")  # fmt: skip
    ap.add_argument("--tmp", default=None, help="temporary folder for --e2e index directories")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = ap.parse_args(argv)

    import faiss

    if args.threads is not None:
        faiss.omp_set_num_threads(args.threads)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    types = parse_types(args.types)
    if not any(c is not None and c.type == "flat" for _, c in types):
        types.insert(0, ("flat", IndexConfig(type="flat")))  # the exact reference
    command = "python bench/retrieval_scale.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    header = [
        f"# Exemplar index at scale (`{command.strip()}`)",
        "",
        f"- machine: {machine()}",
        f"- vectors: dim {args.dim}, {describe(args.clustered, args.vectors_per_centre, args.spread)}",
        (
            f"- k={args.k}; single = one query per call; batch = {args.batch} queries per "
            f"call; recall@10 over {args.eval_queries} queries vs exact (flat) search; "
            "speedup = exact single p50 / single p50"
        ),
        f"- started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
        "",
    ]
    print("\n".join(header), flush=True)
    rows: list[Row] = []
    e2e: list[str] = []
    last_build: dict[str, tuple[int, float]] = {}
    for n in sizes:
        dist = Distribution(
            args.dim, args.clustered, max(1, n // args.vectors_per_centre), args.spread, args.seed
        )
        t0 = time.perf_counter()
        x = dist.sample(n, stream=0)
        n_q = max(args.queries, args.batch * 2, args.eval_queries)
        queries = dist.sample(n_q, stream=1)
        eval_q = queries[: args.eval_queries]
        print(f"[{fmt_size(n)}] vectors in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        exact_ids: np.ndarray | None = None
        default_built: tuple[Any, dict[str, Any]] | None = None
        exact_p50 = float("nan")
        for label, config in types:
            cfg = config if config is not None else default_index_config(n)
            same = next((r for r in rows if r.size == n and r.config == cfg), None)
            if same is not None:  # the default is one of the listed indexes: measured once
                if "default" not in same.label:
                    same.label += " = default"
                print(f"[{fmt_size(n)}] default = {same.label}", file=sys.stderr)
                continue
            key = label if config is not None else f"default->{cfg.type}"
            prev = last_build.get(key)
            if args.max_build_s and prev and prev[1] > 0:
                est = prev[1] * (n / prev[0]) * max(1.0, math.log(n) / math.log(prev[0]))
                if est > args.max_build_s:
                    rows.append(Row(n, label, {}, 0, 0, 0, 0, np.zeros(1), np.zeros(1), 0,
                                    note=f"not run: build estimated at {est:.0f} s (--max-build-s)"))  # fmt: skip
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
                    continue
            print(f"[{fmt_size(n)}] {label} ({cfg.params() or 'exact'}) ...", file=sys.stderr)
            keep = args.e2e and n <= args.e2e_max and cfg == default_index_config(n)
            measured, found, kept = measure(x, queries, eval_q, exact_ids, label, cfg, args, keep)
            if kept is not None:
                default_built = kept
            row = measured[0]
            row.config = cfg
            if label == "default":
                row.label = f"{row.params['type']} = default"
            last_build[key] = (n, row.build_s)
            if exact_ids is None and cfg.type == "flat":
                exact_ids, exact_p50 = found, float(np.median(row.single))
            for r in measured:
                r.speedup = exact_p50 / float(np.median(r.single))
                rows.append(r)
                print(table([r]).splitlines()[-1], flush=True)
        if default_built is not None:
            t0 = time.perf_counter()
            lat = e2e_latency(*default_built, queries, args)
            print(f"[{fmt_size(n)}] end to end in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
            e2e.append(
                f"| {fmt_size(n)} | {default_built[1]['type']} | {ms(np.median(lat))} / "
                f"{ms(np.quantile(lat, 0.99))} | {len(lat)} |"
            )
            default_built[0].reset()
            default_built = None
        del x, queries, eval_q
        gc.collect()
    threads = "set by --threads" if args.threads is not None else "faiss default"
    out = "\n".join(header) + table(rows) + "\n"
    out += (
        f"\nFAISS OpenMP threads: {faiss.omp_get_max_threads()} ({threads}); peak RSS of the "
        f"run {gib(rss()[1])}; finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.\n"
    )
    if e2e:
        out += (
            "\nricl `Retriever.retrieve(embedding, k, study_id=..., patient_id=...)` end to end, "
            "default index (leakage guard, de-duplication, result objects):\n\n"
            "| N | index | p50 / p99 ms | queries |\n|---|---|---|---|\n" + "\n".join(e2e) + "\n"
        )
    print("\n" + out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
