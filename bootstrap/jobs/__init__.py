"""Job submission and job data: dataset sources and their building, the content-addressed blob store, and the
desk that submits a client's job, announces its data and fetches any job's blobs from peers (:class:`JobDesk`)."""

from bootstrap.jobs.blobs import BlobStore
from bootstrap.jobs.desk import JobDesk
from bootstrap.jobs.sources import (
    CsvSource,
    DatasetSource,
    DigestSource,
    InlineSource,
    SyntheticSource,
    build_dataset,
    default_dataset,
)

__all__ = [
    "BlobStore", "CsvSource", "DatasetSource", "DigestSource", "InlineSource", "JobDesk", "SyntheticSource",
    "build_dataset", "default_dataset"
]
