"""The ``ray`` engine: batch evaluation on Ray Data, over many OpenAI-compatible endpoints.

The pending queries become a Ray Dataset; ``map_batches`` runs them through a fixed pool of
actors (:class:`GroundingWorker`), each of which builds the agent once (the index and the
encoder load once per actor) and answers its batch concurrently. With ``engine.endpoints``
(the base URLs of several ``vllm serve`` replicas) every actor is bound to one endpoint,
``actors_per_endpoint`` actors per endpoint, so the replicas share the load and a slow one
simply pulls fewer batches. Without endpoints (``knn``, ``hf`` backends) ``engine.actors``
actors answer in process. With ``engine.llm``, Ray Data starts the vLLM replicas itself
(:mod:`ricl_apps.evaluation.engines.ray_llm`).

The driver (this process) writes the rows as the batches come back, through the run's
:class:`~ricl_apps.evaluation.rows.RowWriter`, so the run directory works exactly as with
the local engine: rows appended as they finish, ``--resume`` after a kill (what was in
flight is simply asked again), transport failures in a row stop the run.

Paths (the index, the images) must be readable where the actors run: on a cluster, put the
data on shared storage and give absolute paths (relative ones are made absolute here, from
the driver's working directory).

Install: ``pip install 'ricl[ray]'``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ricl.types import Instance

__all__ = ["GroundingWorker", "query_row", "run", "worker_agent_config"]

log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:  # pragma: no cover - depends on the install
        from ricl.config import ConfigError

        raise ConfigError(
            "engine.name: ray needs Ray Data: pip install 'ricl[ray]' (or 'ray[data]')"
        ) from exc
    return ray


def query_row(inst: Instance, images_root: Path, query_box: str) -> dict[str, str]:
    """One dataset row: the query's fields as JSON (so Arrow never reshapes them)."""
    from ricl_apps.evaluation.engines.local import query_for

    q = query_for(inst, Path(images_root).resolve(), query_box)
    fields = {
        "image": str(q.image),
        "phrase": q.phrase,
        "study_id": q.study_id,
        "patient_id": q.patient_id,
        "box": None if q.box is None else list(q.box.to_list()),
        "labels": list(q.labels),
        "query_id": q.query_id,
    }
    return {"query_id": str(q.query_id), "query": json.dumps(fields)}


def _decode_query(text: str) -> Any:
    from ricl.agent import GroundingQuery
    from ricl.types import Box

    f = json.loads(text)
    box = None if f["box"] is None else Box.from_list(f["box"])
    return GroundingQuery(
        f["image"], f["phrase"], study_id=f["study_id"], patient_id=f["patient_id"],
        box=box, labels=tuple(f["labels"]), query_id=f["query_id"],
    )  # fmt: skip


def worker_agent_config(agent_config: Any, endpoint: str | None, concurrency: int) -> Any:
    """The agent configuration an actor builds: paths made absolute (actors may run
    elsewhere), bound to ``endpoint`` when there is one, ``concurrency`` requests open."""
    options = dict(agent_config.backend_options)
    if endpoint is not None:
        options["base_url"] = endpoint
        options["max_concurrency"] = concurrency
    update: dict[str, Any] = {"backend_options": options}
    for key in ("index", "images_root"):
        value = getattr(agent_config, key, None)
        if value is not None and Path(value).exists():
            update[key] = str(Path(value).resolve())
    return agent_config.model_copy(update=update)


class _Counter:
    """Hands out 0, 1, 2, ...: which endpoint the next actor binds to."""

    def __init__(self) -> None:
        self.n = -1

    def next(self) -> int:
        self.n += 1
        return self.n


class GroundingWorker:
    """A Ray Data actor: one agent (one index load), answering a batch concurrently.

    Input batch columns: ``query_id``, ``query`` (:func:`query_row`). Output columns:
    ``query_id``, ``result`` (the JSON of :meth:`GroundingResult.to_dict`, error results
    too), ``transport`` (the transport failure's message, or ``""``) and ``endpoint``.
    An exception other than a per-query one (a configuration problem every query would
    hit) fails the batch, and so the run, as in the local engine.
    """

    def __init__(self, agent_config: dict[str, Any], endpoints: Sequence[str],
                 counter: Any, concurrency: int) -> None:  # fmt: skip
        import ray

        from ricl.agent import GroundingAgent
        from ricl.agent_config import AgentConfig

        endpoint = None
        if endpoints:
            endpoint = endpoints[ray.get(counter.next.remote()) % len(endpoints)]
        cfg = worker_agent_config(AgentConfig.load(agent_config), endpoint, concurrency)
        self.agent = GroundingAgent(cfg)
        self.endpoint = endpoint or ""
        self.concurrency = concurrency
        self.loop = asyncio.new_event_loop()  # one loop: the HTTP connections are reused

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        queries = [_decode_query(str(q)) for q in batch["query"]]
        answers = self.loop.run_until_complete(self._answer(queries))
        return {
            "query_id": [a[0] for a in answers],
            "result": [a[1] for a in answers],
            "transport": [a[2] for a in answers],
            "endpoint": [self.endpoint] * len(answers),
        }

    async def _answer(self, queries: list[Any]) -> list[tuple[str, str, str]]:
        from ricl.vlm.errors import VLMError

        out = []
        async for query, outcome in self.agent.astream(queries, max_concurrency=self.concurrency):
            transport = ""
            if isinstance(outcome, Exception):
                if isinstance(outcome, VLMError):
                    transport = f"{type(outcome).__name__}: {outcome}"
                outcome = self.agent.error_result(query, outcome)
            out.append((str(query.query_id), json.dumps(outcome.to_dict()), transport))
        return out


def init_ray(engine: Any) -> Any:
    """``ray.init`` once: the configured cluster (``engine.address``, else ``RAY_ADDRESS``),
    or a local one."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=engine.address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, ignore_reinit_error=True)  # fmt: skip
        ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def run(config: Any, agent: Any, images_root: Path, todo: Sequence[Instance], writer: Any) -> None:
    """Answer ``todo`` on Ray Data and hand each answer to ``writer`` as its batch returns.
    Stops reading (and so the pipeline) once ``writer.stopped``."""
    engine = config.engine
    if engine.llm is not None:
        from ricl_apps.evaluation.engines.ray_llm import run_llm

        return run_llm(config, agent, images_root, todo, writer)
    ray = init_ray(engine)
    rows = [query_row(i, images_root, config.query_box) for i in todo]
    n_actors = len(engine.endpoints) * engine.actors_per_endpoint or engine.actors or 1
    counter = ray.remote(num_cpus=0)(_Counter).remote()
    blocks = max(1, math.ceil(len(rows) / engine.batch_size))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    answered = ds.map_batches(
        GroundingWorker,
        batch_size=engine.batch_size,
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        fn_constructor_kwargs={
            "agent_config": agent.config.model_dump(mode="json"),  # resolved: max_tokens
            "endpoints": list(engine.endpoints),
            "counter": counter,
            "concurrency": engine.batch_size,
        },
        num_cpus=engine.num_cpus,
        batch_format="numpy",
    )
    for row in answered.iter_rows():
        writer.add(str(row["query_id"]), json.loads(row["result"]), str(row["transport"]) or None)
        if writer.stopped:
            break
