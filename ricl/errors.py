"""Typed errors of ricl. Every message names the offending file/record and the fix."""

from __future__ import annotations


class RiclError(Exception):
    """Base class of every error ricl raises on purpose."""


class InvalidBoxError(RiclError, ValueError):
    """A box breaks the canonical frame's invariants (non-finite, outside [0, 1], inverted)."""


class ImageLoadError(RiclError, OSError):
    """An image file is missing, corrupt, truncated or of an unsupported kind.

    ``path`` is the file that failed.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetFormatError(RiclError, ValueError):
    """A dataset file breaks its format; the message names the file and record."""


class UnknownNameError(RiclError, KeyError):
    """A registry lookup failed; the message suggests close names."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else ""
