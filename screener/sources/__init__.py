"""Where hosts come from: structure files and the shipped dataset (each returns ``Host`` objects)."""

from screener.sources.dataset import DATASET_DIR, DatasetBand, dataset_hosts, load_bands
from screener.sources.files import read_hosts

__all__ = ["DATASET_DIR", "DatasetBand", "dataset_hosts", "load_bands", "read_hosts"]
