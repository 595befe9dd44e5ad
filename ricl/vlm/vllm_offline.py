"""``vllm``: in-process ``vllm.LLM`` chat, for offline batch runs on a GPU machine.

The same OpenAI-format messages as the ``openai`` backend (base64 data URLs) go through
``LLM.chat``, so the model sees the prompt a served model would. ``vllm`` is imported
only when the engine is first needed; where it is not installed a
:class:`VLMConfigError` says how to get it (``pip install vllm`` on GPU machines, the
separate CPU environment of ``scripts/setup_vllm_cpu.sh`` elsewhere).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ricl.vlm.base import Generation, VLMBackend, VLMRequest
from ricl.vlm.errors import VLMConfigError
from ricl.vlm.payload import to_openai_messages

__all__ = ["VLLMBackend"]


class VLLMBackend(VLMBackend):
    """``vllm.LLM(model, limit_mm_per_prompt={"image": max_images}, **engine_options)``.

    Args:
        model: a Hugging Face id or local directory.
        max_images: images per prompt the engine accepts (k exemplars + the query).
        temperature, max_tokens, seed: sampling.
        engine_options: more ``vllm.LLM`` keyword arguments (``dtype``, ``max_model_len``,
            ``gpu_memory_utilization``...). ``trust_remote_code`` stays False unless given.
        llm: an injected engine (anything with vLLM's ``chat`` signature).
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        max_images: int = 8,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
        engine_options: dict[str, Any] | None = None,
        llm: Any = None,
    ) -> None:
        if max_images < 1:
            raise VLMConfigError(f"max_images must be >= 1, got {max_images}")
        from ricl.vlm import resolve_model

        self.model = resolve_model(model)
        self.max_images = int(max_images)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.seed = seed
        self.engine_options = dict(engine_options or {})
        self._llm = llm

    @property
    def llm(self) -> Any:
        if self._llm is None:
            vllm = _import_vllm()
            options = {"trust_remote_code": False, **self.engine_options}
            self._llm = vllm.LLM(
                model=self.model, limit_mm_per_prompt={"image": self.max_images}, **options
            )
        return self._llm

    def sampling_params(self) -> Any:
        return _import_vllm().SamplingParams(
            temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed
        )

    def generate(self, request: VLMRequest) -> Generation:
        return self.generate_many([request])[0]

    def generate_many(self, requests: Sequence[VLMRequest]) -> list[Generation]:
        """One batched ``LLM.chat`` call; latency is the batch time split evenly."""
        if not requests:
            return []
        for r in requests:
            n = len(r.prompt.images)
            if n > self.max_images:
                raise VLMConfigError(
                    f"a prompt holds {n} images but the engine accepts {self.max_images}; "
                    "raise max_images (vLLM's limit_mm_per_prompt) or lower k"
                )
        conversations = [to_openai_messages(r.prompt.messages) for r in requests]
        t0 = time.perf_counter()
        outputs = self.llm.chat(conversations, self.sampling_params(), use_tqdm=False)
        each = (time.perf_counter() - t0) / len(requests)
        return [Generation(o.outputs[0].text, self.model, each, usage=_usage(o)) for o in outputs]

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "max_images": self.max_images,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "engine_options": self.engine_options,
        }


def _usage(output: Any) -> dict[str, Any]:
    """The OpenAI-style usage of one ``vllm.RequestOutput``: token counts where the output
    carries them, and ``finish_reason`` ("length" when the answer stopped at max_tokens,
    which the agent reports as truncated)."""
    completion = output.outputs[0]
    usage: dict[str, Any] = {"finish_reason": getattr(completion, "finish_reason", None)}
    prompt_ids = getattr(output, "prompt_token_ids", None)
    if prompt_ids is not None:
        usage["prompt_tokens"] = len(prompt_ids)
    token_ids = getattr(completion, "token_ids", None)
    if token_ids is not None:
        usage["completion_tokens"] = len(token_ids)
    return usage


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise VLMConfigError(
            "the 'vllm' backend needs vLLM in this environment: `pip install vllm` on a GPU "
            "machine; on CPU, serve the model from the separate environment made by "
            "scripts/setup_vllm_cpu.sh and use the 'openai' backend"
        ) from exc
    return vllm
