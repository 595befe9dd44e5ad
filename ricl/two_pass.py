"""Two-pass RICL: a first answer's box conditions the retrieval of the second pass.

Image similarity retrieves pictures that look alike; the exemplars that help most show
the same finding in the same place (the location oracle, which reads the gold box, is
the upper bound). Two-pass RICL gets a place without reading the answer:

1. a first answer: kNN box transfer from ``first_pass.k`` exemplars (no model call), or
   the agent's own model (zero-shot or with exemplars);
2. the hull of its boxes becomes the query's box, and the second pass retrieves with a
   selector that reads the box (``location``: the region index; ``fused``: the region
   similarity fused with the phrase, :mod:`ricl.retrieval.fusion`) and answers.

The first answer's exemplars, boxes, raw text and timings are kept in the query
(``GroundingQuery.first_pass``) and so in the result, ``predictions.jsonl`` and the
report. Configured by :class:`ricl.agent_config.FirstPassConfig`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ricl.boxes.geometry import hull  # re-exported: the first answer's hull

if TYPE_CHECKING:
    from ricl.agent import GroundingAgent
    from ricl.agent_types import GroundingQuery, GroundingResult

__all__ = ["FirstPass", "hull"]


class FirstPass:
    """The first pass of a two-pass agent: a sub-agent sharing the agent's retriever,
    codec and (for ``backend: agent``) its backend."""

    def __init__(self, agent: GroundingAgent) -> None:
        from ricl.agent import GroundingAgent
        from ricl.prompting.strategies import load_strategy
        from ricl.vlm.knn import KNNBackend

        cfg = agent.config
        fp = cfg.first_pass
        if fp is None:
            raise ValueError("FirstPass needs config.first_pass")
        self.config = fp
        self.second_selector = cfg.selector
        zero_shot = fp.k == 0
        sub = cfg.model_copy(
            update={
                "first_pass": None,
                "selector": fp.selector,
                "selector_options": fp.selector_options,
                "k": fp.k,
                "strategy": "zero-shot" if zero_shot else cfg.strategy,
                "backend": "knn" if fp.backend == "knn" else cfg.backend,
            }
        )
        self.agent = GroundingAgent(
            sub,
            retriever=agent.retriever,
            backend=KNNBackend() if fp.backend == "knn" else agent.backend,
            codec=agent.codec,
            strategy=load_strategy("zero-shot") if zero_shot else agent.strategy,
        )

    def needed(self, query: GroundingQuery) -> bool:
        """Whether ``query`` still needs its first pass (not done, and no box given)."""
        return query.first_pass is None and query.box is None

    def run(self, query: GroundingQuery) -> GroundingQuery:
        """``query`` with its first answer (blocking). VLMError / QueryError propagate."""
        if not self.needed(query):
            return query
        return self._with(query, self.agent.ground_many([self._sub(query)])[0])

    async def arun(self, query: GroundingQuery) -> GroundingQuery:
        """Async :meth:`run` (the model call is awaited, retrieval in a worker thread)."""
        if not self.needed(query):
            return query
        return self._with(query, await self.agent.answer(self._sub(query)))

    @staticmethod
    def _sub(query: GroundingQuery) -> GroundingQuery:
        return dataclasses.replace(query, k=None)  # the first pass's own k

    def _with(self, query: GroundingQuery, first: GroundingResult) -> GroundingQuery:
        box = hull(first.boxes)
        trace: dict[str, Any] = {
            "backend": self.config.backend,
            "selector": self.config.selector,
            "k": self.config.k,
            "status": first.status,
            "boxes": [b.to_list() for b in first.boxes],
            "box": None if box is None else box.to_list(),
            "raw": first.raw,
            "exemplars": list(first.exemplars),
            "second_selector": self.second_selector if box else self.config.fallback_selector,
            "timings": {k: round(v, 3) for k, v in first.timings.items()},
        }
        return dataclasses.replace(query, box=box, first_pass=trace)
