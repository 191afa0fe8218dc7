"""Fixtures of the runner tests."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from sparsetime.train import trainer as trainer_module


@pytest.fixture
def interrupt_at_epoch(monkeypatch) -> Callable[[int | None], None]:
    """``arm(e)``: from now on a run is interrupted (KeyboardInterrupt) when it would start epoch e
    (0-based), after the checkpoint of epoch e - 1; ``arm(None)`` lets runs train normally again."""
    original = trainer_module.Trainer._train_epoch

    def arm(epoch: int | None) -> None:
        def interrupt(self) -> None:
            if self.epoch == epoch:
                raise KeyboardInterrupt
            original(self)

        monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", original if epoch is None else interrupt)

    return arm
