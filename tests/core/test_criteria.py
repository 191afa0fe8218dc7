"""Criteria as registered records: SET's two-sided negativity drop, custom criteria in both modes."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.core import criteria


def _view(values):
    w = torch.tensor(values, dtype=torch.float64)
    ones = torch.ones(w.shape, dtype=torch.bool)
    return st.LayerView(name="w", weight=w, mask=ones, fired=ones, generator=torch.Generator().manual_seed(0))


def _negativity(values, k):
    picked = criteria.get_drop("negativity").choose(_view(values), k, torch.Generator().manual_seed(0))
    return sorted(values[i] for i in picked.tolist())


def test_negativity_drops_the_weights_closest_to_zero_on_each_side():
    """Regression (sparse_learning #19): on [-5, -0.1, 0.1, 5] with k=2 the old rule dropped -5 and -0.1."""
    assert _negativity([-5.0, -0.1, 0.1, 5.0], 2) == [-0.1, 0.1]
    # ceil(k/2) from the non-negative side, floor(k/2) from the negative side
    assert _negativity([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], 3) == [-1.0, 1.0, 2.0]
    assert _negativity([-3.0, -2.0, -1.0, 0.0, 2.0, 3.0], 4) == [-2.0, -1.0, 0.0, 2.0]
    # one side too short: the other gives the rest
    assert _negativity([-4.0, 1.0, 2.0, 3.0, 4.0], 4) == [-4.0, 1.0, 2.0, 3.0]
    assert _negativity([-4.0, -3.0, -2.0, 7.0], 3) == [-3.0, -2.0, 7.0]


def test_negativity_in_the_engine_by_hand():
    model = nn.Sequential(nn.Linear(8, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[-5.0, 9.0, -0.1, 9.0, 0.1, 9.0, 5.0, 9.0]]))
    mask = torch.tensor([[True, False, True, False, True, False, True, False]])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sp = st.DynamicSparsity(model, opt, initial_masks={"0.weight": mask}, drop="negativity", drop_fraction=0.5,
                            drop_schedule="constant", update_interval=1, regrow_dropped=False)
    sp.step()
    new = sp.masks["0.weight"][0]
    assert new[0] and new[6] and not new[2] and not new[4]  # -5 and 5 kept, -0.1 and 0.1 dropped
    assert int(new.sum()) == 4


def test_growth_records_say_what_they_need_and_where_they_run():
    assert criteria.get_growth("gradient").needs == "grad" and criteria.get_growth("gradient").runs_sparse
    assert criteria.get_growth("momentum").needs == "momentum" and not criteria.get_growth("momentum").runs_sparse
    assert criteria.get_growth("random").sampler is not None
    with pytest.raises(ValueError, match="unknown growth 'nope'; allowed: random, gradient"):
        criteria.get_growth("nope")
    with pytest.raises(ValueError, match="needs must be one of"):
        criteria.register_growth_criterion(criteria.GrowthCriterion("bad", score=lambda v: v.weight, needs="hessian"))


def _fit(model, opt, sp, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 12, generator=g, dtype=torch.float64)
        y = torch.randint(0, 4, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sp.step()


def test_a_gradient_scored_criterion_runs_in_both_modes_with_the_same_topology(one_thread):
    """A criterion given as an elementwise function of the gradient needs no special case: masked
    layers score the dense gradient, sparse layers the same function in row blocks."""
    criteria.register_growth_criterion(criteria.GrowthCriterion("squared_gradient", grad_score=torch.square,
                                                                needs="grad"))
    try:
        runs = {}
        for execution in ("masked", "sparse"):
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 4)).double()
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            sp = st.DynamicSparsity(model, opt, density=0.3, growth="squared_gradient", update_interval=4,
                                    total_steps=24, seed=2, execution=execution)
            _fit(model, opt, sp, 24)
            runs[execution] = sp
        assert set(runs["sparse"].layer_execution.values()) == {"sparse"}
        assert len(runs["masked"].update_history) == 6
        for n in runs["masked"].layer_names:
            assert torch.equal(runs["masked"].active_indices(n), runs["sparse"].active_indices(n))
    finally:
        criteria.GROWTH.pop("squared_gradient")


def test_a_dense_score_criterion_is_refused_by_sparse_execution():
    @st.register_growth("noisy_magnitude", needs="grad")
    def noisy(view):
        return view.grad.abs() + 1e-3 * view.uniform()

    try:
        model = nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 4)).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with pytest.raises(ValueError, match="growth='noisy_magnitude' .*supports gradient, random, unexplored"):
            st.DynamicSparsity(model, opt, density=0.3, growth="noisy_magnitude", execution="sparse",
                               update_interval=4, drop_schedule="constant")
        sp = st.DynamicSparsity(model, opt, density=0.3, growth="noisy_magnitude", update_interval=2,
                                drop_schedule="constant", drop_fraction=0.5)
        _fit(model, opt, sp, 4)
        assert sp.update_history[-1]["grown"] == sum(math.floor(0.5 * c) for c in sp.counts.values())
    finally:
        criteria.GROWTH.pop("noisy_magnitude")
