"""``sparsity.execution``: runs on sparse modules through the runner (train, checkpoint, resume)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from sparsetime.train import Config, config_hash, load_checkpoint, load_config, resolve_config, resume, train
from sparsetime.train import trainer as trainer_module
from sparsetime.train.init_masks import load_masks

TIMING = {"seconds", "eval_seconds", "train_seconds"}


def tiny(tmp_path, *extra: str):
    return load_config(None, [
        "dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64",
        "model_options.hidden=[48, 48]", "epochs=2", "batch_size=32", "sparsity.density=0.3",
        "sparsity.update_interval=3", f"output_dir={tmp_path}", "progress=none", "device=cpu", *extra])


def _plain(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def test_default_hash_is_unchanged_and_sparse_runs_get_their_own_directory():
    # b71d6294: the default config's hash computed by the code before sparsity.execution existed
    # (its learning rate was 0.01 then, its execution "masked"), so run directories named then are
    # still found; "auto" (today's default) and "sparse" runs get their own directories
    old = dataclasses.replace(Config(), optim=dataclasses.replace(Config().optim, lr=0.01),
                              sparsity=dataclasses.replace(Config().sparsity, execution="masked"))
    assert config_hash(old) == "b71d6294"
    hashes = {mode: config_hash(dataclasses.replace(old, sparsity=dataclasses.replace(old.sparsity, execution=mode)))
              for mode in ("sparse", "auto")}
    assert len({"b71d6294", *hashes.values()}) == 3


def test_sparse_run_matches_masked_run_and_stores_no_dense_weights(tmp_path):
    masked = train(tiny(tmp_path / "m"))
    sparse = train(tiny(tmp_path / "s", "sparsity.execution=sparse"))
    assert masked.run_dir.name != sparse.run_dir.name
    for key in ("test_accuracy", "train_loss", "density", "itop_rate", "train_flops", "inference_flops"):
        assert sparse.summary[key] == pytest.approx(masked.summary[key], rel=1e-5), key
    state = load_checkpoint(sparse.run_dir / "checkpoint.pt")
    assert not any(k.endswith(".weight") and v.dim() == 2 for k, v in state["model"].items())
    assert {k for k in state["model"] if k.endswith("weight_values")} == {"layers.0.weight_values",
                                                                            "layers.1.weight_values",
                                                                            "layers.2.weight_values"}
    # the masks of a sparse run seed other runs like a masked run's do
    masks_s, masks_m = load_masks(sparse.run_dir), load_masks(masked.run_dir)
    assert set(masks_s) == set(masks_m)
    assert all(torch.equal(masks_s[n], masks_m[n]) for n in masks_m)


def _killed_in_second_epoch(config, monkeypatch):
    """Train ``config`` until Ctrl-C arrives at the start of its second epoch; returns the run directory."""
    original = trainer_module.Trainer._train_epoch
    calls = {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(self)

    with monkeypatch.context() as patched:
        patched.setattr(trainer_module.Trainer, "_train_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(config)
    return next(Path(config.output_dir).iterdir())


def test_sparse_run_resumes_bit_identically(tmp_path, monkeypatch):
    extra = ["epochs=3", "sparsity.execution=sparse", "sparsity.update_interval=2"]
    reference = train(tiny(tmp_path / "a", *extra))
    run = _killed_in_second_epoch(tiny(tmp_path / "b", *extra), monkeypatch)
    resumed = resume(run)
    assert _plain(resumed.summary) == _plain(reference.summary)
    mine = [_plain(json.loads(x)) for x in (run / "metrics.jsonl").read_text().splitlines()]
    theirs = [_plain(json.loads(x)) for x in (reference.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert mine == theirs


@pytest.mark.parametrize("rule_when_written", ["every layer sparse", "today's rule"])
def test_an_auto_run_resumes_on_the_plan_its_checkpoint_was_written_with(tmp_path, monkeypatch, rule_when_written):
    # execution="auto" picks layers by a speed rule that a later version may change; the checkpoint
    # stores the sparse modules it was written with, and resuming rebuilds exactly those (today's
    # rule keeps this small MLP masked; the other rule stands for a version that picks every layer)
    from sparsetime.nn import SparseExecution, stored_sparse_layers

    def every_layer_sparse(patch) -> None:
        patch.setattr(SparseExecution, "prefers", lambda self, shape, density, device: True)

    extra = ["epochs=3", "sparsity.update_interval=2"]
    with monkeypatch.context() as rule:
        if rule_when_written == "every layer sparse":
            every_layer_sparse(rule)
        reference = train(tiny(tmp_path / "a", *extra))
        run = _killed_in_second_epoch(tiny(tmp_path / "b", *extra), monkeypatch)
    written = stored_sparse_layers(load_checkpoint(run / "checkpoint.pt")["model"])
    if rule_when_written == "every layer sparse":
        assert written == {"layers.0.weight", "layers.1.weight", "layers.2.weight"}
    else:
        assert written == set()
        every_layer_sparse(monkeypatch)  # the rule changed between the kill and the resume
    resumed = resume(run)
    assert _plain(resumed.summary) == _plain(reference.summary)
    assert stored_sparse_layers(load_checkpoint(run / "checkpoint.pt")["model"]) == written


@pytest.mark.parametrize("override, message", [
    ("sparsity.execution=gpu", "sparsity.execution='gpu' is not known; allowed: masked, sparse, auto"),
    ("sparsity.method=gmp", "not supported by method 'gmp'"),
])
def test_bad_execution_settings_are_refused_before_anything_is_written(tmp_path, override, message):
    extra = [override] if override.startswith("sparsity.execution") else [override, "sparsity.execution=sparse"]
    with pytest.raises(ValueError, match=message):
        resolve_config(tiny(tmp_path, *extra))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_static_snip_run_executes_sparse(tmp_path):
    result = train(tiny(tmp_path, "sparsity.method=snip", "sparsity.execution=sparse", "epochs=1"))
    state = load_checkpoint(result.run_dir / "checkpoint.pt")
    assert "layers.0.weight_values" in state["model"]
    assert result.summary["density"] == pytest.approx(0.3, abs=0.01)
