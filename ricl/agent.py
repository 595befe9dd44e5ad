"""The grounding agent: image + phrase -> exemplars -> prompt -> VLM -> canonical boxes.

    agent = GroundingAgent(AgentConfig(index="indexes/phantom", backend="openai",
                                       backend_options={"base_url": "http://127.0.0.1:8000/v1"}))
    result = agent.ground("query.png", "small nodule in the right upper lobe")
    result.boxes        # canonical Box tuple (normalized, original image)
    result.status       # ok | empty | parse_error
    result.exemplars    # what the model was shown (ids, scores, the demonstrated boxes)
    result.messages     # the rendered prompt, images as references
    result.timings      # ms per step: retrieve, prompt, generate, parse, total

A bad model answer is data (``status``), never an exception. Configuration problems
raise :class:`AgentConfigError` / ``UnknownNameError``; transport problems raise
:class:`ricl.vlm.errors.VLMError` (or, with ``raise_errors=False`` in
:meth:`GroundingAgent.ground_many`, come back as ``status="error"`` results).
Everything is injectable (``retriever``, ``backend``, ``codec``, ``strategy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ricl.agent_config import AgentConfig, AgentConfigError
from ricl.agent_types import GroundingQuery, GroundingResult, as_query
from ricl.errors import ImageLoadError, RiclError
from ricl.prompting.messages import codec_frame
from ricl.retrieval.errors import QueryError
from ricl.vlm.errors import VLMError

# what fails one query and not the others: :meth:`GroundingAgent.astream` yields these
PER_QUERY_ERRORS: tuple[type[Exception], ...] = (ImageLoadError, QueryError, VLMError)

if TYPE_CHECKING:
    from ricl.boxes.codecs.base import BoxCodec
    from ricl.prompting.builder import Prompt
    from ricl.prompting.strategies import Strategy
    from ricl.retrieval.retriever import Retriever
    from ricl.two_pass import FirstPass
    from ricl.vlm.base import Generation, VLMBackend, VLMRequest

__all__ = [
    "PER_QUERY_ERRORS",
    "AgentConfig",
    "GroundingAgent",
    "GroundingQuery",
    "GroundingResult",
    "as_query",
]


class GroundingAgent:
    """Retrieval-augmented in-context grounding (see the module docstring).

    Args:
        config: an :class:`AgentConfig`, a mapping, or None for the defaults.
        retriever / backend / codec / strategy: injected parts; built from ``config``
            when None (the retriever only when the config names an index).
    """

    def __init__(
        self,
        config: AgentConfig | dict[str, Any] | None = None,
        *,
        retriever: Retriever | None = None,
        backend: VLMBackend | None = None,
        codec: BoxCodec | None = None,
        strategy: Strategy | None = None,
    ) -> None:
        from ricl.boxes.codecs import get_codec
        from ricl.prompting.strategies import load_strategy
        from ricl.vlm import create_backend

        if config is None:
            config = AgentConfig(strategy="zero-shot", k=0)
        self.config = config if isinstance(config, AgentConfig) else AgentConfig.load(config)
        cfg = self.config
        self.codec = codec or get_codec(cfg.codec, **cfg.codec_options)
        base = strategy or load_strategy(cfg.strategy)
        self.strategy = base.with_options(cfg.strategy_options)
        if backend is None and cfg.backend_options.get("max_tokens") == "auto":
            raise AgentConfigError(
                "backend_options.max_tokens: 'auto' is resolved by `ricl eval` from the split's "
                "largest gold box count; here pass a number, e.g. "
                "ricl.vlm.budget.answer_token_budget(codec, n_boxes)"
            )
        self.backend = backend or create_backend(cfg.backend, **cfg.backend_options)
        if retriever is None and cfg.index is not None and not self.strategy.zero_shot:
            from ricl.retrieval.retriever import Retriever

            retriever = Retriever(
                cfg.index,
                encoder=cfg.encoder,
                allow_same_patient=cfg.allow_same_patient,
                seed=cfg.seed,
            )
        self.retriever = retriever
        self.first_pass: FirstPass | None = None
        if cfg.first_pass is not None:
            from ricl.two_pass import FirstPass

            self.first_pass = FirstPass(self)

    @classmethod
    def from_yaml(
        cls, path: str, overrides: list[str] | None = None, **parts: Any
    ) -> GroundingAgent:
        return cls(AgentConfig.from_yaml(path, overrides), **parts)

    # ------------------------------------------------------------------ steps
    def prepare(self, query: GroundingQuery) -> tuple[Prompt, dict[str, float]]:
        """Retrieve and render (no model call). Returns the prompt and step timings (ms)."""
        from ricl.prompting.builder import build_prompt, exemplar_image, query_image
        from ricl.retrieval.retriever import Query

        t0 = time.perf_counter()
        k = self.config.k if query.k is None else query.k
        pairs: list[tuple[Any, Any]] = []
        if k > 0 and not self.strategy.zero_shot:
            if self.retriever is None:
                from ricl.agent_config import AgentConfigError

                raise AgentConfigError(
                    f"strategy {self.strategy.name!r} with k={k} needs a retriever (index:)"
                )
            q = Query(
                image=query.image,
                embedding=query.embedding,
                box=query.box,
                phrase=query.phrase,
                study_id=query.study_id,
                patient_id=query.patient_id,
                labels=tuple(query.labels),
            )
            selector, options = self.config.selector, self.config.selector_options
            if query.first_pass is not None and query.box is None:  # no provisional box
                selector, options = self.config.first_pass.fallback_selector, {}  # type: ignore[union-attr]
            found = self.retriever.retrieve(q, k=k, selector=selector, options=options or None)
            for e in found:
                ref = None
                if self.strategy.exemplar_images:
                    path = self.retriever.image_file(e, self.config.images_root)
                    ref = exemplar_image(
                        e, path, codec=self.codec, max_side=self.config.max_image_side
                    )
                pairs.append((e, ref))
        t1 = time.perf_counter()
        qref = query_image(query.image, codec=self.codec, max_side=self.config.max_image_side)
        prompt = build_prompt(self.strategy, self.codec, query.phrase, qref, pairs)
        t2 = time.perf_counter()
        return prompt, {"retrieve": (t1 - t0) * 1e3, "prompt": (t2 - t1) * 1e3}

    def refine(self, query: GroundingQuery) -> GroundingQuery:
        """``query`` after the first pass of a two-pass agent (blocking; :mod:`ricl.two_pass`),
        else ``query`` itself."""
        if self.first_pass is None:
            return query
        return self.first_pass.run(query)

    def request(self, query: GroundingQuery) -> tuple[VLMRequest, dict[str, float]]:
        """The backend request for ``query`` (what :meth:`ground` sends). A two-pass agent
        expects the query after :meth:`refine` (else the second pass runs without a box)."""
        from ricl.vlm.base import VLMRequest

        prompt, timings = self.prepare(query)
        return VLMRequest(prompt, query.phrase, self.codec), timings

    def finish(
        self,
        query: GroundingQuery,
        request: VLMRequest,
        generation: Generation | None,
        timings: dict[str, float],
        error: str | None = None,
    ) -> GroundingResult:
        """Parse the answer into a result (``error`` set: a status ``error`` result)."""
        prompt = request.prompt
        t0 = time.perf_counter()
        if generation is None:
            boxes, status, raw, rep, drop, model = (), "error", "", 0, 0, ""
        else:
            parsed = self.codec.parse(
                generation.text,
                image_size=codec_frame(self.codec, prompt.query),
                phrase=query.phrase,
            )
            boxes, status, raw = parsed.boxes, parsed.status, parsed.raw
            rep, drop, model = parsed.n_repaired, parsed.n_dropped, generation.model
            error = parsed.error
        timings = {**timings, "parse": (time.perf_counter() - t0) * 1e3}
        if query.first_pass is not None:
            timings["first_pass"] = float(query.first_pass["timings"].get("total", 0.0))
        timings["total"] = sum(v for k, v in timings.items() if k != "model")
        return GroundingResult(
            phrase=query.phrase,
            boxes=tuple(boxes),
            status=status,  # type: ignore[arg-type]
            raw=raw,
            exemplars=tuple(self._summary(d) for d in prompt.demos),
            messages=prompt.messages,
            prompt_hash=prompt.fingerprint,
            timings=timings,
            n_repaired=rep,
            n_dropped=drop,
            error=error,
            query_id=query.query_id,
            model=model,
            truncated=generation is not None and generation.usage.get("finish_reason") == "length",
            first_pass=query.first_pass,
        )

    # ------------------------------------------------------------------ API
    def ground(
        self, image: Any, phrase: str, k: int | None = None, **query: Any
    ) -> GroundingResult:
        """Ground ``phrase`` on ``image`` (a path or in-memory image). ``query`` keywords are
        :class:`GroundingQuery` fields (study_id, patient_id, box, labels, query_id).

        Raises VLMError (transport/server), QueryError (retrieval), PromptTemplateError.
        """
        q = self.refine(GroundingQuery(image, phrase, k, **query))
        request, timings = self.request(q)
        t0 = time.perf_counter()
        generation = self.backend.generate(request)
        timings["generate"] = (time.perf_counter() - t0) * 1e3
        return self.finish(q, request, generation, timings)

    async def aground(
        self, image: Any, phrase: str, k: int | None = None, **query: Any
    ) -> GroundingResult:
        """Async :meth:`ground` (retrieval and rendering in a worker thread)."""
        return (await self.aground_many([GroundingQuery(image, phrase, k, **query)]))[0]

    def ground_many(
        self, queries: Iterable[GroundingQuery | dict[str, Any]], *, raise_errors: bool = True
    ) -> list[GroundingResult]:
        """Ground several queries, in order; the backend batches or runs them concurrently
        (``openai``: up to ``max_concurrency`` in flight). With ``raise_errors=False`` a
        transport failure makes every query of the batch a ``status="error"`` result that
        keeps the message (an evaluation run records and retries them)."""
        qs = [self.refine(as_query(q)) for q in queries]
        prepared = [self.request(q) for q in qs]
        t0 = time.perf_counter()
        try:
            gens: Sequence[Generation | None] = self.backend.generate_many([r for r, _ in prepared])
            error = None
        except VLMError as exc:
            if raise_errors:
                raise
            gens, error = [None] * len(qs), str(exc)
        per_query = (time.perf_counter() - t0) * 1e3 / max(1, len(qs))
        return [
            self.finish(q, r, g, {**t, "generate": per_query}, error)
            for q, (r, t), g in zip(qs, prepared, gens, strict=True)
        ]

    async def aground_many(
        self,
        queries: Iterable[GroundingQuery | dict[str, Any]],
        *,
        max_concurrency: int = 8,
        raise_errors: bool = True,
    ) -> list[GroundingResult]:
        """Async :meth:`ground_many` over :meth:`astream`: at most ``max_concurrency``
        queries in flight, results in input order. A per-query failure (unreadable image,
        a query the selector cannot serve, a transport error) raises, or with
        ``raise_errors=False`` becomes a ``status="error"`` result that keeps the message."""
        qs = [as_query(q) for q in queries]
        position = {id(q): i for i, q in enumerate(qs)}
        out: list[GroundingResult | None] = [None] * len(qs)
        stream = self.astream(qs, max_concurrency=max_concurrency)
        async with contextlib.aclosing(stream):
            async for q, outcome in stream:
                if isinstance(outcome, Exception):
                    if raise_errors:
                        raise outcome
                    outcome = self.error_result(q, outcome)
                out[position[id(q)]] = outcome
        return [r for r in out if r is not None]

    async def astream(
        self,
        queries: Iterable[GroundingQuery | dict[str, Any]],
        *,
        max_concurrency: int = 8,
        stop: Callable[[], bool] | None = None,
    ) -> AsyncIterator[tuple[GroundingQuery, GroundingResult | Exception]]:
        """Yield ``(query, result)`` for each query as it finishes (not in input order).

        At most ``max_concurrency`` queries are in flight; ``queries`` is read lazily, one
        query per free slot. ``stop()`` is asked before each new query starts: once it is
        true no more start, and those in flight still come back. A per-query failure is
        yielded in place of the result: ``ImageLoadError`` / ``QueryError`` (from
        retrieving or rendering) and ``VLMError`` (from the backend). Any other exception
        (a configuration problem every query would hit) propagates and cancels the rest.
        Closing the iterator early cancels the queries in flight.
        """
        gate = max(1, max_concurrency)
        pending: dict[asyncio.Task[Any], GroundingQuery] = {}
        source = iter(queries)

        def refill() -> None:
            while len(pending) < gate and not (stop is not None and stop()):
                q = next(source, None)
                if q is None:
                    return
                q = as_query(q)
                pending[asyncio.ensure_future(self.answer(q))] = q

        try:
            refill()
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    q = pending.pop(task)
                    exc = task.exception()
                    if exc is not None and not isinstance(exc, PER_QUERY_ERRORS):
                        raise exc
                    yield q, exc if exc is not None else task.result()  # type: ignore[misc]
                refill()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def answer(self, q: GroundingQuery) -> GroundingResult:
        """One query, end to end (the first pass too, for a two-pass agent); raises what
        :meth:`astream` yields as per-query errors."""
        if self.first_pass is not None:
            q = await self.first_pass.arun(q)
        request, timings = await asyncio.to_thread(self.request, q)
        t0 = time.perf_counter()
        generation = await self.backend.agenerate(request)
        timings["generate"] = (time.perf_counter() - t0) * 1e3
        return self.finish(q, request, generation, timings)

    def error_result(self, query: GroundingQuery, error: Exception | str) -> GroundingResult:
        """A ``status="error"`` result for ``query`` keeping the failure's message
        (``"ExcType: message"`` for an exception)."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return GroundingResult(
            phrase=query.phrase, boxes=(), status="error", raw="", error=message,
            query_id=query.query_id,
        )  # fmt: skip

    def _summary(self, demo: Any) -> dict[str, Any]:
        """What a result records about one demonstration (JSON-able)."""
        e = demo.exemplar
        image_file = None
        if self.retriever is not None:
            try:
                image_file = str(self.retriever.image_file(e, self.config.images_root))
            except RiclError:  # no images folder known: the id still names the exemplar
                image_file = None
        return {
            "exemplar_id": e.exemplar_id,
            "study_id": e.study_id,
            "image_id": e.image_id,
            "image_file": image_file,
            "score": e.score,
            "phrase": demo.finding.phrase,
            "boxes": [b.to_list() for b in demo.finding.boxes],
            "similarity": demo.similarity,
        }

    def settings(self) -> dict[str, Any]:
        """What a run records: the config, backend, strategy version and retriever."""
        return {
            "config": self.config.model_dump(),
            "strategy": {"name": self.strategy.name, "version": self.strategy.version},
            "codec": self.codec.name,
            "backend": self.backend.settings(),
            "retriever": self.retriever.settings() if self.retriever is not None else None,
        }
