"""The index configuration and the manifest of an index directory (pydantic, strict).

Unknown keys are refused everywhere; the manifest is what :func:`ricl.retrieval.store.load_index`
validates before it reads anything else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "FORMAT",
    "Counts",
    "DatasetInfo",
    "EncoderInfo",
    "IndexConfig",
    "IndexFileInfo",
    "Manifest",
]

FORMAT = 1
_PARAMS = {"flat": (), "hnsw": ("M", "ef_construction", "ef_search"), "ivf": ("nlist", "nprobe")}
_DEFAULTS: dict[str, Any] = {"M": 32, "ef_construction": 200, "ef_search": 128, "nprobe": 16}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class IndexConfig(_Strict):
    """Which FAISS index to build. Unknown keys, and keys of another type, are refused.

    * ``flat``: exact inner product (default; fine up to ~100k exemplars).
    * ``hnsw``: ``M`` (graph degree, 32), ``ef_construction`` (200), ``ef_search`` (128).
    * ``ivf``: ``nlist`` (lists; None = ``4 * sqrt(n)``, at most ``n / 39``), ``nprobe`` (16);
      trained on the data being indexed.
    """

    type: Literal["flat", "hnsw", "ivf"] = "flat"
    M: int | None = Field(None, ge=2)
    ef_construction: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("ef_construction", "efConstruction")
    )
    ef_search: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("ef_search", "efSearch")
    )
    nlist: int | None = Field(None, ge=1)
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
            owner = next((t for t, ps in _PARAMS.items() if key in ps), None)
            if owner is not None and owner != kind and value is not None:
                raise ValueError(f"{key!r} is a parameter of index type {owner!r}, not {kind!r}")
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
    """One FAISS file: the type and parameters actually used (``ivf`` on too few vectors
    falls back to ``flat``, and ``nlist`` is resolved)."""

    file: str
    type: Literal["flat", "hnsw", "ivf"]
    params: dict[str, Any]
    ntotal: int


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
