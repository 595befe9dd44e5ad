"""The one dataset spec: which release, read how, and (for :class:`SplitSpec`) which instances.

Every configuration that names data (evaluation runs, experiment grids, encoder training and
its ablation, VLM training pools) holds a :class:`DatasetSpec` (or a subclass), and every
reader call of the apps goes through :meth:`DatasetSpec.open`, so a reader option means the
same thing in every command:

>>> spec = DatasetSpec(name="phantom", root="data/phantom")
>>> spec.reader_options()["keep_unboxed"]
False

In YAML a spec is a mapping under the config's dataset key::

    dataset: {name: padchest-gr, root: /data/PadChest-GR, split: test, keep_unboxed: false}

Unknown keys are rejected (pydantic ``extra="forbid"``); the reader options are those of
:class:`~ricl.data.dataset.ReaderOptions`, with the same defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ricl.data.dataset import OnError, ReaderOptions, Reference

if TYPE_CHECKING:
    from ricl.data.dataset import GroundingDataset
    from ricl.types import Instance

__all__ = ["DatasetSpec", "SplitSpec"]


class DatasetSpec(BaseModel):
    """A release and how to read it.

    ``name``: a registered dataset (``padchest-gr``, ``phantom``, ``ms-cxr``; see
    :data:`ricl.data.registry.DATASETS`). ``root``: the release folder (PadChest-GR: the
    folder holding ``grounded_reports_*.json`` and ``master_table.csv``; MS-CXR: the CSV).
    ``images``: the images folder when it is not the one the reader finds under ``root``.
    The remaining fields are the reader options (:class:`~ricl.data.dataset.ReaderOptions`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "phantom"
    root: str
    images: str | None = None
    keep_unboxed: bool = False
    reference: Reference = "primary"
    on_error: OnError = "raise"
    read_image_sizes: bool = True

    def reader_options(self, **overrides: Any) -> dict[str, Any]:
        """The reader options of this spec, with ``overrides`` (same names) applied.

        Raises ValueError naming an unknown option.
        """
        options = {name: getattr(self, name) for name in ReaderOptions.names()}
        return ReaderOptions.from_mapping({**options, **overrides}, dataset=self.name).as_kwargs()

    def open(self, **overrides: Any) -> GroundingDataset:
        """Read the release (``overrides``: reader options for this call only, e.g.
        ``read_image_sizes=False`` where the caller reads image headers itself).

        Raises UnknownNameError (unknown ``name``, with close names), ValueError (unknown
        or bad option) and DatasetFormatError (a malformed release, naming file and record).
        """
        from ricl.data.registry import load_dataset

        return load_dataset(self.name, self.root, self.images, **self.reader_options(**overrides))


class SplitSpec(DatasetSpec):
    """A :class:`DatasetSpec` plus the instances used: one ``split`` (the dataset's own split
    names or ``train``/``val``/``test``), its first ``limit`` instances (smoke runs)."""

    split: str = "test"
    limit: int | None = Field(None, ge=1)

    def instances(self, dataset: GroundingDataset | None = None) -> list[Instance]:
        """The instances of ``split`` (from ``dataset``, else :meth:`open`), cut to ``limit``.

        Raises DatasetFormatError when the split has no grounding instances (an empty run
        is a wrong split name or a wrong release, never a result).
        """
        from ricl.errors import DatasetFormatError

        ds = dataset if dataset is not None else self.open()
        chosen = ds.select(self.split)
        if not chosen:
            raise DatasetFormatError(
                f"{ds.root}: split {self.split!r} has no grounding instances "
                f"(splits here: {', '.join(sorted({i.split for i in ds.instances})) or 'none'})"
            )
        return chosen[: self.limit] if self.limit else chosen
