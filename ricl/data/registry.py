"""Datasets by name: ``padchest-gr``, ``ms-cxr`` and ``phantom`` (a PadChest-GR-format release)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ricl.data.dataset import GroundingDataset, ReaderOptions
from ricl.registry import Registry

__all__ = ["DATASETS", "load_dataset"]

DATASETS = Registry(
    "dataset",
    {
        "padchest-gr": "ricl.data.padchest_gr:load_padchest_gr",
        # the phantom release is written in the exact PadChest-GR format and read by the same reader
        "phantom": "ricl.data.padchest_gr:load_padchest_gr",
        "ms-cxr": "ricl.data.ms_cxr:load_ms_cxr",
    },
)


def load_dataset(
    name: str, root: str | Path, images: str | Path | None = None, **options: Any
) -> GroundingDataset:
    """Load a dataset by registry name, with the reader options every reader takes.

    ``options``: any of :class:`~ricl.data.dataset.ReaderOptions` (``keep_unboxed``,
    ``reference``, ``on_error``, ``read_image_sizes``), the same for every dataset.

    Raises:
        UnknownNameError: an unknown dataset name (with suggestions).
        ValueError: an unknown option (naming it and listing the known ones) or a bad value.
        DatasetFormatError: a malformed release (from the reader).
    """
    loader = DATASETS.get(name)
    opts = ReaderOptions.from_mapping(options, dataset=name)
    return loader(root, images, name=name, **opts.as_kwargs())
