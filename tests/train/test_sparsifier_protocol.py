"""Every built-in method's sparsifier fits the one Sparsifier protocol, and the trainer needs nothing else."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

import sparsetime
from sparsetime.core.protocol import MEMBERS, Sparsifier, missing_members
from sparsetime.train import RunDir, Trainer, load_config, register_method, resolve_config, train
from sparsetime.train import methods as methods_module
from sparsetime.train.dst_methods import DenseTraining

TRAIN_SOURCES = sorted((Path(sparsetime.__file__).parent / "train").glob("*.py"))


def tiny(tmp_path, *extra: str):
    return load_config(None, [
        "dataset=synthetic", "data.options.train_size=64", "data.options.test_size=32", "model_options.hidden=[8]",
        "epochs=1", "batch_size=32", "sparsity.density=0.5", "sparsity.update_interval=1", f"output_dir={tmp_path}",
        "progress=none", "device=cpu", *extra])


def test_protocol_members():
    assert MEMBERS == ("current_densities", "density", "exploration_rate", "layer_report", "load_state_dict", "masks",
                       "state_dict", "step", "update_history")


@pytest.mark.parametrize("method, kind, rate, history", [
    ("dense", "DenseTraining", 1.0, False),
    ("set", "DynamicSparsity", "rate", True),
    ("snip", "DynamicSparsity", "rate", True),
    ("gmp", "GmpSparsifier", None, False),
    ("lth", "LotteryLevel", "rate", False),
])
def test_built_in_sparsifiers_fit_the_protocol(tmp_path, method, kind, rate, history):
    config = resolve_config(tiny(tmp_path, f"sparsity.method={method}"))
    trainer = Trainer(config, RunDir(tmp_path / "run"))
    sp = trainer.sparsifier
    assert type(sp).__name__ == kind and isinstance(sp, Sparsifier) and missing_members(sp) == []
    densities = sp.current_densities()
    masks = sp.masks
    assert set(densities) == set(masks)
    for name, mask in masks.items():  # per-layer densities are those of the masks
        assert densities[name] == pytest.approx(mask.float().mean().item())
    assert sp.density() == pytest.approx(1.0 if method in ("dense", "gmp", "lth") else 0.5, abs=0.01)
    assert (sp.update_history is not None) == history
    expected = sp.density() if rate == "rate" else rate  # a static mask has explored its own weights only
    assert sp.exploration_rate() == (None if expected is None else pytest.approx(expected))
    assert sp.state_dict() is not None


class Partial:
    """A sparsifier that lacks half of the protocol."""

    def step(self) -> None: ...

    def state_dict(self):
        return {}

    def load_state_dict(self, state) -> None: ...

    def density(self) -> float:
        return 1.0


def test_a_plugged_method_missing_protocol_members_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(methods_module, "_METHODS", dict(methods_module._METHODS))
    register_method("partial", lambda ctx: Partial())
    with pytest.raises(TypeError, match="lacks current_densities, exploration_rate, layer_report, masks, update_history"):
        train(tiny(tmp_path, "sparsity.method=partial"))


def test_start_step_comes_from_the_method(tmp_path, monkeypatch):
    """A method that starts at step 5 (of 8): the trainer skips to batch 1 of epoch 2, schedule at 5."""
    monkeypatch.setattr(methods_module, "_METHODS", dict(methods_module._METHODS))
    register_method("late", methods_module.get_method("dense").build, start_step=lambda s: 5,
                    fixed={"update_interval": None})
    lrs = []
    hook = register_optimizer_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    try:
        result = train(tiny(tmp_path, "sparsity.method=late", "data.options.train_size=128", "epochs=2",
                            "schedule.name=multistep", "schedule.milestones=[0.5]", "optim.lr=0.1"))
    finally:
        hook.remove()
    assert (result.summary["start_step"], result.summary["steps"], result.summary["epochs"]) == (5, 3, 1)
    assert lrs == pytest.approx([0.01] * 3)  # the milestone at step 4 is already behind


def test_the_trainer_does_not_probe_sparsifiers_with_getattr():
    for path in TRAIN_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr"):
                target = ast.unparse(node.args[0])
                assert "sparsifier" not in target, f"{path.name}: {ast.unparse(node)}"


class HugeMasks(DenseTraining):
    """Dense training whose ``masks`` would be too large to build (as for a huge layer executed sparse)."""

    @property
    def masks(self):
        raise MemoryError("dense masks built")


def test_the_protocol_check_does_not_evaluate_properties(tmp_path, monkeypatch):
    monkeypatch.setattr(methods_module, "_METHODS", dict(methods_module._METHODS))
    register_method("huge", lambda ctx: HugeMasks(), fixed={"density": 1.0, "update_interval": None})
    assert missing_members(HugeMasks()) == []
    assert train(tiny(tmp_path, "sparsity.method=huge")).summary["density"] == 1.0
