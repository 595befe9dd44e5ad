"""The backend interface: a request (rendered prompt + codec) in, the model's text out.

Backends return text only; the agent parses it with the request's codec, so every
backend's answer goes through the same codec and a bad answer is a status, not an
exception. ``agenerate`` defaults to running ``generate`` in a worker thread; backends
with a native async client (``openai``) override it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ricl.boxes.codecs.base import BoxCodec
    from ricl.prompting.builder import Prompt

__all__ = ["Generation", "VLMBackend", "VLMRequest"]


@dataclass(frozen=True, slots=True)
class VLMRequest:
    """One query for a backend: the rendered prompt, the query phrase and the codec."""

    prompt: Prompt
    phrase: str
    codec: BoxCodec


@dataclass(frozen=True, slots=True)
class Generation:
    """The model's answer text. ``latency_s``: wall time of the call (0 for cache hits)."""

    text: str
    model: str
    latency_s: float = 0.0
    cached: bool = False
    usage: dict[str, Any] = field(default_factory=dict)


class VLMBackend(ABC):
    """A VLM behind one method. Subclasses set ``name`` and implement :meth:`generate`."""

    name: ClassVar[str]

    @abstractmethod
    def generate(self, request: VLMRequest) -> Generation:
        """Answer one request. Raises VLMError subclasses for transport/config problems."""

    async def agenerate(self, request: VLMRequest) -> Generation:
        """Async :meth:`generate` (default: in a worker thread)."""
        return await asyncio.to_thread(self.generate, request)

    def generate_many(self, requests: Sequence[VLMRequest]) -> list[Generation]:
        """Answer several requests, in order (default: one after another)."""
        return [self.generate(r) for r in requests]

    def settings(self) -> dict[str, Any]:
        """What a run should record about this backend (JSON-able)."""
        return {"backend": self.name}

    def close(self) -> None:
        """Release clients/models (default: nothing)."""
