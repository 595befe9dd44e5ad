"""Any OpenAI-compatible chat server, the way vLLM is served.

    vllm serve MODEL --limit-mm-per-prompt '{"image": K+1}'

Retries are the openai client's own (``max_retries`` with exponential backoff): only
connection errors, timeouts, 408/409/429 and 5xx are retried, never other 4xx. After the
retries a :class:`VLMTransportError` / :class:`VLMServerError` is raised: the caller
decides (an evaluation run records the failure and stops; it never scores it as "no box").
A 400 about too many images raises :class:`TooManyImagesError` naming the server flag.

Responses may be cached on disk keyed by the sha256 of the request payload
(``cache_dir``); the cache is used only for greedy decoding (``temperature == 0``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from ricl.vlm.base import Generation, VLMBackend, VLMRequest
from ricl.vlm.errors import TooManyImagesError, VLMConfigError, VLMServerError, VLMTransportError
from ricl.vlm.payload import build_chat_payload, payload_hash

__all__ = ["OpenAIBackend"]

_TOO_MANY_IMAGES = re.compile(
    r"(at most|limit|exceed|too many).{0,80}image", re.IGNORECASE | re.DOTALL
)


class OpenAIBackend(VLMBackend):
    """Chat completions against ``base_url``.

    Args:
        model: the served model name; None asks the server (``GET /models``, first entry).
        base_url: e.g. ``http://127.0.0.1:8000/v1``. api_key: default ``$OPENAI_API_KEY``
            or ``EMPTY`` (vLLM without ``--api-key``).
        client / async_client: injected ``openai.OpenAI`` / ``openai.AsyncOpenAI`` (tests,
            custom transports); built from the settings when None.
        timeout_s, max_retries: per request; retries only on retryable failures.
        max_concurrency: in-flight requests of :meth:`agenerate` / :meth:`generate_many`.
        temperature, max_tokens, seed, extra_body: sampling (``extra_body`` for vLLM extras).
        image_format: ``png`` (lossless) or ``jpeg``.
        cache_dir: response cache folder (greedy decoding only), or None.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key: str | None = None,
        *,
        client: Any = None,
        async_client: Any = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        max_concurrency: int = 8,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
        extra_body: dict[str, Any] | None = None,
        image_format: str = "png",
        cache_dir: str | Path | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise VLMConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if temperature < 0:
            raise VLMConfigError(f"temperature must be >= 0, got {temperature}")
        self.base_url = base_url
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.max_concurrency = int(max_concurrency)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.seed = seed
        self.extra_body = dict(extra_body or {})
        self.image_format = image_format
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._client = client
        self._async_client = async_client
        self._async_injected = async_client is not None
        self._async_loop: Any = None
        self._model = model

    # ------------------------------------------------------------------ clients
    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
        return self._client

    def _aclient(self) -> Any:
        """The async client of the running loop (rebuilt when the loop changes)."""
        loop = asyncio.get_running_loop()
        if self._async_injected:
            return self._async_client
        if self._async_client is None or (self._async_loop not in (None, loop)):
            import openai

            self._async_client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
        self._async_loop = loop
        return self._async_client

    @property
    def model(self) -> str:
        """The model name; asked from the server once when not configured."""
        if self._model is None:
            try:
                models = self.client.models.list().data
            except Exception as exc:
                raise self._translate(exc) from exc
            if not models:
                raise VLMConfigError(f"{self.base_url}: the server lists no model; pass model=")
            self._model = str(models[0].id)
        return self._model

    # ------------------------------------------------------------------ payloads
    def payload(self, request: VLMRequest) -> dict[str, Any]:
        """The exact JSON body sent for ``request`` (pure given the images)."""
        from functools import partial

        from ricl.vlm.payload import image_data_url

        return build_chat_payload(
            self.model,
            request.prompt.messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            extra_body=self.extra_body,
            image_url=partial(image_data_url, fmt=self.image_format),
        )

    def _cache_path(self, payload: dict[str, Any]) -> Path | None:
        if self.cache_dir is None or self.temperature != 0:
            return None
        key = payload_hash(payload)
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, payload: dict[str, Any]) -> Generation | None:
        path = self._cache_path(payload)
        if path is None or not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return Generation(data["text"], data["model"], 0.0, cached=True, usage=data["usage"])

    def _store(self, payload: dict[str, Any], gen: Generation) -> None:
        path = self._cache_path(payload)
        if path is None:
            return
        from ricl.atomic import atomic_write_text

        atomic_write_text(
            path, json.dumps({"text": gen.text, "model": gen.model, "usage": gen.usage})
        )

    # ------------------------------------------------------------------ calls
    def generate(self, request: VLMRequest) -> Generation:
        payload = self.payload(request)
        hit = self._cached(payload)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        try:
            response = self.client.chat.completions.create(**payload)
        except Exception as exc:
            raise self._translate(exc) from exc
        gen = self._generation(response, time.perf_counter() - t0)
        self._store(payload, gen)
        return gen

    async def agenerate(self, request: VLMRequest) -> Generation:
        payload = await asyncio.to_thread(self.payload, request)  # image encoding off-loop
        hit = self._cached(payload)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        try:
            response = await self._aclient().chat.completions.create(**payload)
        except Exception as exc:
            raise self._translate(exc) from exc
        gen = self._generation(response, time.perf_counter() - t0)
        self._store(payload, gen)
        return gen

    def generate_many(self, requests: Any) -> list[Generation]:
        """Answer ``requests`` concurrently (at most ``max_concurrency`` in flight), in order.
        Raises the first transport/server error (the others are cancelled)."""
        requests = list(requests)
        if not requests:
            return []
        _ = self.model  # resolve once, before the concurrent calls

        async def run() -> list[Generation]:
            gate = asyncio.Semaphore(self.max_concurrency)

            async def one(r: VLMRequest) -> Generation:
                async with gate:
                    return await self.agenerate(r)

            try:
                return list(await asyncio.gather(*(one(r) for r in requests)))
            finally:
                await self._aclose()

        return asyncio.run(run())

    async def _aclose(self) -> None:
        if not self._async_injected and self._async_client is not None:
            await self._async_client.close()
            self._async_client = None
            self._async_loop = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self._model,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "extra_body": self.extra_body,
            "image_format": self.image_format,
            "max_retries": self.max_retries,
            "max_concurrency": self.max_concurrency,
        }

    # ------------------------------------------------------------------ helpers
    def _generation(self, response: Any, latency: float) -> Generation:
        choice = response.choices[0]
        text = choice.message.content or ""
        usage = response.usage.model_dump() if getattr(response, "usage", None) else {}
        usage["finish_reason"] = choice.finish_reason
        return Generation(text, str(response.model), latency, usage=usage)

    def _translate(self, exc: Exception) -> Exception:
        import openai

        where = self.base_url
        client = self._client if self._client is not None else self._async_client
        retries = getattr(client, "max_retries", self.max_retries)
        if isinstance(exc, openai.APIStatusError):
            body = _body_text(exc)
            status = exc.status_code
            if status == 400 and _TOO_MANY_IMAGES.search(body):
                return TooManyImagesError(
                    f"{where}: the server refuses this many images per prompt ({body.strip()}). "
                    "Start vLLM with --limit-mm-per-prompt '{\"image\": K+1}' (k exemplars + "
                    "the query), or lower k.",
                    status,
                    body,
                )
            retried = status in (408, 409, 429) or status >= 500
            tail = f" after {retries} retries" if retried else " (not retryable)"
            return VLMServerError(f"{where}: HTTP {status}{tail}: {body.strip()}", status, body)
        if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
            return VLMTransportError(
                f"{where}: cannot reach the server after {retries} retries ({exc}); is "
                "it running (vllm serve ...) and is base_url right?"
            )
        return exc


def _body_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or body.get("error") or body
        return msg if isinstance(msg, str) else json.dumps(msg)
    if body is not None:
        return str(body)
    response = getattr(exc, "response", None)
    return response.text if response is not None else str(exc)
