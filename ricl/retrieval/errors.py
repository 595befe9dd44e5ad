"""Errors of the exemplar index and retriever (all :class:`ricl.errors.RiclError`)."""

from __future__ import annotations

from ricl.errors import RiclError

__all__ = [
    "IndexConfigError",
    "IndexFormatError",
    "IndexMismatchError",
    "IndexStoreError",
    "QueryError",
]


class IndexStoreError(RiclError):
    """An index directory is missing, incomplete or unreadable; the message names it."""


class IndexFormatError(IndexStoreError, ValueError):
    """A file of an index directory breaks the format (bad manifest, counts that disagree)."""


class IndexMismatchError(IndexStoreError):
    """The index was built with another encoder than the one in use (both are named)."""


class IndexConfigError(RiclError, ValueError):
    """An index type's parameters do not fit the data (e.g. ivfpq ``m`` not dividing the
    embedding dim, too few vectors to train); the message says which parameter to change."""


class QueryError(RiclError, ValueError):
    """A query does not fit the selector (e.g. ``location`` without a box)."""
