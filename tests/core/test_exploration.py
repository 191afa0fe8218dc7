"""Exploration metrics (Rs, lifetimes, survival) against bookkeeping done independently in the test."""
import pytest
import torch

import sparsetime as st

from helpers import make_model, make_optimizer, train_steps


def test_rs_and_fired_masks_match_independent_or_of_masks():
    torch.manual_seed(0)
    model, shape, classes = make_model("resconv")
    opt = make_optimizer("sgd_momentum_wd", model.parameters())
    sp = st.DynamicSparsity(model, opt, density=0.1, update_interval=3, total_steps=30, seed=1)
    fired = {n: m.clone() for n, m in sp.masks.items()}
    total = sum(m.numel() for m in fired.values())
    assert sp.exploration_rate() == pytest.approx(sp.density())
    rates = [sp.exploration_rate()]

    def on_step(before, stats):
        for n, m in sp.masks.items():
            fired[n] |= m
        rates.append(sp.exploration_rate())

    train_steps(model, opt, sp, 30, shape, classes, on_step=on_step)
    assert all(b >= a for a, b in zip(rates, rates[1:]))
    expect = sum(int(f.sum()) for f in fired.values()) / total
    assert sp.exploration_rate() == pytest.approx(expect, abs=0)
    assert sp.exploration_rate() <= 1.0
    per_layer = sp.layer_exploration_rates()
    for n, f in fired.items():
        assert per_layer[n] == int(f.sum()) / f.numel()
    assert [r["itop_rate"] for r in sp.layer_report()] == [per_layer[n] for n in fired]


def test_lifetimes_survival_and_hamming_against_independent_births():
    torch.manual_seed(0)
    model, shape, classes = make_model("mlp")
    opt = make_optimizer("sgd", model.parameters())
    interval = 4
    sp = st.DynamicSparsity(model, opt, density=0.2, update_interval=interval, drop_schedule="constant",
                            drop_fraction=0.4, seed=3, regrow_dropped=False)
    birth = {n: torch.full(m.shape, -1) for n, m in sp.masks.items()}
    lifetimes: dict[int, int] = {}
    surv = {"checked": 0, "survived": 0}
    last_update = [-1]
    total = sum(m.numel() for m in sp.masks.values())

    def on_step(before, stats):
        if stats is None:
            return
        step = stats["step"]
        xor = 0
        for n, new in sp.masks.items():
            old = before[n]
            xor += int((old ^ new).sum())
            dropped = old & ~new  # regrow_dropped=False: nothing is regrown in place
            grown = new & ~old
            prev = birth[n] == last_update[0]
            if last_update[0] >= 0 and int(prev.sum()):
                surv["checked"] += int(prev.sum())
                surv["survived"] += int((prev & ~dropped).sum())
            b = birth[n][dropped]
            for life in (step - b[b >= 0]).tolist():
                lifetimes[life] = lifetimes.get(life, 0) + 1
            birth[n][dropped] = -1
            birth[n][grown] = step
        assert stats["hamming"] == pytest.approx(xor / total)
        last_update[0] = step

    train_steps(model, opt, sp, 40, shape, classes, on_step=on_step)
    got = sp.exploration_stats()
    assert got["lifetime_histogram"] == dict(sorted(lifetimes.items()))
    assert all(life % interval == 0 for life in lifetimes)
    assert got["survival_fraction"] == pytest.approx(surv["survived"] / surv["checked"])
    assert 0.0 <= got["reliable_fraction"] <= 1.0
    assert len(sp.update_history) == 10


def test_static_sparse_never_updates():
    torch.manual_seed(0)
    model, shape, classes = make_model("mlp")
    opt = make_optimizer("adam", model.parameters())
    sp = st.DynamicSparsity(model, opt, density=0.2, update_interval=None)
    first = {n: m.clone() for n, m in sp.masks.items()}
    train_steps(model, opt, sp, 10, shape, classes)
    assert all(torch.equal(first[n], m) for n, m in sp.masks.items())
    assert sp.exploration_rate() == pytest.approx(sp.density())
    assert sp.update_history == []


def test_update_steps_and_cosine_schedule_by_hand():
    torch.manual_seed(0)
    model, _, _ = make_model("mlp")
    opt = make_optimizer("sgd", model.parameters())
    sp = st.DynamicSparsity(model, opt, density=0.2, update_interval=10, total_steps=100, stop_fraction=0.75,
                            drop_fraction=0.3, start_step=10)
    assert [t for t in range(1, 101) if sp.is_update_step(t)] == [20, 30, 40, 50, 60, 70]
    # cosine: f(t) = 0.3/2 * (1 + cos(pi t / 75))
    import math
    assert sp.drop_fraction_at(30) == pytest.approx(0.15 * (1 + math.cos(math.pi * 30 / 75)))
    assert sp.drop_fraction_at(0) == pytest.approx(0.3)
    sp2 = st.SET(model, opt, 0.2, total_steps=1000)
    assert sp2.drop_fraction_at(1000) == pytest.approx(0.005)
    sp3 = st.DynamicSparsity(model, opt, density=0.2, drop_schedule="linear", drop_fraction=0.5,
                             min_drop_fraction=0.1, total_steps=100)
    assert sp3.drop_fraction_at(25) == pytest.approx(0.5 - 0.4 * 0.25)


def test_survival_counts_layers_that_drop_nothing_at_an_update():
    """Regression: a layer whose drop count is 0 at an update was skipped, so the weights it grew at
    the previous update were never counted as survivors."""
    torch.manual_seed(0)
    model, shape, classes = make_model("mlp")  # 600, 900 and 150 weights
    opt = make_optimizer("sgd", model.parameters())
    # linear decay 0.5 -> 0 over 42 steps: at step 40, f = 0.024 drops floor(0.024 * 30) = 0 of the
    # last layer's 30 weights but 2 and 4 of the others
    sp = st.DynamicSparsity(model, opt, density=0.2, distribution="uniform", update_interval=4, total_steps=42,
                            drop_schedule="linear", drop_fraction=0.5, seed=3, regrow_dropped=False)
    birth = {n: torch.full(m.shape, -1) for n, m in sp.masks.items()}
    surv = {"checked": 0, "survived": 0}
    last_update = [-1]
    unchanged_layers = []

    def on_step(before, stats):
        if stats is None:
            return
        for n, new in sp.masks.items():
            old = before[n]
            dropped, grown = old & ~new, new & ~old
            if not dropped.any():
                unchanged_layers.append((stats["step"], n))
            prev = birth[n] == last_update[0]
            if last_update[0] >= 0:
                surv["checked"] += int(prev.sum())
                surv["survived"] += int((prev & ~dropped).sum())
            birth[n][dropped] = -1
            birth[n][grown] = stats["step"]
        last_update[0] = stats["step"]

    train_steps(model, opt, sp, 40, shape, classes, on_step=on_step)
    assert (40, "4.weight") in unchanged_layers and sp.update_history[-1]["dropped"] == 6
    got = sp.exploration_stats()
    assert surv["checked"] > 0
    assert got["survival_fraction"] == pytest.approx(surv["survived"] / surv["checked"])
    assert sp.tracker.grown_checked == surv["checked"]
