"""Run-directory names of existing configs never change: a finished run must be found again.

The expected hashes were computed by the code before the presets became the single home of the
method defaults; any change to a resolved default (or to how the config is hashed) shows up here.
The runner's default learning rate moved from 0.01 to 0.1 afterwards (on the evidence of
docs/results/defaults); the runs made with the old default hold ``lr: 0.01`` in their config.yaml,
so they are pinned here with that value set, and keep their directories. The new default run is
pinned separately. Likewise ``sparsity.execution`` defaulted to "masked" before "auto": every run
made before holds ``execution: masked`` in its config.yaml, and masked is left out of the hash, so
those keep their directories; a default run today (auto) gets its own.
"""
from __future__ import annotations

import pytest

from sparsetime.experiments import lottery_configs, lottery_directory
from sparsetime.train import available_methods, config_hash, load_config, resolve_config, run_directory

OLD_LR = "optim.lr=0.01"  # the default learning rate when these were pinned
OLD_EXECUTION = "sparsity.execution=masked"  # the default execution when these were pinned
DEFAULT_HASH = "b6fb4220"  # `sparsetime train` with no overrides then (SET-ITOP, MLP, Fashion-MNIST, density 0.02)
LR_DEFAULT_HASH = "d7a9a0aa"  # `sparsetime train` with no overrides once lr was 0.1 (still masked)
AUTO_DEFAULT_HASH = "786890c8"  # `sparsetime train` with no overrides today (lr 0.1, execution auto)
METHOD_HASHES = {
    "dense": "416b2e7f", "gmp": "d51d59aa", "grasp": "da86183e", "lth": "035c9e00", "magnitude": "ded0d5bc",
    "random": "c8004196", "rigl": "8faa8a73", "set": "b6fb4220", "snfs": "eb06a85a", "snip": "db5bdc88",
    "static": "6dfb5f7f", "synflow": "360a6d35", "supermask": "33be13d6", "transfer": "6b615203",
}
#: what a method needs to resolve at all (a ticket transfer names its source run)
METHOD_OVERRIDES = {"transfer": ["sparsity.options.source=runs/ticket"]}
# `sparsetime lth` experiments: the experiment directory and its first level directories
LTH_DIRECTORIES = {
    (): ("lth-mlp-fashion_mnist-cd238f6b", 19, ["level_00-78f2a7a1", "level_01-a411b967", "level_02-0b1e641f"]),
    ("sparsity.options.mode=finetune", "sparsity.options.rewind_step=100"): (
        "lth-mlp-fashion_mnist-3fb1fe5d", 19, ["level_00-9d3643fd", "level_01-554e1414", "level_02-95e94719"]),
    ("sparsity.options.mode=lr", "sparsity.options.levels=2"): (
        "lth-mlp-fashion_mnist-93b69b53", 3, ["level_00-17995154", "level_01-452a00b6", "level_02-47b70d43"]),
}


def test_default_config_hash_is_pinned():
    resolved = resolve_config(load_config(None, [OLD_LR, OLD_EXECUTION]))
    assert config_hash(resolved) == DEFAULT_HASH
    assert run_directory(resolved).name == f"set-mlp-fashion_mnist-d0.02-{DEFAULT_HASH}"


def test_masked_default_run_with_todays_lr_is_pinned():
    resolved = resolve_config(load_config(None, [OLD_EXECUTION]))
    assert resolved.optim.lr == 0.1
    assert run_directory(resolved).name == f"set-mlp-fashion_mnist-d0.02-{LR_DEFAULT_HASH}"


def test_todays_default_run_is_pinned():
    resolved = resolve_config(load_config(None, []))
    assert resolved.optim.lr == 0.1 and resolved.sparsity.execution == "auto"
    assert run_directory(resolved).name == f"set-mlp-fashion_mnist-d0.02-{AUTO_DEFAULT_HASH}"


def test_auto_resolves_to_masked_for_methods_that_need_dense_weights():
    for method in ("dense", "gmp", "lth"):
        resolved = resolve_config(load_config(None, [OLD_LR, f"sparsity.method={method}"]))
        assert resolved.sparsity.execution == "masked"
        assert config_hash(resolved) == METHOD_HASHES[method]


def test_every_method_is_pinned():
    assert sorted(METHOD_HASHES) == available_methods()


@pytest.mark.parametrize("method", sorted(METHOD_HASHES))
def test_method_default_config_hash_is_pinned(method):
    overrides = [OLD_LR, OLD_EXECUTION, f"sparsity.method={method}", *METHOD_OVERRIDES.get(method, [])]
    resolved = resolve_config(load_config(None, overrides))
    assert config_hash(resolved) == METHOD_HASHES[method]


@pytest.mark.parametrize("overrides", sorted(LTH_DIRECTORIES))
def test_lottery_experiment_directories_are_pinned(overrides):
    experiment, count, first_levels = LTH_DIRECTORIES[overrides]
    config = load_config(None, ["output_dir=runs", OLD_LR, *overrides])  # lth: auto resolves to masked
    configs = lottery_configs(config)
    assert lottery_directory(config).name == experiment and len(configs) == count
    assert [run_directory(c).name for c in configs[:3]] == first_levels
    assert {run_directory(c).parent.name for c in configs} == {experiment}
