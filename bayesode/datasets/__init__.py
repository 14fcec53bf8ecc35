"""Data in: bundled datasets with cards (source, licence, checksum), a user's CSV, and the `Data` container."""

from . import njode_synthetic
from .data import Data, ModelData, as_data, check_times, make_data
from .events import EventSequences, load_events, make_event_sequences, read_events_csv
from .irregular import IrregularData, irregular_from_frame, make_irregular
from .registry import Dataset, data_dir, format_table, list_datasets, load, load_csv

__all__ = [
    "as_data", "check_times", "Data", "data_dir", "Dataset", "EventSequences", "format_table", "irregular_from_frame",
    "IrregularData", "list_datasets", "load", "load_csv", "load_events", "make_data", "make_event_sequences",
    "make_irregular", "ModelData", "njode_synthetic", "read_events_csv",
]
