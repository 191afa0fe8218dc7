"""The training loop: one run from a resolved config to a finished run directory.

Per step: forward, backward, ``optimizer.step()``, ``sparsifier.step()``, ``scheduler.step()``.
Losses and hits are accumulated as tensors and read back only every ``log_interval`` steps
(progress, and a check that the loss is still finite) and at the end of the epoch. After each
epoch the test set is evaluated and a checkpoint (model, optimiser, scheduler, sparsifier, RNG
states, counters, history) is written atomically. The data order of epoch ``e`` derives from
``(seed, e)`` alone, so a resumed run replays the same batches without replaying the iterator,
and on CPU ends bit-identical to an uninterrupted one.

The sparsifier is used only through the :class:`~sparsetime.core.protocol.Sparsifier` protocol.
Where the run starts comes from the method, decided from the resolved config: a start step k > 0
(a lottery-ticket level rewound to step k) starts the run at epoch ``k // steps_per_epoch``, whose
first ``k % steps_per_epoch`` batches of the seeded order are skipped, with the schedule positioned
at step k. Metrics, FLOPs and the summary's ``epochs``/``steps`` count only what was trained.

Training FLOPs add, per example, the method's ``step_flops`` for steps before its
``flops_phase_end`` (RigL: while the topology is updated) and 3 f_S for the steps after, counted
step by step, so the split is exact wherever it falls; f_S is the epoch's mean of its start and
end (a trapezoid over GMP's shrinking density).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
import warnings
from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsetime.core.protocol import missing_members

from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import Config, SparsityConfig, config_hash
from .context import SparsifierContext
from .device import resolve_device
from .distributed import Distributed, rank_device
from .evaluate import evaluation_sums
from .flops import count_layer_flops, density_for_flops, inference_flops
from .methods import get_method, static_step_flops
from .optim import build_optimizer, build_scheduler
from .progress import EpochProgress
from .rundir import RunDir
from .tracking import RunTracker

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the data-order generator of ``epoch`` (``epoch=-1``: batches for pre-training scoring)."""
    return (seed * 1_000_003 + epoch + 1) % (2**63)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds data, model, optimiser, sparsifier and schedule from ``config``; ``fit()`` trains."""

    def __init__(self, config: Config, run: RunDir, checkpoint: dict[str, Any] | None = None,
                 place: Distributed | None = None) -> None:
        from sparsetime.data import batch_iterator, build_datasets, num_batches
        from sparsetime.models import build_model

        self.config, self.run = config, run
        self.place = place or Distributed()
        self.hash = config_hash(config)
        self.device = resolve_device(rank_device(config.device, self.place))
        self._batches = batch_iterator
        seed_everything(config.seed)
        d = config.data
        splits = build_datasets(config.dataset, data_dir=config.data_dir, validation_size=d.validation_size,
                                seed=config.seed, augment=d.augment, download=d.download, **d.options)
        self.train_set, self.validation_set, self.test_set = splits.train, splits.validation, splits.test
        if d.train_subset and d.train_subset < len(self.train_set):
            order = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(config.seed))
            self.train_set = torch.utils.data.Subset(self.train_set, order[: d.train_subset].tolist())
        self.model = build_model(config.model, splits.input_shape, splits.num_classes,
                                 **config.model_options).to(self.device)
        self.layer_flops = count_layer_flops(self.model, splits.input_shape, self.device)
        self.dense_flops = inference_flops(self.layer_flops)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.total_epochs = config.total_epochs
        self.global_batch = config.batch_size * self.place.world_size
        self.steps_per_epoch = num_batches(len(self.train_set), self.global_batch, world_size=self.place.world_size)
        self.total_steps = self.steps_per_epoch * self.total_epochs
        self.method = get_method(config.sparsity.method)
        self.sparsifier = self.method.build(SparsifierContext(
            model=self.model, optimizer=self.optimizer, sparsity=self._budgeted(config.sparsity),
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch, seed=config.seed, device=self.device, loss_fn=self.criterion,
            train_batches=lambda: self._train_batches(-1), resuming=checkpoint is not None,
            test_batches=self._test_batches, sparse_layers=_execution_plan(checkpoint, config.sparsity)))
        self.net = self.place.wrap(self.model, self.device)  # DDP over several ranks, after the sparsifier
        missing = missing_members(self.sparsifier)  # the protocol's members, looked up without evaluating any
        if missing:
            raise TypeError(f"sparsity method {self.method.name!r} built {type(self.sparsifier).__name__}, which lacks "
                            f"{', '.join(missing)} of the Sparsifier protocol "
                            "(sparsetime.core.protocol)")
        self.scheduler = build_scheduler(self.optimizer, config.schedule, self.total_steps, self.steps_per_epoch,
                                         config.optim.lr)
        self.flops_phase_end = self.method.flops_phase_end(config.sparsity, self.total_steps)
        self.epoch = self.step = self.start_step = 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = self.train_flops = 0.0
        if checkpoint is not None:
            self._load(checkpoint)
        else:
            self._start_at(self.method.first_step(config.sparsity))
        self.tracker = RunTracker(run.path, config.logging, self.step) if self.place.is_main else None

    # ------------------------------------------------------------------ public
    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, then write and return the summary."""
        c = self.config
        log.info("run %s: %s %s on %s, %d epochs x %d steps, device %s, starting at epoch %d (step %d)",
                 self.run.path, c.sparsity.method, c.model, c.dataset, self.total_epochs, self.steps_per_epoch,
                 self.device, self.epoch, self.step)
        while self.epoch < self.total_epochs:
            self._train_epoch()
        summary = self.summary()
        if self.place.is_main:
            self._write_updates()  # also after a resume that had no epoch left (the file may lag its checkpoint)
            self.run.write_summary(summary)
            self.tracker.close()
        log.info("finished: test accuracy %.2f%%, density %.4f, Rs %s", 100 * summary["test_accuracy"],
                 summary["density"], _fmt(summary["itop_rate"]))
        return summary

    def summary(self) -> dict[str, Any]:
        """Final figures of the run (from the last epoch's record); ``epochs`` and ``steps`` count what
        this run trained, from global step ``start_step`` (> 0 for a rewound lottery level)."""
        last = self.history[-1]
        summary = {
            "test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"],
            "best_test_accuracy": max(r["test_accuracy"] for r in self.history),
            "train_accuracy": last["train_accuracy"], "train_loss": last["train_loss"],
            "density": last["density"], "itop_rate": last["itop_rate"], "epochs": len(self.history),
            "steps": self.step - self.start_step, "start_step": self.start_step,
            "train_seconds": self.train_seconds, "train_flops": self.train_flops,
            "inference_flops": self._sparse_flops(), "dense_inference_flops": self.dense_flops,
            "method": self.config.sparsity.method, "model": self.config.model, "dataset": self.config.dataset,
            "config_hash": self.hash, "world_size": self.place.world_size, "global_batch_size": self.global_batch,
        }
        if "validation_accuracy" in last:
            summary["validation_accuracy"] = last["validation_accuracy"]
        updates = self.sparsifier.update_history
        if updates is not None:
            summary["topology_updates"] = len(updates)
        if self.method.summary_extra is not None:  # the method's own figures
            summary.update(self.method.summary_extra(self.sparsifier))
        layers = self._layer_report()
        if layers is not None:
            summary["layers"] = layers
        return summary

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self) -> None:
        c, epoch = self.config, self.epoch
        start = time.perf_counter()
        flops_start = self._sparse_flops()
        lr = self.optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = seen_after = 0  # examples trained, and those of them at or after the method's flops phase end
        skip = self.step - epoch * self.steps_per_epoch  # > 0 only in the first epoch of a run started mid-epoch
        self.model.train()
        mode = c.progress if self.place.is_main else "none"
        with EpochProgress(mode, epoch + 1, self.total_epochs, self.steps_per_epoch) as progress:
            for i, (x, y) in enumerate(self._train_batches(epoch, skip), start=skip):
                out = self.net(x)
                loss = self.criterion(out, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.sparsifier.step()
                self.scheduler.step()
                self.step += 1
                loss_sum += loss.detach() * y.shape[0]
                correct += (out.argmax(1) == y).sum()
                seen += y.shape[0]
                if self.step > self.flops_phase_end:
                    seen_after += y.shape[0]
                progress.advance()
                if (i + 1) % c.log_interval == 0:
                    progress.report(i + 1, self._finite_loss(*self.place.all_reduce_sum([loss_sum.item(), seen],
                                                                                         self.device)))
        # sums over every rank: the whole global batch's loss, accuracy and examples
        loss_total, correct_total, seen, seen_after = self.place.all_reduce_sum(
            [loss_sum.item(), correct.item(), seen, seen_after], self.device)
        train_loss = self._finite_loss(loss_total, seen)
        train_accuracy = correct_total / seen
        seconds = time.perf_counter() - start
        self.train_seconds += seconds
        f_sparse = (flops_start + self._sparse_flops()) / 2  # trapezoid over the epoch's density change
        phase = self.method.step_flops(f_sparse, self.dense_flops, c.sparsity.update_interval)
        after = static_step_flops(f_sparse, self.dense_flops, None)
        self.train_flops += (seen - seen_after) * phase + seen_after * after
        record: dict[str, Any] = {"epoch": epoch + 1, "step": self.step, "train_loss": train_loss,
                                  "train_accuracy": train_accuracy}
        if self.validation_set is not None:
            record["validation_loss"], record["validation_accuracy"] = self._evaluate(self.validation_set)
        record["test_loss"], record["test_accuracy"] = self._evaluate(self.test_set)
        record.update(lr=lr, itop_rate=self._exploration_rate(), density=float(self.sparsifier.density()),
                      seconds=seconds, eval_seconds=time.perf_counter() - start - seconds,
                      train_flops=self.train_flops)
        self.history.append(record)
        self.epoch += 1
        if self.place.is_main:  # one writer; the others wait so that every rank resumes from this checkpoint
            save_checkpoint(self.run.checkpoint_path, self._state())
            self.run.write_metrics(self.history)
            self._write_updates()
            self.tracker.epoch_end(record, self.sparsifier.update_history, self.sparsifier.layer_report())
        self.place.barrier()
        log.info("epoch %d/%d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | lr %.4g | "
                 "density %.4f | Rs %s | %.1fs", self.epoch, self.total_epochs, train_loss, 100 * train_accuracy,
                 record["test_loss"], 100 * record["test_accuracy"], lr, record["density"],
                 _fmt(record["itop_rate"]), seconds)

    def _train_batches(self, epoch: int, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's seeded batches; the first ``skip`` are drawn (keeping the generator's state) but not given."""
        generator = torch.Generator().manual_seed(epoch_seed(self.config.seed, epoch))
        batches = self._batches(self.train_set, self.global_batch, shuffle=True, generator=generator,
                                num_workers=self.config.data.num_workers, shard=self.place.shard)
        for x, y in islice(batches, skip, None):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The whole test set in evaluation batches, on the run's device."""
        batches = self._batches(self.test_set, self.config.data.eval_batch_size, shuffle=False, generator=None,
                                num_workers=self.config.data.num_workers)
        for x, y in batches:
            yield x.to(self.device), y.to(self.device)

    def _evaluate(self, dataset: Any) -> tuple[float, float]:
        """Loss and accuracy on ``dataset``; with several ranks each evaluates a share, then sums."""
        batches = self._batches(self.place.rank_slice(dataset), self.config.data.eval_batch_size, shuffle=False,
                                generator=None, num_workers=self.config.data.num_workers)
        loss_sum, correct, seen = self.place.all_reduce_sum(evaluation_sums(self.model, batches, self.device),
                                                            self.device)
        if seen == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        return loss_sum / seen, correct / seen

    def _finite_loss(self, loss_sum: float, seen: float) -> float:
        """The mean loss of ``seen`` examples; NonFiniteLossError when it is NaN or infinite (the
        sums come from every rank, so all of them stop together)."""
        value = loss_sum / seen
        if not math.isfinite(value):
            kept = (f"the last good checkpoint ({self.run.checkpoint_path}, after epoch {self.epoch}) is kept"
                    if self.history else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"training loss became {value} in epoch {self.epoch + 1} (by step {self.step}); run stopped and "
                f"{kept}. Try a lower optim.lr or check the data.")
        return value

    def _start_at(self, step: Any) -> None:
        """Begin at global step ``step`` (a rewound lottery level): counters and schedule positioned there."""
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < self.total_steps:
            raise ValueError(f"start step {step!r} of sparsity method {self.method.name!r} is invalid; allowed: an "
                             f"integer with 0 <= start step < {self.total_steps} (the run's total steps)")
        if step == 0:
            return
        self.start_step = self.step = step
        self.epoch = step // self.steps_per_epoch
        with warnings.catch_warnings():  # stepping the schedule before any optimizer.step() is intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                self.scheduler.step()
        log.info("starting at step %d (epoch %d, batch %d) with learning rate %.4g", step, self.epoch + 1,
                 step % self.steps_per_epoch, self.optimizer.param_groups[0]["lr"])

    def _budgeted(self, sparsity: Any) -> Any:
        """``sparsity`` with the density that meets ``flops_fraction`` of the dense inference FLOPs."""
        if sparsity.flops_fraction is None:
            return sparsity
        from sparsetime.core.selection import select_sparse_parameters

        params = select_sparse_parameters(self.model, sparsity.dense_layers or None, sparsity.dense_first,
                                          sparsity.dense_last)
        density = density_for_flops(self.layer_flops, {n: tuple(p.shape) for n, p in params.items()},
                                    sparsity.flops_fraction, sparsity.distribution)
        log.info("density %.5f gives %.4f of the dense inference FLOPs with the %s distribution", density,
                 sparsity.flops_fraction, sparsity.distribution)
        return dataclasses.replace(sparsity, density=density)

    # ------------------------------------------------------------------ metrics helpers
    def _sparse_flops(self) -> float:
        densities = {n: d for n, d in self.sparsifier.current_densities().items() if n in self.layer_flops}
        return inference_flops(self.layer_flops, densities)

    def _write_updates(self) -> None:
        """``updates.jsonl`` from the sparsifier's update history (kept in its checkpointed state)."""
        updates = self.sparsifier.update_history
        if updates is None:
            return
        self.run.write_updates({**{k: _plain(v) for k, v in u.items()}, "epoch": u["step"] / self.steps_per_epoch}
                               for u in updates)

    def _layer_report(self) -> list[dict[str, Any]] | None:
        """Per sparse layer at the end: name, shape, size, active count, density and Rs (None without layers)."""
        rows = self.sparsifier.layer_report()
        if not rows:
            return None
        return [{**{k: _plain(v) for k, v in row.items()}, "shape": [int(s) for s in row["shape"]]} for row in rows]

    def _exploration_rate(self) -> float | None:
        rate = self.sparsifier.exploration_rate()
        return None if rate is None else float(rate)

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "config_hash": self.hash, "epoch": self.epoch, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "sparsifier": self.sparsifier.state_dict(),
            "rng": capture_rng_state(), "history": self.history, "train_seconds": self.train_seconds,
            "train_flops": self.train_flops, "start_step": self.start_step,
        }

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r} is not supported (expected {CHECKPOINT_FORMAT})")
        if state["config_hash"] != self.hash:
            raise ValueError(f"checkpoint belongs to config {state['config_hash']} but the run's config hashes to "
                             f"{self.hash}; config.yaml was edited after the run started")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sparsifier.load_state_dict(state["sparsifier"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.start_step = int(state.get("start_step", 0))  # absent in checkpoints of runs started at step 0
        check_start_step(self.run, self.start_step, self.method.first_step(self.config.sparsity))
        self.history = list(state["history"])
        self.train_seconds, self.train_flops = float(state["train_seconds"]), float(state["train_flops"])
        if self.place.is_main:
            self.run.write_metrics(self.history)  # drop lines of an epoch that ended after this checkpoint
        log.info("resumed from %s at epoch %d (step %d)", self.run.checkpoint_path, self.epoch, self.step)


def check_start_step(run: RunDir, trained_from: int, starts_at: int) -> None:
    """ValueError when a run was trained from another step than its config now starts at (lottery
    fine-tuning levels of older versions trained all T steps instead of steps k..T)."""
    if trained_from != starts_at:
        raise ValueError(f"run {str(run.path)!r} was trained from step {trained_from}, but its config now starts at "
                         f"step {starts_at} (older versions fine-tuned lottery levels for all steps); delete the "
                         "directory to train it again")


def _execution_plan(checkpoint: dict[str, Any] | None, sparsity: SparsityConfig) -> frozenset[str] | None:
    """The layers a checkpoint stores as sparse modules, to rebuild the model as it was saved (the
    execution="auto" rule may have changed since); None for a fresh run or a masked one."""
    if checkpoint is None or sparsity.execution == "masked":
        return None
    from sparsetime.nn import stored_sparse_layers
    return stored_sparse_layers(checkpoint["model"])


def load_run_checkpoint(run: RunDir) -> dict[str, Any] | None:
    """The run's checkpoint, or None when it has none yet."""
    return load_checkpoint(run.checkpoint_path) if run.checkpoint_path.is_file() else None


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a number held as a tensor or NumPy scalar."""
    return value.item() if hasattr(value, "item") else value


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
