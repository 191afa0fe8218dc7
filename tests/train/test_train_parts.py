"""Pieces of the trainer: optimisers, LR schedules, atomic checkpoints, RNG capture, progress, device."""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from sparsetime.train import OptimConfig, ScheduleConfig, load_checkpoint, resolve_device, save_checkpoint
from sparsetime.train.checkpoint import atomic_write_text, capture_rng_state, restore_rng_state
from sparsetime.train.logs import log_to_file
from sparsetime.train.optim import build_optimizer, build_scheduler, lr_factor
from sparsetime.train.progress import EpochProgress, wants_bar


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize("exclude", [False, True])
def test_weight_decay_can_skip_biases_and_norm_parameters(exclude):
    model = _net()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, OptimConfig(name="sgd", lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.5,
                                             exclude_bias_norm=exclude))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        decayed = before[name] * 0.5  # w - lr * wd * w with a zero gradient
        skipped = exclude and p.dim() <= 1
        assert torch.allclose(p.detach(), before[name] if skipped else decayed), name


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_optimizer_kinds(name, cls):
    opt = build_optimizer(_net(), OptimConfig(name=name, lr=0.3, betas=[0.8, 0.99], weight_decay=0.01))
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.3
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    else:
        assert opt.param_groups[0]["betas"] == (0.8, 0.99)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="sgd, adam, adamw"):
        build_optimizer(_net(), OptimConfig(name="lbfgs"))


def test_multistep_factor_by_hand():
    cfg = ScheduleConfig(name="multistep", milestones=[0.5, 0.75], gamma=0.1)
    got = [lr_factor(s, cfg, 100, 0, 0.1) for s in (0, 49, 50, 74, 75, 99)]
    assert got == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_and_warmup_factor_by_hand():
    cos = ScheduleConfig(name="cosine")
    assert [lr_factor(s, cos, 100, 0, 0.1) for s in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0])
    floor = ScheduleConfig(name="cosine", min_lr=0.01)  # floor factor 0.1 of base lr 0.1
    assert lr_factor(50, floor, 100, 0, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    # 10 warm-up steps: linear ramp, then the cosine runs over the remaining 90 steps
    assert lr_factor(0, cos, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, cos, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, cos, 100, 10, 0.1) == pytest.approx(0.5)
    flat = ScheduleConfig(name="none")
    assert [lr_factor(s, flat, 100, 4, 0.1) for s in (0, 1, 3, 50)] == pytest.approx([0.25, 0.5, 1.0, 1.0])


def test_scheduler_steps_per_step_and_survives_state_round_trip():
    model = _net()
    opt = build_optimizer(model, OptimConfig(lr=0.1))
    cfg = ScheduleConfig(name="multistep", milestones=[0.5], gamma=0.1, warmup_epochs=1)
    sched = build_scheduler(opt, cfg, total_steps=20, steps_per_epoch=4, base_lr=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    assert lrs[10:] == pytest.approx([0.01, 0.01])
    opt2 = build_optimizer(_net(), OptimConfig(lr=0.1))
    sched2 = build_scheduler(opt2, cfg, total_steps=20, steps_per_epoch=4, base_lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_checkpoint_round_trip_and_atomic_replace(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"w": torch.arange(4.0), "epoch": 1, "history": [{"a": 0.5}]})
    state = load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(4.0)) and state["epoch"] == 1 and state["history"] == [{"a": 0.5}]

    def torn(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError("killed while writing")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(path, {"w": torch.zeros(4), "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["ck.pt"]  # no temporary file left behind


def test_checkpoint_refuses_code_and_garbage(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "hook": random.Random()}, path)  # pickles an arbitrary object
    with pytest.raises(ValueError, match="cannot be loaded with weights_only=True.*random.Random"):
        load_checkpoint(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be loaded with weights_only=True"):
        load_checkpoint(junk)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    state = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_atomic_text_write(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["f.txt"]


def test_progress_modes(caplog, capsys):
    assert not wants_bar("auto")  # pytest captures stderr: not a terminal
    assert wants_bar("bar") and not wants_bar("log")
    with pytest.raises(ValueError, match="auto, bar, log, none"):
        wants_bar("fancy")
    with caplog.at_level(logging.INFO, logger="sparsetime"):
        with EpochProgress("log", 2, 3, 10) as progress:
            progress.advance()
            progress.report(5, 0.25)
        with EpochProgress("none", 2, 3, 10) as quiet:
            quiet.report(5, 0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["epoch 2/3 step 5/10 loss 0.2500"]
    with EpochProgress("bar", 1, 3, 4) as bar:
        for _ in range(4):
            bar.advance()
    assert "epoch 1/3" in capsys.readouterr().err


def test_log_file_gets_package_records_only_while_open(tmp_path):
    path = tmp_path / "train.log"
    logger = logging.getLogger("sparsetime.train.test")
    with log_to_file(path):
        logger.info("inside")
    logger.info("outside")
    text = path.read_text()
    assert "inside" in text and "outside" not in text


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("banana")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
