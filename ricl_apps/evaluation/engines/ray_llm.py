"""The ``ray`` engine with ``engine.llm``: Ray Data starts the vLLM replicas itself.

Three stages on one Ray Dataset:
1. :class:`PromptWorker` actors (the index loads once per actor) retrieve and render each
   query exactly as the agent does and emit the OpenAI-style chat ``messages`` (images as
   data URLs, :meth:`ricl.vlm.openai.OpenAIBackend.payload`, the body ``vllm serve`` would
   get) with the agent's sampling parameters, plus what parsing needs later (``pending``);
2. ``ray.data.llm``: a processor from ``vLLMEngineProcessorConfig`` and ``build_processor``
   (``build_llm_processor`` on Ray before 2.50), ``engine.llm.concurrency`` replicas of
   ``engine.llm.model_source``, with ``limit_mm_per_prompt`` set from ``agent.k``;
3. the driver parses each ``generated_text`` with the agent's codec (:func:`finish_text`,
   the same fields as :meth:`ricl.agent.GroundingAgent.finish`) and writes the row.

Requires GPU nodes with vLLM installed where the replicas run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ricl.types import Instance

__all__ = ["PromptWorker", "finish_text", "processor_config", "run_llm"]


class PromptWorker:
    """A Ray Data actor rendering prompts: input columns ``query_id``, ``query``; output
    adds ``messages`` and ``sampling_params`` (JSON) and ``pending`` (JSON: the answer frame,
    the exemplars, the prompt's messages with image placeholders, its hash and timings), or
    ``error`` for a query that failed to render (an unreadable image, a selector problem)."""

    def __init__(self, agent_config: dict[str, Any]) -> None:
        from ricl.agent import GroundingAgent
        from ricl.agent_config import AgentConfig
        from ricl.vlm.openai import OpenAIBackend
        from ricl_apps.evaluation.engines.ray_data import worker_agent_config

        cfg = worker_agent_config(AgentConfig.load(agent_config), None, 1)
        options = {k: v for k, v in cfg.backend_options.items()
                   if k in ("model", "temperature", "max_tokens", "seed", "image_format")}  # fmt: skip
        # never called: it only turns requests into the chat body vLLM's server would get
        self.payloads = OpenAIBackend(base_url="http://unused.invalid/v1",
                                      **{"model": "served", **options})  # fmt: skip
        self.agent = GroundingAgent(cfg, backend=self.payloads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        from ricl.agent import PER_QUERY_ERRORS
        from ricl.prompting.messages import codec_frame
        from ricl_apps.evaluation.engines.ray_data import _decode_query

        out: dict[str, list[str]] = {k: [] for k in
                                     ("query_id", "query", "messages", "sampling_params",
                                      "pending", "error")}  # fmt: skip
        for qid, text in zip(batch["query_id"], batch["query"], strict=True):
            query = _decode_query(str(text))
            # a query that cannot render still flows through (a one-token placeholder
            # prompt, its answer dropped), so the pipeline stays one streaming pass
            messages = json.dumps([{"role": "user", "content": "-"}])
            sampling, pending, error = json.dumps({"max_tokens": 1}), "{}", ""
            try:
                request, timings = self.agent.request(query)
            except PER_QUERY_ERRORS as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                body = self.payloads.payload(request)
                messages = json.dumps(body["messages"])
                sampling = json.dumps({k: body[k] for k in ("temperature", "max_tokens", "seed")
                                       if body.get(k) is not None})  # fmt: skip
                prompt = request.prompt
                pending = json.dumps({
                    "frame": list(codec_frame(self.agent.codec, prompt.query)),
                    "exemplars": [self.agent._summary(d) for d in prompt.demos],
                    "messages": [m.to_dict() for m in prompt.messages],
                    "prompt_hash": prompt.fingerprint,
                    "timings": timings,
                })  # fmt: skip
            for key, value in (("query_id", str(qid)), ("query", str(text)),
                               ("messages", messages), ("sampling_params", sampling),
                               ("pending", pending), ("error", error)):  # fmt: skip
                out[key].append(value)
        return out


def finish_text(agent: Any, query: Any, pending: dict[str, Any], text: str | None,
                finish_reason: str | None, model: str) -> dict[str, Any]:  # fmt: skip
    """The result mapping (:meth:`GroundingResult.to_dict`'s keys and meaning) of the
    generated ``text`` for ``query``, parsed with ``agent.codec`` in the frame the prompt
    was rendered in. ``finish_reason == "length"`` marks the answer truncated."""
    import time

    from ricl.agent import GroundingResult

    t0 = time.perf_counter()
    parsed = agent.codec.parse(text or "", image_size=tuple(pending["frame"]), phrase=query.phrase)
    timings = {**pending["timings"], "parse": (time.perf_counter() - t0) * 1e3}
    timings["total"] = sum(v for k, v in timings.items() if k != "model")
    result = GroundingResult(
        phrase=query.phrase, boxes=tuple(parsed.boxes), status=parsed.status, raw=parsed.raw,
        exemplars=tuple(pending["exemplars"]), prompt_hash=pending["prompt_hash"],
        timings=timings, n_repaired=parsed.n_repaired, n_dropped=parsed.n_dropped,
        error=parsed.error, query_id=query.query_id, model=model,
        truncated=finish_reason == "length",
    )  # fmt: skip
    body = result.to_dict()
    body["messages"] = pending["messages"]  # already in to_dict's form
    return body


def processor_config(config: Any, agent: Any) -> Any:
    """The ``vLLMEngineProcessorConfig`` of ``engine.llm``: ``limit_mm_per_prompt`` allows
    the k exemplar images and the query's (a user's ``engine_kwargs`` win)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    llm = config.engine.llm
    k = agent.config.k if agent.strategy.exemplar_images else 0
    engine_kwargs = {"limit_mm_per_prompt": {"image": k + 1}, **llm.engine_kwargs}
    fields = vLLMEngineProcessorConfig.model_fields
    extra: dict[str, Any] = {}
    if "prepare_multimodal_stage" in fields:  # Ray >= 2.50
        extra["prepare_multimodal_stage"] = {"enabled": True}
    elif "has_image" in fields:  # older Ray
        extra["has_image"] = True
    return vLLMEngineProcessorConfig(
        model_source=llm.model_source, engine_kwargs=engine_kwargs,
        concurrency=llm.concurrency, batch_size=llm.batch_size,
        accelerator_type=llm.accelerator_type, **extra,
    )  # fmt: skip


def _build_processor() -> Any:
    try:
        from ray.data.llm import build_processor
    except ImportError:  # Ray before build_processor
        from ray.data.llm import build_llm_processor as build_processor
    return build_processor


def run_llm(config: Any, agent: Any, images_root: Path, todo: Sequence[Instance],
            writer: Any) -> None:  # fmt: skip
    """Answer ``todo`` with vLLM replicas that Ray Data starts; rows go to ``writer`` as
    they come back. Queries that failed to render get their error row; the rest are
    parsed here (one streaming pass: nothing is rendered ahead of the engine)."""
    import math

    from ricl_apps.evaluation.engines.ray_data import _decode_query, init_ray, query_row

    ray = init_ray(config.engine)
    llm = config.engine.llm
    rows = [query_row(i, images_root, config.query_box) for i in todo]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / 8)))
    prompts = ds.map_batches(
        PromptWorker, batch_size=8,
        compute=ray.data.ActorPoolStrategy(size=config.engine.actors or 1),
        fn_constructor_kwargs={"agent_config": agent.config.model_dump(mode="json")},
        num_cpus=config.engine.num_cpus, batch_format="numpy",
    )  # fmt: skip
    sampling = dict(llm.sampling_params)

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        return {"messages": json.loads(row["messages"]),
                "sampling_params": {**json.loads(row["sampling_params"]), **sampling}}  # fmt: skip

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        return {"query_id": row["query_id"], "query": row["query"], "pending": row["pending"],
                "error": row["error"],
                "generated_text": row.get("generated_text") or "",
                "finish_reason": str(row.get("finish_reason") or "")}  # fmt: skip

    processor = _build_processor()(processor_config(config, agent), preprocess=preprocess,
                                   postprocess=postprocess)  # fmt: skip
    for row in processor(prompts).iter_rows():
        query = _decode_query(row["query"])
        if row["error"]:
            writer.add(row["query_id"], agent.error_result(query, row["error"]), None)
            continue
        body = finish_text(agent, query, json.loads(row["pending"]), row["generated_text"],
                           row["finish_reason"] or None, llm.model_source)  # fmt: skip
        writer.add(row["query_id"], body, None)
        if writer.stopped:
            break
