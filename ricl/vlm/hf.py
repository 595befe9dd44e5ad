"""``hf``: an in-process transformers image-text-to-text model (small models, tests, parity).

The model receives exactly what a vLLM server would: the request is first turned into the
OpenAI-format messages of the ``openai`` backend (images as base64 data URLs, the same
encoding), the images are decoded back from those URLs and converted to RGB (as vLLM
does), and the conversation goes through the model's own chat template. With greedy
decoding the text therefore matches the served model's for the same checkpoint (the
vLLM server test asserts this parity).

Loading: ``AutoModelForImageTextToText`` and ``AutoProcessor`` from any local directory or
hub id; ``trust_remote_code`` stays False unless asked. Qwen2-VL processors need
torchvision in transformers 5 (for their video processor); where it is missing, the
processor is assembled from its image processor and tokenizer instead
(:func:`ricl.vlm.tiny_qwen2vl.load_qwen2vl_processor`).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from typing import Any

from ricl.prompting.messages import ImageRef, Message
from ricl.vlm.base import Generation, VLMBackend, VLMRequest
from ricl.vlm.errors import VLMConfigError
from ricl.vlm.payload import chat_messages, image_data_url

__all__ = ["HFBackend", "decode_data_url", "messages_to_hf"]


def decode_data_url(url: str) -> Any:
    """``data:image/...;base64,...`` -> an RGB PIL image (what vLLM does with it)."""
    from PIL import Image

    header, _, data = url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise ValueError(f"not a base64 image data URL: {url[:40]}...")
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def messages_to_hf(
    messages: Sequence[Message], render: Any = None
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Prompt messages -> (chat-template messages with ``{"type": "image"}`` parts, images
    in order). ``render(ref)`` gives an image's pixels (default :meth:`ImageRef.render`;
    the backend passes the pixels as a server decodes them from their data URL). Turns
    without images keep string content. The trainer renders episodes with it too."""
    render = render or (lambda ref: ref.render())
    images: list[Any] = []

    def image_part(ref: ImageRef) -> dict[str, Any]:
        images.append(render(ref))
        return {"type": "image"}

    return chat_messages(messages, image_part), images


class HFBackend(VLMBackend):
    """A transformers VLM in this process.

    Args:
        model: a local directory, hub id, or embedded model name (``phantom-qwen2vl``).
        dtype: ``float32`` (CPU default), ``bfloat16``, ``float16``.
        device: ``cpu``, ``cuda``... (default: cuda when available, else cpu).
        max_tokens, temperature, seed: decoding (``temperature == 0``: greedy).
        skip_special_tokens: strip special tokens from the answer, as vLLM does by default.
        image_format: the data-URL encoding images go through (as the ``openai`` backend).
        trust_remote_code: off unless the user asks.
        model_obj / processor: injected, already loaded.
    """

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "float32",
        device: str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        skip_special_tokens: bool = True,
        image_format: str = "png",
        trust_remote_code: bool = False,
        model_obj: Any = None,
        processor: Any = None,
    ) -> None:
        if dtype not in {"float32", "bfloat16", "float16"}:
            raise VLMConfigError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        from ricl.vlm import resolve_model

        self.model_id = resolve_model(str(model))
        self.dtype = dtype
        self.device = device
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.skip_special_tokens = bool(skip_special_tokens)
        self.image_format = image_format
        self.trust_remote_code = bool(trust_remote_code)
        self._model = model_obj
        self._processor = processor

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        import torch
        from transformers import AutoModelForImageTextToText

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self._processor is None:
            self._processor = self._load_processor()
        if self._model is None:
            try:
                model = AutoModelForImageTextToText.from_pretrained(
                    self.model_id,
                    dtype=getattr(torch, self.dtype),
                    trust_remote_code=self.trust_remote_code,
                )
            except (OSError, ValueError) as exc:
                raise VLMConfigError(
                    f"hf backend: cannot load the model {self.model_id!r}: {exc}"
                ) from exc
            self._model = model.to(device).eval()
        self.device = device

    def _load_processor(self) -> Any:
        from transformers import AutoConfig, AutoProcessor

        try:
            return AutoProcessor.from_pretrained(
                self.model_id, trust_remote_code=self.trust_remote_code
            )
        except (ImportError, ValueError, OSError, TypeError) as exc:
            try:
                kind = AutoConfig.from_pretrained(
                    self.model_id, trust_remote_code=self.trust_remote_code
                ).model_type
            except (OSError, ValueError):
                kind = None
            if kind == "qwen2_vl":
                from ricl.vlm.tiny_qwen2vl import load_qwen2vl_processor

                return load_qwen2vl_processor(self.model_id)
            raise VLMConfigError(
                f"hf backend: cannot load the processor of {self.model_id!r}: {exc}"
            ) from exc

    @property
    def model(self) -> Any:
        """The model, loaded once on first use (concurrent first calls wait for that one
        load: :data:`ricl.loading.MODEL_LOAD_LOCK`)."""
        if self._model is None or self._processor is None:
            from ricl.loading import MODEL_LOAD_LOCK

            with MODEL_LOAD_LOCK:
                if self._model is None or self._processor is None:
                    self._load()
        return self._model

    @property
    def processor(self) -> Any:
        if self._processor is None:
            from ricl.loading import MODEL_LOAD_LOCK

            with MODEL_LOAD_LOCK:
                if self._processor is None:
                    self._processor = self._load_processor()
        return self._processor

    # ------------------------------------------------------------------ calls
    def _as_sent(self, ref: ImageRef) -> Any:
        """An image's pixels exactly as a server receives them: through the data URL the
        ``openai`` backend sends (same encoding), decoded to RGB."""
        return decode_data_url(image_data_url(ref, self.image_format))

    def inputs(self, request: VLMRequest) -> tuple[str, Any]:
        """(the chat-templated prompt text, the processor's tensors) for ``request``."""
        messages, images = messages_to_hf(request.prompt.messages, self._as_sent)
        text = self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        tensors = self.processor(text=[text], images=images or None, return_tensors="pt")
        return text, tensors

    def generate(self, request: VLMRequest) -> Generation:
        import torch

        model = self.model
        _, tensors = self.inputs(request)
        tensors = tensors.to(model.device)
        t0 = time.perf_counter()
        options: dict[str, Any] = {"max_new_tokens": self.max_tokens, "do_sample": False}
        if self.temperature > 0:
            torch.manual_seed(self.seed)
            options.update(do_sample=True, temperature=self.temperature)
        with torch.inference_mode():
            out = model.generate(**tensors, **options)
        new = out[0, tensors["input_ids"].shape[1] :]
        text = self.processor.tokenizer.decode(new, skip_special_tokens=self.skip_special_tokens)
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        # the OpenAI meaning: "length" when the answer was cut at max_tokens
        cut = len(new) >= self.max_tokens and int(new[-1]) not in eos
        usage = {"prompt_tokens": int(tensors["input_ids"].shape[1]),
                 "completion_tokens": len(new), "finish_reason": "length" if cut else "stop"}  # fmt: skip
        return Generation(text, self.model_id, time.perf_counter() - t0, usage=usage)

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model_id,
            "dtype": self.dtype,
            "device": self.device,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "skip_special_tokens": self.skip_special_tokens,
            "image_format": self.image_format,
        }
