"""Job submission and job data: dataset sources and their building, the content-addressed blob store, and the
desk that submits a client's job, announces its data and fetches any job's blobs from peers (:class:`JobDesk`), and
the collector that removes job data no live job needs (:class:`BlobCollector`), and the check that a blob is a
job's accepted artifact (:func:`accepted_artifact`)."""

from bootstrap.jobs.artifacts import ArtifactRefused, accepted_artifact
from bootstrap.jobs.blobs import BlobStore, SweepReport
from bootstrap.jobs.collect import BlobCollector, live_digests
from bootstrap.jobs.desk import JobDesk
from bootstrap.jobs.sources import (
    UPLOAD_FORMATS,
    CsvSource,
    DatasetSource,
    DigestSource,
    InlineSource,
    SyntheticSource,
    build_dataset,
    dataset_from_upload,
    default_dataset,
    upload_format,
)

__all__ = [
    "UPLOAD_FORMATS",
    "ArtifactRefused",
    "BlobCollector",
    "BlobStore",
    "CsvSource",
    "DatasetSource",
    "DigestSource",
    "InlineSource",
    "JobDesk",
    "SweepReport",
    "SyntheticSource",
    "accepted_artifact",
    "build_dataset",
    "dataset_from_upload",
    "default_dataset",
    "live_digests",
    "upload_format",
]
