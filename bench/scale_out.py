"""Evaluation throughput when it scales out: many replicas through the Ray engine, and ricl
against a saturating load generator on one real vLLM server.

    python bench/scale_out.py replicas                   # fake servers, 1 2 4 8 replicas
    python bench/scale_out.py replicas --replicas 1 2 --seconds 20 --service-s 0.5
    python bench/scale_out.py vllm                       # one CPU vLLM server (embedded model)

``replicas`` (a simulation on one machine): N fake OpenAI-compatible servers, each with
``--slots`` requests served at once, ``--service-s`` seconds each, the rest queued (like
``vllm serve --max-num-seqs``), so one replica sustains exactly slots / service_s queries/s
however hard it is pushed. The queries go through ``ricl eval``'s own path for
``engine: ray`` (the engine function, Ray Data actors bound to the endpoints,
``actors_per_endpoint`` of them, and the run's RowWriter appending every row); zero-shot
queries on 64 px phantom images, repeated with suffixed instance ids until the run lasts
about ``--seconds``. Queries/s is the steady-state rate: rows finished between the 20th
and the 90th percentile of finish times, over that time span (the actor start-up and the
tail are left out). Target (issue 15): >= 0.9 x N x the one-replica rate, up to 8.

``vllm``: one real CPU vLLM server (``scripts/setup_vllm_cpu.sh``) serving the embedded
grounding VLM; side by side, alternating, ``--rounds`` times: (a) a load generator that
sends the same chat payloads, built beforehand (``agent.request`` then
``OpenAIBackend.payload``, exactly what ricl sends), from ``--concurrency`` closed-loop
workers with no other work (a saturating generator: more requests open than the server's
``--max-num-seqs``), and (b) ricl's local evaluation engine at the same concurrency,
building each prompt, encoding the image, parsing the answer and writing the row.
Queries/s = answered queries over wall time. Target: ricl >= 0.9 x the generator.
Prints markdown tables; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

ANSWER = json.dumps([[0.2, 0.3, 0.5, 0.6]])


# ------------------------------------------------------------------ fake replicas
@contextmanager
def slot_server(slots: int, service_s: float) -> Iterator[str]:
    """A fake OpenAI chat server answering ``slots`` requests at once, each after
    ``service_s`` seconds (the rest wait their turn); yields its base URL."""
    gate = threading.Semaphore(slots)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as vLLM's server

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with gate:
                time.sleep(service_s)
            body = {"id": "c", "object": "chat.completion", "created": 0, "model": "fake",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": ANSWER}}]}  # fmt: skip
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()


def repeated(instances: Sequence[Any], n: int) -> list[Any]:
    """``n`` instances: the given ones again and again, ids suffixed ``#r`` so each is new."""
    out = []
    r = 0
    while len(out) < n:
        out += [dataclasses.replace(i, instance_id=f"{i.instance_id}#{r}") for i in instances]
        r += 1
    return out[:n]


def steady_rate(times: Sequence[float]) -> float:
    """Rows per second between the 20th and the 90th percentile of finish times."""
    t = sorted(times)
    lo, hi = int(0.2 * len(t)), int(0.9 * len(t)) - 1
    if hi <= lo or t[hi] <= t[lo]:
        raise ValueError("too few rows for a steady-state rate: raise --seconds")
    return (hi - lo) / (t[hi] - t[lo])


class _Rows(io.StringIO):
    """Where the RowWriter appends (kept in memory: a file write is not what is measured,
    and a real run's rows are a few hundred bytes each)."""


def run_engine(engine_name: str, config: Any, agent: Any, images_root: Path,
               todo: Sequence[Any]) -> tuple[list[float], int, float]:  # fmt: skip
    """(finish times, failed rows, wall seconds) of ``todo`` through the named eval engine
    and a RowWriter, exactly as ``ricl eval`` drives them."""
    from ricl_apps.evaluation.engines import ENGINES
    from ricl_apps.evaluation.rows import RowWriter

    times: list[float] = []
    writer = RowWriter(_Rows(), {i.instance_id: i for i in todo}, {}, max_in_a_row=10**9,
                       on_row=lambda w: times.append(time.perf_counter()))  # fmt: skip
    t0 = time.perf_counter()
    ENGINES.get(engine_name)(config, agent, images_root, todo, writer)
    return times, writer.failed, time.perf_counter() - t0


