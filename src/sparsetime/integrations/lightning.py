"""Dynamic sparse training inside Lightning's ``Trainer``: :class:`DynamicSparsityCallback`.

``on_fit_start`` builds a :class:`~sparsetime.core.sparsifier.DynamicSparsity` over the
LightningModule and its one optimizer; ``on_train_batch_end`` steps it after every batch that
ended in an optimizer step (``accumulate_grad_batches`` counts once, like ``trainer.global_step``)
and logs ``sparsity/density`` and ``sparsity/itop_rate`` (Rs) to the Trainer's loggers;
``on_save_checkpoint`` / ``on_load_checkpoint`` keep the sparsifier state in the checkpoint, so
``fit(ckpt_path=...)`` continues the same topology, exploration record and generator state.

Needs ``pip install 'sparsetime[lightning]'``. Only masked execution: Lightning restores
checkpoints into the module's own layers, which sparse execution would replace.
"""
from __future__ import annotations

import math
from typing import Any

from sparsetime.core.sparsifier import DynamicSparsity
from sparsetime.core.state import masks_from_state

from ._require import require

pl = require("lightning.pytorch", "lightning", "sparsetime.integrations.lightning")

CHECKPOINT_KEY = "sparsetime_sparsifier"


class DynamicSparsityCallback(pl.Callback):
    """Drive ``DynamicSparsity(pl_module, optimizer, **options)`` from a Lightning ``Trainer``.

    ``options`` are DynamicSparsity's keywords (``density``, ``growth``, ``update_interval``, ...);
    ``total_steps`` defaults to ``trainer.estimated_stepping_batches``. The module must configure
    exactly one optimizer. ``log`` (default True) logs density and Rs every optimizer step.
    """

    def __init__(self, log: bool = True, **options: Any) -> None:
        if options.get("execution", "masked") != "masked":
            raise ValueError(f"execution={options['execution']!r} is not supported with Lightning (checkpoints "
                             "restore the module's own layers); allowed: 'masked'")
        self.options = options
        self.log_metrics = log
        self.sparsifier: DynamicSparsity | None = None
        self._saved: dict[str, Any] | None = None
        self._steps_before = 0

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise ValueError(f"DynamicSparsityCallback needs exactly one optimizer, the module configured "
                             f"{len(optimizers)}")
        steps = trainer.estimated_stepping_batches  # inf when neither max_steps nor max_epochs bounds the fit
        options = {"total_steps": int(steps) if math.isfinite(steps) else None, **self.options}
        saved, self._saved = self._saved, None
        if saved is not None:  # weights already restored from the checkpoint: keep them and its masks
            options.update(initial_masks=masks_from_state(saved), sparse_init=False)
        self.sparsifier = DynamicSparsity(pl_module, optimizers[0], **options)
        if saved is not None:
            self.sparsifier.load_state_dict(saved)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._steps_before = trainer.global_step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self._steps_before:  # accumulating: no optimizer step in this batch
            return
        sparsifier = self._require()
        sparsifier.step()
        if self.log_metrics:
            pl_module.log("sparsity/density", float(sparsifier.density()), on_step=True, on_epoch=False)
            pl_module.log("sparsity/itop_rate", float(sparsifier.exploration_rate()), on_step=True, on_epoch=False)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self._require().state_dict()

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            raise ValueError("the checkpoint holds no sparsetime sparsifier state (it was not written with "
                             "DynamicSparsityCallback); to start dynamic sparse training from its weights, load "
                             "them into the module and call fit() without ckpt_path")
        self._saved = saved

    def _require(self) -> DynamicSparsity:
        if self.sparsifier is None:
            raise ValueError("DynamicSparsityCallback was not started: it builds its sparsifier in on_fit_start")
        return self.sparsifier
