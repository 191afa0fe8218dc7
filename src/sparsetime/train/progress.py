"""Per-epoch progress: a tqdm bar on a terminal, plain log lines otherwise."""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .logs import PACKAGE_LOGGER

log = logging.getLogger(__name__)


def wants_bar(mode: str) -> bool:
    """``bar``: always; ``auto``: when stderr is a terminal; ``log`` / ``none``: never."""
    if mode not in ("auto", "bar", "log", "none"):
        raise ValueError(f"progress mode {mode!r} is invalid; allowed: auto, bar, log, none")
    return mode == "bar" or (mode == "auto" and sys.stderr.isatty())


def _console_loggers() -> list[logging.Logger]:
    """The loggers whose console output must go through the bar: the package's, and the root logger
    only when it has a console handler of its own. (tqdm gives every logger it is handed a handler;
    a root logger without one would then print every package record a second time.)"""
    package, root = logging.getLogger(PACKAGE_LOGGER), logging.getLogger()
    to_console = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                  and getattr(h, "stream", None) in (sys.stdout, sys.stderr)]
    return [package, root] if to_console else [package]


class EpochProgress(contextlib.AbstractContextManager):
    """Progress of one epoch of ``steps`` steps; ``report`` is called every few steps with the
    running loss, ``advance`` after every step (cheap: no device sync)."""

    def __init__(self, mode: str, epoch: int, total_epochs: int, steps: int) -> None:
        self.mode, self.epoch, self.total_epochs, self.steps = mode, epoch, total_epochs, steps
        self._bar: tqdm | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> EpochProgress:
        if wants_bar(self.mode):
            self._stack.enter_context(logging_redirect_tqdm(_console_loggers()))
            self._bar = self._stack.enter_context(
                tqdm(total=self.steps, desc=f"epoch {self.epoch}/{self.total_epochs}", leave=False,
                     dynamic_ncols=True, file=sys.stderr))
        return self

    def advance(self) -> None:
        """One step done."""
        if self._bar is not None:
            self._bar.update(1)

    def report(self, step: int, loss: float) -> None:
        """Show the running loss after ``step`` steps of this epoch."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        elif self.mode != "none":
            log.info("epoch %d/%d step %d/%d loss %.4f", self.epoch, self.total_epochs, step, self.steps, loss)

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