def phantom(tmp: Path, size: int) -> tuple[Any, list[Any]]:
    from ricl.data import load_dataset
    from ricl.data.phantom import write_phantom_release

    write_phantom_release(tmp / "release", 40, 0, size=size, workers=1)
    ds = load_dataset("phantom", root=tmp / "release", read_image_sizes=False)
    return ds, ds.select("test")


def eval_config(ds: Any, agent: dict[str, Any], engine: dict[str, Any], concurrency: int) -> Any:
    from ricl_apps.evaluation.run_config import EvalConfig

    return EvalConfig.load({
        "run_id": "bench", "runs_dir": "unused",
        "dataset": {"name": "phantom", "root": str(ds.root), "split": "test"},
        "agent": agent, "engine": engine, "report": False, "rodeo": False,
        "concurrency": concurrency,
    })  # fmt: skip


def bench_replicas(args: argparse.Namespace) -> None:
    import ray

    from ricl.agent import GroundingAgent

    one = args.slots / args.service_s
    # the actors wait on sockets: logical CPUs may exceed the machine's cores
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")  # fmt: skip
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ds, base = phantom(Path(tmp), 64)
        for n in args.replicas:
            with ExitStack() as stack:
                urls = [stack.enter_context(slot_server(args.slots, args.service_s))
                        for _ in range(n)]  # fmt: skip
                agent_cfg = {"backend": "openai", "strategy": "zero-shot", "k": 0,
                             "codec": "json", "backend_options": {"model": "fake",
                                                                  "base_url": urls[0]}}  # fmt: skip
                engine = {"name": "ray", "endpoints": urls, "batch_size": args.slots,
                          "actors_per_endpoint": args.actors_per_endpoint}  # fmt: skip
                config = eval_config(ds, agent_cfg, engine, args.slots)
                agent = GroundingAgent(config.agent)
                todo = repeated(base, max(100, int(args.seconds * n * one)))
                times, failed, wall = run_engine("ray", config, agent, ds.images_root, todo)
            rate = steady_rate(times)
            rows.append((n, len(todo), failed, wall, rate))
            print(f"  {n} replicas: {rate:.2f} q/s steady ({len(todo)} queries, {wall:.1f} s)",
                  file=sys.stderr)  # fmt: skip
    ray.shutdown()
    single = rows[0][4] if rows[0][0] == 1 else one
    print(f"\nfake replicas: {args.slots} slots x {args.service_s} s each = {one:.2f} q/s per "
          f"replica at most; Ray engine, {args.actors_per_endpoint} actors per endpoint, batch "
          f"{args.slots}; {platform.processor() or platform.machine()}, "
          f"{_cores()} cores\n")  # fmt: skip
    print(
        "| replicas | queries | failed | wall s | steady q/s | ideal N x one-replica q/s "
        "| ratio to N x measured one-replica | target >= 0.9 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, q, failed, wall, rate in rows:
        ratio = rate / (n * single)
        print(f"| {n} | {q} | {failed} | {wall:.1f} | {rate:.2f} | {n * one:.2f} | "
              f"{ratio:.3f} | {'met' if ratio >= 0.9 else 'MISSED'} |")  # fmt: skip


# ------------------------------------------------------------------ one real vLLM server
async def generator(base_url: str, payloads: Sequence[dict[str, Any]], concurrency: int) -> float:
    """Seconds to send every payload from ``concurrency`` closed-loop workers, each POST
    waiting only on the server (raises on any non-200 answer)."""
    import httpx

    todo = list(payloads)
    async with httpx.AsyncClient(base_url=base_url, timeout=600,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:  # fmt: skip

        async def worker() -> None:
            while todo:
                r = await client.post("/chat/completions", json=todo.pop())
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0


def bench_vllm(args: argparse.Namespace) -> None:
    from ricl.agent import GroundingAgent
    from ricl.resources import shipped
    from ricl.vlm.serve import VLLMServer
    from ricl_apps.evaluation.engines.local import query_for

    model = args.model or str(shipped("ricl/assets/vlm/phantom-qwen2vl"))
    with (
        tempfile.TemporaryDirectory() as tmp,
        VLLMServer(
            model, max_images=1, max_num_seqs=args.max_num_seqs, log=Path(tmp) / "vllm.log",
            # every request does its full work in both arms: no prefix or image cache hits
            extra_args=["--no-enable-prefix-caching", "--mm-processor-cache-gb", "0"],
        ) as server,
    ):
        server.wait()
        ds, base = phantom(Path(tmp), args.image_size)
        agent_cfg = {"backend": "openai", "strategy": "zero-shot", "k": 0, "codec": "qwen2vl",
                     "max_image_side": 112,
                     "backend_options": {"model": server.served_name, "base_url": server.base_url,
                                         "max_tokens": 48, "temperature": 0.0}}  # fmt: skip
        config = eval_config(ds, agent_cfg, {"name": "local"}, args.concurrency)
        agent = GroundingAgent(config.agent)
        todo = repeated(base, args.queries)
        payloads = [agent.backend.payload(agent.request(query_for(i, ds.images_root, "none"))[0])
                    for i in todo]  # fmt: skip
        asyncio.run(generator(server.base_url, payloads, args.concurrency))  # warm-up pass
        results: dict[str, list[float]] = {"generator": [], "ricl": []}
        for r in range(args.rounds):
            wall = asyncio.run(generator(server.base_url, payloads, args.concurrency))
            results["generator"].append(len(payloads) / wall)
            again = repeated(base, args.queries)
            again = [dataclasses.replace(i, instance_id=f"{i.instance_id}@{r}") for i in again]
            _, failed, wall = run_engine("local", config, agent, ds.images_root, again)
            if failed:
                raise SystemExit(f"{failed} ricl queries failed: see {server.log}")
            results["ricl"].append(len(again) / wall)
            print(f"  round {r + 1}: generator {results['generator'][-1]:.2f} q/s, "
                  f"ricl {results['ricl'][-1]:.2f} q/s", file=sys.stderr)  # fmt: skip
    gen, ricl = results["generator"], results["ricl"]
    print(f"\none CPU vLLM server (vllm-cpu, {Path(model).name}, --max-num-seqs "
          f"{args.max_num_seqs}), {args.queries} zero-shot queries per run ({args.image_size} px "
          f"phantom images sent at <= 112 px), concurrency {args.concurrency}, {args.rounds} "
          f"alternating rounds; {_cores()} cores shared by server and client\n")  # fmt: skip
    print("| round | load generator q/s | ricl eval q/s | ricl / generator |")
    print("|---|---|---|---|")
    for r, (g, e) in enumerate(zip(gen, ricl, strict=True), start=1):
        print(f"| {r} | {g:.2f} | {e:.2f} | {e / g:.3f} |")
    ratio = sum(ricl) / sum(gen)
    print(f"| all | {sum(gen) / len(gen):.2f} | {sum(ricl) / len(ricl):.2f} | {ratio:.3f} "
          f"({'met' if ratio >= 0.9 else 'MISSED'}: target >= 0.9) |")  # fmt: skip


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("replicas", help="fake replicas through the Ray engine")
    r.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4, 8])
    r.add_argument("--slots", type=int, default=4, help="requests one replica serves at once")
    r.add_argument("--service-s", type=float, default=1.0, help="seconds per request")
    r.add_argument("--actors-per-endpoint", type=int, default=2)
    r.add_argument("--seconds", type=float, default=40, help="about how long each run lasts")
    r.add_argument("--ray-cpus", type=int, default=16, help="logical CPUs for ray.init")
    v = sub.add_parser("vllm", help="ricl vs a load generator on one CPU vLLM server")
    v.add_argument("--model", default=None, help="default: the embedded grounding VLM")
    v.add_argument("--queries", type=int, default=240)
    v.add_argument("--concurrency", type=int, default=16)
    v.add_argument("--max-num-seqs", type=int, default=8)
    v.add_argument("--image-size", type=int, default=256)
    v.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    (bench_replicas if args.what == "replicas" else bench_vllm)(args)


if __name__ == "__main__":
    main()
