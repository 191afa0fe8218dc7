"""Gradient machinery through real backward passes: RigL's accumulated dense gradient, its window,
the masking hook, and the re-mask on steps that keep dense gradients.

The reference gradients are computed independently in the test: the loss of each batch is
differentiated with ``torch.autograd.grad`` with respect to a detached copy of the weights (so no
hook of the engine runs on them), and the expected growth is the top-k of |mean of the window's
dense gradients| among the positions that are not kept, by an argsort.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st


def _setup(seed=0, **kw):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(24, 12, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sp = st.DynamicSparsity(model, opt, density=0.25, growth="gradient", drop_fraction=0.3,
                            drop_schedule="constant", seed=1, **kw)
    return model, opt, sp


def _train_recording(model, opt, sp, steps, seed=3):
    """Train ``steps`` real steps; returns per step: dense gradient (reference), the weights the
    sparsifier saw before its step, the mask before and after, and the update statistics."""
    g = torch.Generator().manual_seed(seed)
    w = model[0].weight
    records = []
    for _ in range(steps):
        x = torch.randn(16, 24, generator=g)
        y = torch.randint(0, 12, (16,), generator=g)
        ref_w = w.detach().clone().requires_grad_(True)
        (dense_grad,) = torch.autograd.grad(F.cross_entropy(x @ ref_w.t(), y), ref_w)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        before = sp.masks["0.weight"].clone()
        seen = w.detach().clone() * before  # what the drop step ranks (inactive entries are re-masked)
        stats = sp.step()
        records.append({"grad": dense_grad, "weights": seen, "old": before,
                        "new": sp.masks["0.weight"].clone(), "stats": stats})
    return records


def _expected_growth(rec, window_grads, k):
    """The k positions outside the kept set with the largest |mean window gradient|."""
    old = rec["old"].reshape(-1)
    active = old.nonzero().squeeze(1)
    mags = rec["weights"].reshape(-1)[active].abs()
    dropped = active[mags.argsort()[:k]]  # random weights: no ties
    kept = old.clone()
    kept[dropped] = False
    candidates = (~kept).nonzero().squeeze(1)
    score = torch.stack(window_grads).mean(0).abs().reshape(-1)[candidates]
    return set(candidates[score.argsort(descending=True)[:k]].tolist()), kept


@pytest.mark.parametrize("grad_masking", [True, False])
def test_accumulated_rigl_growth_uses_the_dense_gradients_of_the_last_g_steps(grad_masking):
    """Regression: with the masking hook, inactive gradients were zeroed before being accumulated,
    so growth saw only the last batch there while just-dropped weights kept the full sum."""
    g, interval = 3, 5
    model, opt, sp = _setup(update_interval=interval, total_steps=40, grad_accumulation=g,
                            grad_masking=grad_masking)
    assert sp.grad_masking is grad_masking
    records = _train_recording(model, opt, sp, 20)
    updates = [i for i, r in enumerate(records) if r["stats"] is not None]
    assert [i + 1 for i in updates] == [5, 10, 15, 20]
    for i in updates:
        rec = records[i]
        k = math.floor(0.3 * int(rec["old"].sum()))
        window = [records[j]["grad"] for j in range(i - g + 1, i + 1)]
        expect, kept = _expected_growth(rec, window, k)
        grown = set((rec["new"].reshape(-1) & ~kept.reshape(-1)).nonzero().squeeze(1).tolist())
        assert grown == expect, f"update at step {i + 1}"
        assert rec["stats"]["grown"] == rec["stats"]["dropped"] == k


def test_steps_that_keep_dense_gradients_still_leave_inactive_weights_and_state_at_zero():
    model, opt, sp = _setup(update_interval=5, total_steps=40, grad_accumulation=3)
    g = torch.Generator().manual_seed(0)
    w = model[0].weight
    for _ in range(12):
        x, y = torch.randn(16, 24, generator=g), torch.randint(0, 12, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sp.step()
        inactive = ~sp.masks["0.weight"]
        assert (w.detach()[inactive] == 0).all()
        assert (opt.state[w]["momentum_buffer"][inactive] == 0).all()


def test_accumulation_window_starts_after_start_step():
    """Regression: with start_step 10, ΔT 10 and g 2 the update at step 20 averaged the gradients
    of steps 9, 10, 19 and 20 (10 is no update step, so its window was never cleared)."""
    model, opt, sp = _setup(update_interval=10, total_steps=40, start_step=10, grad_accumulation=2)
    records = _train_recording(model, opt, sp, 20)
    assert [i + 1 for i, r in enumerate(records) if r["stats"] is not None] == [20]
    rec = records[19]
    k = math.floor(0.3 * int(rec["old"].sum()))
    expect, kept = _expected_growth(rec, [records[18]["grad"], records[19]["grad"]], k)
    grown = set((rec["new"].reshape(-1) & ~kept.reshape(-1)).nonzero().squeeze(1).tolist())
    assert grown == expect
    assert sp.state_dict()["grad_sum"] == {}


def test_nothing_is_accumulated_after_the_last_update():
    model, opt, sp = _setup(update_interval=5, total_steps=20, stop_fraction=0.5, grad_accumulation=2)
    records = _train_recording(model, opt, sp, 20)
    assert [i + 1 for i, r in enumerate(records) if r["stats"] is not None] == [5, 10]
    assert sp.state_dict()["grad_sum"] == {}  # steps 14-15 and 19-20 lead to no update


def test_accumulation_longer_than_the_interval_is_refused():
    model = nn.Sequential(nn.Linear(4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"grad_accumulation \(6\) must not exceed update_interval \(5\)"):
        st.DynamicSparsity(model, opt, density=0.5, growth="gradient", update_interval=5, grad_accumulation=6,
                           drop_schedule="constant")


def test_masking_hook_zeroes_inactive_gradients_between_updates():
    model, opt, sp = _setup(update_interval=5, total_steps=40)
    w = model[0].weight
    x, y = torch.randn(8, 24), torch.randint(0, 12, (8,))
    for step in range(1, 7):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        inactive = ~sp.masks["0.weight"]
        if step == 5:  # the update step keeps its dense gradient for RigL
            assert (w.grad[inactive] != 0).any()
        else:
            assert (w.grad[inactive] == 0).all()
        opt.step()
        sp.step()
