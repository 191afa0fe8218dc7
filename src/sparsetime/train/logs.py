"""Logging set-up: the run's log file, and console output for the command line.

Library modules only call ``logging.getLogger(__name__)``; handlers are attached here, for the
duration of a block, by the trainer (the run's ``train.log``) and the CLI (stderr).
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE_LOGGER = "sparsetime"


@contextlib.contextmanager
def _attached(handler: logging.Handler, level: int) -> Iterator[logging.Handler]:
    """Attach ``handler`` at ``level`` to the package logger (lowering the logger's level if needed)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    handler.setLevel(level)
    old_level = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def log_to_file(path: str | Path, level: int = logging.INFO) -> contextlib.AbstractContextManager[logging.Handler]:
    """Append the package's records of ``level`` and above to ``path`` while the block runs."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return _attached(handler, level)


def console_logging(level: int = logging.INFO) -> contextlib.AbstractContextManager[logging.Handler]:
    """Send the package's records of ``level`` and above to stderr while the block runs (CLI only)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    return _attached(handler, level)
