"""Exceptions of the data package."""
from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """No usable copy of a dataset was found and none could be downloaded.

    The message names every place that was tried and how to obtain the data.
    """


class ChecksumError(RuntimeError):
    """A downloaded file's checksum differs from the published one (the file is discarded)."""
