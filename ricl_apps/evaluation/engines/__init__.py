"""Evaluation engines, chosen by name (``engine.name`` in an eval config, or
``ricl eval --engine NAME``) from a small lazy registry.

An engine answers a run's pending queries and hands every answer to the run's
:class:`~ricl_apps.evaluation.rows.RowWriter` as it finishes; the runner owns the run
directory, the resume logic and the scoring, so every engine gets the same semantics
(rows appended as they finish, ``--resume`` after a kill, every instance once per attempt).

- ``local``: this process, :meth:`ricl.agent.GroundingAgent.astream` with bounded concurrency.
- ``ray``: Ray Data actors that each load the index once, spread over the configured
  OpenAI-compatible endpoints (several ``vllm serve`` replicas), or with ``engine.llm`` set,
  over vLLM replicas that Ray Data starts itself (``ray.data.llm``). Needs ``ricl[ray]``.

Signature of an engine: ``run(config, agent, images_root, todo, writer) -> None`` where
``config`` is the :class:`~ricl_apps.evaluation.run_config.EvalConfig` with its agent
configuration resolved, ``agent`` the driver's :class:`~ricl.agent.GroundingAgent` (its
settings and error results), ``todo`` the pending instances. An engine stops starting new
queries once ``writer.stopped`` is true.
"""

from __future__ import annotations

from ricl.registry import Registry

__all__ = ["ENGINES"]

ENGINES = Registry(
    "evaluation engine",
    {
        "local": "ricl_apps.evaluation.engines.local:run",
        "ray": "ricl_apps.evaluation.engines.ray_data:run",
    },
)
