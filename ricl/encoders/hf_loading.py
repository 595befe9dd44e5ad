"""Loading a transformers dual encoder: locating the model (local directory, hub cache or
hub), checking its family and building an :class:`~ricl.encoders.hf.HFEncoder` from it.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ricl.errors import RiclError

if TYPE_CHECKING:
    from ricl.encoders.hf import HFEncoder

__all__ = ["SUPPORTED_FAMILIES", "EncoderLoadError", "load_hf_encoder"]

SUPPORTED_FAMILIES = ("siglip", "siglip2", "clip")
_UNREACHABLE = (
    "is not a local directory and the Hugging Face hub is unreachable; "
    "download the model and pass its directory"
)


class EncoderLoadError(RiclError):
    """An encoder cannot be loaded: missing model, unsupported family, broken files."""


def load_hf_encoder(
    name_or_path: str | Path,
    *,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
    image_size: int | None = None,
    letterbox_inputs: bool = True,
    max_text_length: int | None = None,
) -> HFEncoder:
    """Load a SigLIP / SigLIP2 / CLIP model directory (or cached hub id) as an encoder.

    Args:
        device: None = ``"cpu"``; ``"auto"`` = cuda when available; or any torch device.
        dtype: weights dtype (torch dtype or its name, ``"auto"``); None = float32.
            Outputs are float32 whatever it is.
        trust_remote_code: passed to every ``from_pretrained``; off unless asked.
        image_size: input side in pixels; None = the model's own (SigLIP/CLIP position
            embeddings are interpolated when it differs). SigLIP2 rounds it down to a
            multiple of the patch size.
        letterbox_inputs: letterbox (True) or stretch (False) images into the square.
        max_text_length: None = the family's convention (SigLIP: pad to exactly 64
            tokens, as trained; CLIP: the model's ``max_position_embeddings``, padded to
            the longest text). Capped at ``max_position_embeddings``.

    Raises:
        EncoderLoadError: not a local directory and not loadable from the hub or its
            cache; an unsupported model type; a SigLIP without pooling head; broken files.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.image_processing_base import ImageProcessingMixin

    from ricl.encoders.hf import HFEncoder  # here: hf imports this module

    name = str(name_or_path)
    source, local = _locate(name)
    opts = {"trust_remote_code": trust_remote_code, "local_files_only": local}
    try:
        config = AutoConfig.from_pretrained(source, **opts)
    except (OSError, ValueError) as e:
        raise EncoderLoadError(f"{name!r}: cannot read its config: {e}") from e
    family = getattr(config, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise EncoderLoadError(
            f"{name!r} is a {family!r} model; the hf encoder supports the dual encoders "
            f"{SUPPORTED_FAMILIES} (SigLIP, NaFlex SigLIP2, CLIP)"
        )
    if family != "clip" and not getattr(config.vision_config, "vision_use_head", True):
        raise EncoderLoadError(f"{name!r} has no attention-pooling head to embed with")
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if device in (None, "auto"):
        device = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
    try:
        model = AutoModel.from_pretrained(
            source, config=config, dtype=dtype or torch.float32, **opts
        )
        tokenizer = AutoTokenizer.from_pretrained(source, **opts)
    except (OSError, ValueError) as e:
        raise EncoderLoadError(f"{name!r}: cannot load model/tokenizer: {e}") from e
    try:
        proc, _ = ImageProcessingMixin.get_image_processor_dict(source, local_files_only=local)
    except OSError:  # no preprocessor_config.json: the family's published defaults
        proc = {}
    model = model.to(torch.device(device)).eval()
    return HFEncoder(
        name,
        source,
        model,
        tokenizer,
        proc,
        image_size=image_size,
        letterbox_inputs=letterbox_inputs,
        max_text_length=max_text_length,
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint (instead of the hub client's minute of retries)."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _locate(name: str) -> tuple[str, bool]:
    """``name`` -> (what to pass to ``from_pretrained``, ``local_files_only``)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), True
    hub_like = not path.exists() and name.count("/") <= 1 and not name.startswith(("/", ".", "~"))
    if hub_like:
        from transformers.utils import cached_file

        try:  # a hub id already in the local cache loads without the network
            cached_file(name, "config.json", local_files_only=True)
            return name, True
        except OSError:
            if _hub_reachable():
                return name, False
        raise EncoderLoadError(f"{name!r} {_UNREACHABLE} (not in the local cache either)")
    raise EncoderLoadError(f"{name!r} {_UNREACHABLE} (no directory at {path.absolute()})")
