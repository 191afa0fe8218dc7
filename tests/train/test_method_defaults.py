"""One home for each default: the presets' table feeds both ``st.SET/RigL/SNFS`` and the runner's methods."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import sparsetime as st
from sparsetime.core.presets import METHOD_DEFAULTS, RUN_UPDATE_INTERVAL
from sparsetime.train import SparsityConfig, load_config, resolve_config, train

# the values each paper gives, written out here again: SET-ITOP's public code, RigL section 4, SNFS
PAPER = {
    "set": {"distribution": "erk", "growth": "random", "drop": "magnitude", "drop_fraction": 0.5,
            "drop_schedule": "cosine", "min_drop_fraction": 0.005, "update_interval": 1500, "stop_fraction": 1.0,
            "redistribution": False},
    "rigl": {"distribution": "erk", "growth": "gradient", "drop": "magnitude", "drop_fraction": 0.3,
             "drop_schedule": "cosine", "min_drop_fraction": 0.0, "update_interval": 100, "stop_fraction": 0.75,
             "redistribution": False},
    "snfs": {"distribution": "uniform", "growth": "momentum", "drop": "magnitude", "drop_fraction": 0.5,
             "drop_schedule": "cosine", "min_drop_fraction": 0.0, "stop_fraction": 1.0, "redistribution": True,
             "momentum_beta": 0.9},
}
RUNNER_FIELDS = ("distribution", "growth", "drop_fraction", "drop_schedule", "min_drop_fraction", "stop_fraction",
                 "redistribution")


def test_the_table_holds_each_papers_defaults():
    for method, expected in PAPER.items():
        assert dict(METHOD_DEFAULTS[method]) == expected, method
    with pytest.raises(TypeError):
        METHOD_DEFAULTS["set"]["drop_fraction"] = 0.1  # read-only: one home, not a scratch pad


@pytest.mark.parametrize("method", ["set", "rigl", "snfs"])
def test_preset_function_and_runner_method_agree_with_the_table(method):
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    extra = {"update_interval": 7} if method == "snfs" else {}
    sparsifier = getattr(st, {"set": "SET", "rigl": "RigL", "snfs": "SNFS"}[method])(model, opt, 0.5, 100, **extra)
    table = METHOD_DEFAULTS[method]
    for key, value in table.items():
        assert getattr(sparsifier, key) == value, (method, key)
    resolved = resolve_config(load_config(None, [f"sparsity.method={method}"])).sparsity
    assert {k: getattr(resolved, k) for k in RUNNER_FIELDS} == {k: table[k] for k in RUNNER_FIELDS}
    # the runner's update interval is its own default, for every method that updates
    assert resolved.update_interval == RUN_UPDATE_INTERVAL == SparsityConfig().update_interval == 200


def test_preset_overrides_still_win():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    sparsifier = st.RigL(model, torch.optim.SGD(model.parameters(), lr=0.1), 0.5, 100, drop_fraction=0.1,
                         update_interval=10)
    assert (sparsifier.drop_fraction, sparsifier.update_interval, sparsifier.growth) == (0.1, 10, "gradient")


def test_runner_passes_the_tables_engine_options_and_options_override_them(tmp_path, monkeypatch):
    """``drop`` and ``momentum_beta`` are no config fields: the runner takes them from the table too."""
    seen = []
    original = st.DynamicSparsity.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(st.DynamicSparsity, "__init__", spy)
    base = ["dataset=synthetic", "data.options.train_size=64", "data.options.test_size=32", "model_options.hidden=[8]",
            "epochs=1", "batch_size=32", "sparsity.method=snfs", "sparsity.density=0.5", "progress=none",
            "device=cpu"]
    train(load_config(None, [*base, f"output_dir={tmp_path / 'a'}"]))
    train(load_config(None, [*base, f"output_dir={tmp_path / 'b'}", "sparsity.options.momentum_beta=0.5"]))
    assert [(k["drop"], k["momentum_beta"]) for k in seen] == [("magnitude", 0.9), ("magnitude", 0.5)]
