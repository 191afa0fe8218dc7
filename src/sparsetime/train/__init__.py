"""Training runs: config, method registry, trainer, checkpoints, run directories, FLOPs and logging set-up."""
from .allocator import retain_freed_memory
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from .config import (Config, DataConfig, OptimConfig, ScheduleConfig, SparsityConfig, apply_overrides,
                     config_hash, config_to_yaml, load_config, run_directory, valid_keys)
from .device import resolve_device
from .flops import count_layer_flops, inference_flops, mask_densities
from .methods import (SparsifierContext, SparsityMethod, available_methods, get_method, register_method,
                      resolve_sparsity)
from . import dst_methods, lottery_level, pruning_methods, supermask_method, transfer_method  # noqa: F401,I001
from .resolve import resolve_config
from .rundir import RunDir
from .run import RunResult, resume, train
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "Config", "DataConfig", "OptimConfig", "ScheduleConfig", "SparsityConfig", "apply_overrides", "config_hash",
    "config_to_yaml", "load_config", "run_directory", "valid_keys", "resolve_config", "resolve_device",
    "count_layer_flops", "inference_flops", "mask_densities", "SparsifierContext", "SparsityMethod",
    "available_methods", "get_method", "register_method", "resolve_sparsity", "RunDir", "RunResult", "train",
    "resume", "retain_freed_memory", "NonFiniteLossError", "Trainer", "atomic_write_text", "load_checkpoint", "save_checkpoint",
]
