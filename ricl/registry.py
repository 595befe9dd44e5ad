"""A small lazy registry: names map to ``"module:attribute"`` strings, imported on first use.

Datasets, encoders, index types and VLM backends are chosen by name through one of these,
so that ``import ricl`` stays light and a typo gets a suggestion instead of a KeyError.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any

from ricl.errors import UnknownNameError

__all__ = ["Registry"]


class Registry:
    """Name -> lazily imported object.

    >>> r = Registry("dataset", {"padchest-gr": "ricl.data.padchest_gr:load_padchest_gr"})
    >>> r.names()
    ['padchest-gr']
    """

    def __init__(self, kind: str, entries: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, str] = dict(entries or {})

    def register(self, name: str, target: str) -> None:
        """Add ``name`` -> ``"module:attribute"``; re-registering a name is an error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if ":" not in target:
            raise ValueError(f"target must look like 'package.module:attribute', got {target!r}")
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Any:
        """Import and return the object registered as ``name``.

        Raises UnknownNameError listing the known names and the closest matches.
        """
        try:
            target = self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}."
            ) from None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
