"""Lottery tickets: level densities, exact prune_level, exact rewind (BN included), procedure, resume, controls."""
import os

import pytest
import torch
from torch import nn

import sparsetime.pruning as P


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))


def _train_a_bit(model, steps=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(8, 6, generator=g)
        nn.functional.cross_entropy(model(x), torch.randint(0, 3, (8,), generator=g)).backward()
        opt.step()


@pytest.mark.parametrize("level,p,expected", [(0, 0.2, 1.0), (1, 0.2, 0.8), (3, 0.2, 0.512), (2, 0.5, 0.25)])
def test_lth_density(level, p, expected):
    assert P.lth_density(level, p) == pytest.approx(expected)


@pytest.mark.parametrize("p", [0, 0.0, 1, 1.0, -0.2, 1.5])
def test_fraction_outside_open_interval(p):
    with pytest.raises(ValueError, match="fraction"):
        P.lth_density(1, p)
    with pytest.raises(ValueError, match="fraction"):
        P.prune_level(_net(), fraction=p)


def test_prune_level_global_removes_p_of_active_smallest_first():
    model = _net(1)
    m1 = P.prune_level(model)  # 72 + 36 = 108 weights
    assert sum(int(m.sum()) for m in m1.values()) == round(0.8 * 108)  # 86
    m2 = P.prune_level(model, m1, 0.2)
    assert sum(int(m.sum()) for m in m2.values()) == round(0.8 * 86)  # 69
    params = dict(model.named_parameters())
    for n in m1:
        assert not (m2[n] & ~m1[n]).any()
    removed = torch.cat([params[n].detach().abs()[m1[n] & ~m2[n]] for n in m1])
    kept = torch.cat([params[n].detach().abs()[m2[n]] for n in m1])
    assert kept.min() >= removed.max()


def test_prune_level_layer_scope_counts():
    model = _net(2)
    masks = P.prune_level(model, fraction=0.5, scope="layer")
    masks = P.prune_level(model, masks, fraction=0.5, scope="layer")
    assert int(masks["0.weight"].sum()) == 18 and int(masks["3.weight"].sum()) == 9  # 72->36->18, 36->18->9


def test_snapshot_and_rewind_restore_weights_and_bn_buffers_exactly():
    model = _net(3)
    snap = P.snapshot(model)
    _train_a_bit(model)
    assert not torch.equal(model[1].running_mean, snap["1.running_mean"])  # training moved BN stats
    assert int(model[1].num_batches_tracked) == 3
    masks = P.prune_level(model, fraction=0.5)
    P.rewind(model, snap, masks)
    state = model.state_dict()
    for k, v in snap.items():
        if k in masks:
            assert torch.equal(state[k], v * masks[k]), k
            assert (state[k][~masks[k]] == 0).all()
        else:
            assert torch.equal(state[k], v), k
    assert int(model[1].num_batches_tracked) == 0


def test_snapshot_is_independent_of_later_training():
    model = _net(4)
    snap = P.snapshot(model)
    copy = {k: v.clone() for k, v in snap.items()}
    _train_a_bit(model)
    assert all(torch.equal(snap[k], copy[k]) for k in snap)


def test_rewind_rejects_foreign_snapshot():
    with pytest.raises(ValueError, match="snapshot"):
        P.rewind(_net(), P.snapshot(nn.Sequential(nn.Linear(6, 3))))


class Recorder:
    """A fake trainer: records each call, then 'trains' deterministically (weights and BN stats change)."""

    def __init__(self, fail_at=None):
        self.calls = []
        self.fail_at = fail_at

    def __call__(self, model, start_step, masks, *, stop_step, lr_mode, run_name):
        self.calls.append({"start": start_step, "stop": stop_step, "lr_mode": lr_mode, "run": run_name,
                           "masks": None if masks is None else {n: m.clone() for n, m in masks.items()},
                           "state": P.snapshot(model)})
        if run_name == self.fail_at:
            self.fail_at = None
            raise RuntimeError("simulated crash")
        with torch.no_grad():
            for i, p in enumerate(model.parameters()):
                p.mul_(1.25).add_(0.01 * (i + 1) + 0.001 * start_step)
        model.train()
        model(torch.linspace(-1, 1, 24).view(4, 6))  # moves BN running stats
        if masks is not None:
            P.apply_masks(model, masks)


def test_procedure_weight_rewinding_to_zero():
    model = _net(5)
    init = P.snapshot(model)
    rec = Recorder()
    lt = P.LotteryTicket(model, rec, total_steps=100, levels=2)
    records = lt.run()
    assert [c["run"] for c in rec.calls] == ["level_00", "level_01", "level_02"]
    assert [c["start"] for c in rec.calls] == [0, 0, 0] and {c["lr_mode"] for c in rec.calls} == {"schedule"}
    assert rec.calls[0]["masks"] is None
    assert [r.active for r in records] == [108, 86, 69]
    for call in rec.calls:  # every level starts from the original init (masked), BN buffers included
        for k, v in init.items():
            expected = v * call["masks"][k] if call["masks"] is not None and k in call["masks"] else v
            assert torch.equal(call["state"][k], expected), (call["run"], k)
    assert torch.equal(lt.masks["0.weight"], rec.calls[2]["masks"]["0.weight"])


def test_procedure_rewinds_to_step_k():
    model = _net(6)
    rec = Recorder()
    P.LotteryTicket(model, rec, total_steps=100, levels=1, rewind_step=10).run()
    assert [(c["start"], c["stop"], c["run"]) for c in rec.calls] == [
        (0, 10, "level_00"), (10, None, "level_00"), (10, None, "level_01")]
    at_k = rec.calls[1]["state"]  # weights after training to step k
    masks = rec.calls[2]["masks"]
    for k, v in at_k.items():
        expected = v * masks[k] if k in masks else v
        assert torch.equal(rec.calls[2]["state"][k], expected), k


@pytest.mark.parametrize("mode,lr_mode", [("lr", "schedule"), ("finetune", "final")])
def test_procedure_lr_rewinding_and_finetuning_keep_trained_weights(mode, lr_mode):
    model = _net(7)
    rec = Recorder()
    lt = P.LotteryTicket(model, rec, total_steps=50, levels=1, rewind_step=5, mode=mode)
    lt.run()
    level1 = rec.calls[-1]
    assert (level1["start"], level1["lr_mode"]) == (5, lr_mode)
    # the level-1 run starts from the weights level 0 ended with (masked): recompute level 0's end
    replay = _net(7)
    rec2 = Recorder()
    rec2(replay, 0, None, stop_step=5, lr_mode="schedule", run_name="x")
    rec2(replay, 5, None, stop_step=None, lr_mode="schedule", run_name="x")
    for k, v in P.snapshot(replay).items():
        expected = v * level1["masks"][k] if k in level1["masks"] else v
        assert torch.equal(level1["state"][k], expected), k


def test_procedure_resumes_after_a_crash(tmp_path):
    path = tmp_path / "lth" / "state.pt"
    reference = Recorder()
    ref_model = _net(8)
    P.LotteryTicket(ref_model, reference, total_steps=20, levels=3, rewind_step=2, state_path=None).run()

    crashing = Recorder(fail_at="level_02")
    with pytest.raises(RuntimeError, match="simulated"):
        P.LotteryTicket(_net(8), crashing, total_steps=20, levels=3, rewind_step=2, state_path=path).run()
    assert path.exists()
    resumed_rec = Recorder()
    model = _net(99)  # a fresh process: whatever weights, the state file drives the rest
    lt = P.LotteryTicket(model, resumed_rec, total_steps=20, levels=3, rewind_step=2, state_path=path)
    records = lt.run()
    assert [c["run"] for c in resumed_rec.calls] == ["level_02", "level_03"]
    assert [r.level for r in records] == [0, 1, 2, 3]
    for n in ref_model.state_dict():
        assert torch.equal(model.state_dict()[n], ref_model.state_dict()[n]), n
    assert all(torch.equal(lt.masks[n], reference.calls[-1]["masks"][n]) for n in lt.masks)
    finished = Recorder()  # a finished procedure trains nothing more
    assert len(P.LotteryTicket(_net(8), finished, total_steps=20, levels=3, rewind_step=2, state_path=path).run()) == 4
    assert finished.calls == []
    # resuming with other settings is refused
    with pytest.raises(ValueError, match="fraction"):
        P.LotteryTicket(_net(8), Recorder(), total_steps=20, levels=3, rewind_step=2, fraction=0.5,
                        state_path=path).run()


@pytest.mark.parametrize("kwargs,match", [
    ({"rewind_step": 100}, "beyond training"),
    ({"rewind_step": 250}, "beyond training"),
    ({"fraction": 1.0}, "fraction"),
    ({"fraction": 0}, "fraction"),
    ({"mode": "rewind"}, "mode"),
    ({"levels": -1}, "levels"),
])
def test_bad_procedure_input_writes_nothing(tmp_path, kwargs, match):
    path = tmp_path / "state.pt"
    with pytest.raises(ValueError, match=match):
        P.LotteryTicket(_net(), Recorder(), total_steps=100, **{"levels": 2, **kwargs}, state_path=path).run()
    assert os.listdir(tmp_path) == []


def test_procedure_no_sparsifiable_layer():
    with pytest.raises(ValueError, match="no sparsifiable layer"):
        P.LotteryTicket(nn.Sequential(nn.BatchNorm1d(3)), Recorder(), total_steps=10, levels=1)


def test_random_mask_control_keeps_layer_counts():
    model = _net(9)
    masks = P.prune_level(model, fraction=0.6)
    rand = P.random_masks(masks, seed=1)
    for n in masks:
        assert int(rand[n].sum()) == int(masks[n].sum())
    assert any(not torch.equal(rand[n], masks[n]) for n in masks)
    again = P.random_masks(masks, seed=1)
    assert all(torch.equal(again[n], rand[n]) for n in masks)


def test_random_reinit_control():
    model = _net(10)
    masks = P.prune_level(model, fraction=0.5)
    before = P.snapshot(model)
    rng = torch.get_rng_state()
    P.random_reinit(model, masks, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # global RNG untouched
    params = dict(model.named_parameters())
    for n, m in masks.items():
        assert (params[n][~m] == 0).all()
        assert not torch.equal(params[n].detach(), before[n] * m)
    other = _net(11)
    P.random_reinit(other, masks, seed=3)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())


def test_procedure_controls():
    model = _net(12)
    rec = Recorder()
    lt = P.LotteryTicket(model, rec, total_steps=10, levels=1)
    lt.run()
    ticket = lt.level_masks(1)
    rm = lt.run_control(1, "random_mask", seed=0)
    assert rec.calls[-1]["run"] == "level_01_random_mask"
    assert all(int(rm[n].sum()) == int(ticket[n].sum()) for n in ticket)
    lt.run_control(1, "reinit")
    assert rec.calls[-1]["run"] == "level_01_reinit"
    assert all(torch.equal(rec.calls[-1]["masks"][n], ticket[n]) for n in ticket)
    with pytest.raises(ValueError, match="control kind"):
        lt.run_control(1, "shuffle")
