"""The index configuration and the manifest of an index directory (pydantic, strict).

Unknown keys are refused everywhere; the manifest is what :func:`ricl.retrieval.store.load_index`
validates before it reads anything else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "FORMAT",
    "Counts",
    "DatasetInfo",
    "EncoderInfo",
    "IndexConfig",
    "IndexFileInfo",
    "Manifest",
    "plain_file_name",
    "validation_summary",
]

FORMAT = 1
IndexType = Literal["flat", "hnsw", "ivf", "ivfpq", "hnsw-sq"]
_PARAMS: dict[str, tuple[str, ...]] = {
    "flat": (),
    "hnsw": ("M", "ef_construction", "ef_search"),
    "ivf": ("nlist", "nprobe"),
    "ivfpq": ("nlist", "m", "nbits", "nprobe"),
    "hnsw-sq": ("M", "ef_construction", "ef_search"),
}
_DEFAULTS: dict[str, Any] = {
    "M": 32, "ef_construction": 200, "ef_search": 128, "nprobe": 16, "nbits": 8,
}  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class IndexConfig(_Strict):
    """Which FAISS index to build. Unknown keys, and keys of another type, are refused.

    * ``flat``: exact inner product (default; fine up to ~100k exemplars).
    * ``hnsw``: ``M`` (graph degree, 32), ``ef_construction`` (200), ``ef_search`` (128).
    * ``ivf``: ``nlist`` (lists; None = ``4 * sqrt(n)``, at most ``n / 39``), ``nprobe`` (16);
      trained on the data being indexed.
    * ``ivfpq``: ``nlist`` (as ivf, and capped at ``n / 39``), ``m`` (sub-quantizers; must
      divide the dim; None = the largest divisor <= dim / 4), ``nbits`` (bits per code, 8;
      needs at least ``2**nbits`` vectors), ``nprobe`` (16). Lowercase ``m``; ``M`` is HNSW's.
    * ``hnsw-sq``: HNSW over 8-bit scalar-quantized vectors; ``M``, ``ef_construction``,
      ``ef_search`` as ``hnsw``.

    See :mod:`ricl.retrieval.indexes` for how each is built and sized.
    """

    type: IndexType = "flat"
    M: int | None = Field(None, ge=2)
    ef_construction: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("ef_construction", "efConstruction")
    )
    ef_search: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("ef_search", "efSearch")
    )
    nlist: int | None = Field(None, ge=1)
    m: int | None = Field(None, ge=1)
    nbits: int | None = Field(None, ge=1, le=16)
    nprobe: int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {
            {"efConstruction": "ef_construction", "efSearch": "ef_search"}.get(k, k): v
            for k, v in data.items()
        }
        kind = data.get("type", "flat")
        for key, value in data.items():
            owners = [t for t, ps in _PARAMS.items() if key in ps]
            if owners and kind not in owners and value is not None:
                also = f" (types with {key!r}: {', '.join(owners)})" if len(owners) > 1 else ""
                hint = ""
                if key == "M" and kind == "ivfpq":
                    hint = " (ivfpq's sub-quantizer count is lowercase 'm')"
                raise ValueError(
                    f"{key!r} is a parameter of index type {owners[0]!r}, not {kind!r}{also}{hint}"
                )
        for key in _PARAMS.get(kind, ()):
            if data.get(key) is None and key in _DEFAULTS:
                data[key] = _DEFAULTS[key]
        return data

    def params(self) -> dict[str, Any]:
        """The parameters of this type only, e.g. ``{"nlist": None, "nprobe": 16}``."""
        return {k: getattr(self, k) for k in _PARAMS[self.type]}


class EncoderInfo(_Strict):
    name: str
    fingerprint: str
    spec: str


class DatasetInfo(_Strict):
    """``root``/``images_root`` as given at build time (informational; exemplar image paths
    are relative to ``images_root``, which may live elsewhere on another machine)."""

    name: str
    fingerprint: str
    split: str
    root: str
    images_root: str | None
    include_normal: bool


class Counts(_Strict):
    exemplars: int
    regions: int
    findings: int
    normal_skipped: int


class IndexFileInfo(_Strict):
    """One FAISS file: the type and parameters actually used (``ivf`` / ``ivfpq`` /
    ``hnsw-sq`` on zero vectors fall back to ``flat``; ``nlist`` and ``m`` are resolved)."""

    file: str
    type: IndexType
    params: dict[str, Any]
    ntotal: int

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_file_name(value)


def validation_summary(exc: ValidationError) -> str:
    """A pydantic error on one line: ``field.path: message; ...``."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors()
    )


def plain_file_name(value: str) -> str:
    """``value`` if it is a bare file name inside its directory (no separator, not ``.``
    or ``..``, no NUL): names read from a manifest can never escape the index root.
    Raises ValueError otherwise."""
    if not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise ValueError(f"file {value!r} must be a plain file name inside the index directory")
    return value


class Manifest(_Strict):
    format: int = FORMAT
    ricl_version: str
    built_at: str
    encoder: EncoderInfo
    embed_dim: int
    metric: Literal["ip"] = "ip"
    counts: Counts
    dataset: DatasetInfo
    index: IndexConfig
    indexes: dict[Literal["global", "regions"], IndexFileInfo]
