"""Data in: bundled datasets with cards (source, licence, checksum), a user's CSV, and the `Data` container."""

from .bundled import Dataset, data_dir, format_table, list_datasets, load, load_csv
from .data import Data, ModelData, as_data, check_times, make_data
from .events import EventSequences, load_events, make_event_sequences, read_events_csv

__all__ = ["Data", "Dataset", "ModelData", "as_data", "check_times", "data_dir", "format_table", "list_datasets",
           "load", "load_csv", "make_data"]
__all__ += ["EventSequences", "load_events", "make_event_sequences", "read_events_csv"]
