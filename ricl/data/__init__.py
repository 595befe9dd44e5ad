"""Datasets: readers of the official release files, image loading, the phantom generator."""

from ricl.data.dataset import GroundingDataset
from ricl.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "GroundingDataset", "load_dataset"]
