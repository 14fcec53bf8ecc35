"""Data in: bundled datasets with cards (source, licence, checksum), a user's CSV or DataFrame, and `Data`."""

from .data import Data, ModelData, as_data, check_times, make_data
from .registry import Dataset, data_dir, format_table, list_datasets, load, load_csv

__all__ = ["Data", "Dataset", "ModelData", "as_data", "check_times", "data_dir", "format_table", "list_datasets",
           "load", "load_csv", "make_data"]  # fmt: skip
