"""Errors of the VLM backends (all :class:`ricl.errors.RiclError`).

A bad model ANSWER is never an exception (the codec turns it into a status); these are
configuration and transport problems.
"""

from __future__ import annotations

from ricl.errors import RiclError

__all__ = [
    "TooManyImagesError",
    "VLMConfigError",
    "VLMError",
    "VLMServerError",
    "VLMTransportError",
]


class VLMError(RiclError):
    """Base class of backend errors."""


class VLMConfigError(VLMError, ValueError):
    """A backend is misconfigured (unknown option, missing model, library not installed)."""


class VLMTransportError(VLMError, ConnectionError):
    """The server could not be reached or timed out, after the bounded retries."""


class VLMServerError(VLMError):
    """The server answered with an error status that is not retryable (4xx), or kept
    failing (429/5xx) past the retries. ``status`` is the HTTP status, ``body`` its text."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class TooManyImagesError(VLMServerError):
    """The server refuses the number of images per prompt (vLLM's --limit-mm-per-prompt)."""
