"""Dynamic sparse training inside ``transformers.Trainer``: :class:`DynamicSparsityCallback`.

The callback builds a :class:`~sparsetime.core.sparsifier.DynamicSparsity` over the Trainer's
model and optimizer when training begins, steps it after every optimizer step (once per
``gradient_accumulation_steps`` micro-batches, so ΔT counts optimizer steps, like ``max_steps``),
writes its state into every checkpoint folder the Trainer saves, and restores it from the
checkpoint ``resume_from_checkpoint`` continues, so a resumed run carries on with the same
topology, exploration record and generator state. Training logs gain ``sparsity/density`` and
``sparsity/itop_rate`` (Rs).

Needs ``pip install 'sparsetime[hf]'``. Only masked execution: the Trainer saves and reloads the
model's own modules, which sparse execution would replace.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from sparsetime.core.sparsifier import DynamicSparsity
from sparsetime.core.state import masks_from_state
from sparsetime.train.checkpoint import load_checkpoint, save_checkpoint

from ._require import require

_transformers = require("transformers", "hf", "sparsetime.integrations.huggingface")
TrainerCallback = _transformers.TrainerCallback
PREFIX_CHECKPOINT_DIR = require("transformers.trainer_utils", "hf", "the Hugging Face callback").PREFIX_CHECKPOINT_DIR

STATE_FILE = "sparsetime_sparsifier.pt"
LOG_KEYS = ("sparsity/density", "sparsity/itop_rate")


def _bare_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside Accelerate's wrapper (the Trainer hands callbacks the wrapper)."""
    try:
        from accelerate.optimizer import AcceleratedOptimizer
    except ImportError:
        return optimizer
    return optimizer.optimizer if isinstance(optimizer, AcceleratedOptimizer) else optimizer


class DynamicSparsityCallback(TrainerCallback):
    """Drive ``DynamicSparsity(model, optimizer, **options)`` from ``transformers.Trainer``.

    ``options`` are DynamicSparsity's keywords (``density``, ``growth``, ``update_interval``, ...);
    ``total_steps`` defaults to the Trainer's ``max_steps`` and ``seed`` to ``args.seed``.
    ``resume_from``: the checkpoint folder to restore the sparsifier from when training resumes
    from a folder other than ``<output_dir>/checkpoint-<step>``.

    Loggers named in ``report_to`` run before the callbacks passed to the Trainer; call
    :meth:`attach` (instead of passing the callback) so that they see the sparsity scalars too.
    """

    def __init__(self, resume_from: str | os.PathLike | None = None, **options: Any) -> None:
        if options.get("execution", "masked") != "masked":
            raise ValueError(f"execution={options['execution']!r} is not supported with transformers.Trainer (its "
                             "checkpoints reload the model's own modules); allowed: 'masked'")
        self.options = options
        self.resume_from = resume_from
        self.sparsifier: DynamicSparsity | None = None

    def attach(self, trainer: Any) -> "DynamicSparsityCallback":
        """Put this callback first in ``trainer``'s callbacks, so every logger sees its scalars."""
        handler = trainer.callback_handler
        handler.callbacks = [self] + [c for c in handler.callbacks if c is not self]
        return self

    # ------------------------------------------------------------------ Trainer events
    def on_train_begin(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None,
                       optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
        if model is None or optimizer is None:
            raise ValueError("DynamicSparsityCallback needs the Trainer's model and optimizer at train begin")
        options = {"total_steps": state.max_steps, "seed": args.seed, **self.options}
        saved = self._saved_state(args, state) if state.global_step > 0 else None
        if saved is not None:  # the model's weights are already the checkpoint's: keep them and its masks
            options.update(initial_masks=masks_from_state(saved), sparse_init=False)
        self.sparsifier = DynamicSparsity(model, _bare_optimizer(optimizer), **options)
        if saved is not None:
            self.sparsifier.load_state_dict(saved)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._require().step()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            save_checkpoint(os.path.join(folder, STATE_FILE), self._require().state_dict())

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if self.sparsifier is None or logs is None or "loss" not in logs:  # training-loss logs only
            return
        values = dict(zip(LOG_KEYS, (float(self.sparsifier.density()), float(self.sparsifier.exploration_rate()))))
        logs.update(values)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(values)  # the Trainer copied logs into its history before the event

    # ------------------------------------------------------------------ helpers
    def _require(self) -> DynamicSparsity:
        if self.sparsifier is None:
            raise ValueError("DynamicSparsityCallback was not started: it builds its sparsifier in on_train_begin")
        return self.sparsifier

    def _saved_state(self, args: Any, state: Any) -> dict[str, Any]:
        folder = self.resume_from or os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        path = os.path.join(folder, STATE_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"training resumes at step {state.global_step} but {path!r} holds no sparsifier state "
                             "(the checkpoint was not written with DynamicSparsityCallback); pass "
                             "DynamicSparsityCallback(resume_from=CHECKPOINT_FOLDER) when it lives elsewhere")
        saved = load_checkpoint(path)
        if int(saved.get("step", -1)) != state.global_step:
            raise ValueError(f"the sparsifier state in {path!r} is from step {saved.get('step')!r}, but training "
                             f"resumes at step {state.global_step}")
        return saved
