"""The run configuration's schema: nested dataclasses with their defaults, and the allowed names.

One :class:`Config` describes a run fully. Loading, overrides, validation and hashing are in
:mod:`sparsetime.train.config`, which re-exports every name here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sparsetime.core.defaults import RUN_UPDATE_INTERVAL

PROGRESS_MODES = ("auto", "bar", "log", "none")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "multistep", "cosine")

# Fields that do not change what a run computes: left out of the run hash.
NON_RESULT_KEYS = ("name", "output_dir", "data_dir", "device", "progress", "log_interval", "data.num_workers",
                   "data_fingerprint", "logging")
# Fields left out of the run hash while they hold the value they had before the field existed, so
# adding them kept the names of earlier run directories. A run with another value gets its own
# directory. sparsity.execution: "masked" (the default until "auto" replaced it) is left out, so
# every masked run keeps its directory; "auto" is hashed like "sparse", because its layers may run
# sparse: the same results to float rounding, but not bit for bit, and a checkpoint that stores
# sparse modules instead of dense weights. An "auto" run of a method that needs dense weights
# resolves to "masked" (see resolve_sparsity), so those runs keep their hash too.
HASHED_UNLESS_DEFAULT = {"sparsity.execution": "masked", "world_size": 1, "sparsity.flops_fraction": None}
EXECUTION_MODES = ("masked", "sparse", "auto")


@dataclass
class OptimConfig:
    """Optimiser: SGD (momentum, Nesterov) or Adam/AdamW."""

    name: str = "sgd"
    lr: float = 0.1  # SET at 98% reached 81.9% after 3 epochs at 0.01, 86.1% at 0.1 (docs/results/defaults)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    exclude_bias_norm: bool = False  # no weight decay on biases and normalisation parameters
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped every optimiser step; milestones are fractions of training."""

    name: str = "none"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0  # floor of the cosine schedule


@dataclass
class SparsityConfig:
    """Which sparsifier drives the run. ``None`` fields take the method's default (see resolve)."""

    method: str = "set"
    density: float = 0.02
    distribution: str | None = None
    growth: str | None = None
    update_interval: int | None = RUN_UPDATE_INTERVAL  # see its docstring in the presets
    drop_fraction: float | None = None
    drop_schedule: str | None = None
    min_drop_fraction: float | None = None
    stop_fraction: float | None = None
    dense_layers: list[str] = field(default_factory=list)
    dense_first: bool = False
    dense_last: bool = False
    sparse_init: bool = True
    redistribution: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments for the method
    # masks that seed a DST run: a pruning method (snip, grasp, synflow, magnitude, random), a masks
    # file ({name: bool tensor}, torch.save) or a run directory whose checkpoint holds masks
    init_mask: str | None = None
    # how sparse layers run: "masked" (dense weight x mask), "sparse" (sparse modules and kernels,
    # O(nnz) memory; CPU) or "auto" (sparse where faster, masked elsewhere and on CUDA). See
    # DynamicSparsity(execution=...) and HASHED_UNLESS_DEFAULT for how it enters the run hash.
    execution: str = "auto"
    # a budget instead of a density: the global density whose inference FLOPs are this fraction of dense
    flops_fraction: float | None = None


@dataclass
class DataConfig:
    """Data loading details beyond the dataset name."""

    augment: bool = True
    validation_size: int = 0
    download: bool = True
    eval_batch_size: int = 1000
    train_subset: int = 0  # use only this many training examples (0 = all), drawn with the seed
    num_workers: int = 0  # loader processes for datasets read from files one by one (image folders)
    options: dict[str, Any] = field(default_factory=dict)  # dataset options, e.g. synthetic train_size


@dataclass
class LoggingConfig:
    """Where the run's scalars go besides metrics.jsonl: scalars.csv always, TensorBoard on request."""

    tensorboard: bool = False  # event files under <run>/tensorboard (pip install 'sparsetime[tensorboard]')


@dataclass
class Config:
    """One training run. The default is SET-ITOP on an MLP 784-1000-1000-10, Fashion-MNIST, 98% sparse."""

    name: str | None = None
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)  # keyword options of the model
    epochs: int = 5
    extend: float = 1.0  # multiplies epochs; schedule milestones are fractions, so they scale too
    batch_size: int = 128
    label_smoothing: float = 0.0
    seed: int = 0
    # the dataset files the run was trained on (set by the runner; compared when a run is found again)
    data_fingerprint: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1  # processes of a torchrun launch, set by the runner (global batch: batch_size * world_size)
    output_dir: str = "runs"
    device: str = "auto"
    progress: str = "auto"
    log_interval: int = 100  # steps between progress lines and finiteness checks of the loss
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def total_epochs(self) -> int:
        """Epochs actually trained: ``round(epochs * extend)``."""
        return max(1, round(self.epochs * self.extend))
