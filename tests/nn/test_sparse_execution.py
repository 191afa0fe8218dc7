"""``DynamicSparsity(execution="sparse"|"auto")``: the engine on sparse modules.

The reference is the same sparsifier in ``execution="masked"`` (itself checked against hand
computations in tests/core): from the same seed and masks both modes must give the same losses,
the same topology after every update and the same exploration statistics.
"""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.kernels import set_backend
from sparsetime.nn import SparseConv2d, SparseLinear


@pytest.fixture
def engine_backend(backend):
    set_backend(backend)
    yield backend
    set_backend("auto")


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5)).double()


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g, dtype=torch.float64)
    y = (x[:, :5].sum(1) * 2 + x[:, 5]).floor().long().clamp(-2, 2) + 2
    return x, y


def _fit(model, opt, sp, x, y, t0, t1, batch, on_update=None):
    """Steps t0..t1 on the batches x[t*batch : (t+1)*batch] (wrapping); returns the losses."""
    losses = []
    for t in range(t0, t1 + 1):
        idx = torch.arange(t * batch, (t + 1) * batch) % x.shape[0]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sp.step() is not None and on_update is not None:
            on_update()
        losses.append(loss.item())
    return losses


def _train(execution, growth="random", optimizer="sgd", steps=300, delta_t=25, batch=16, **kw):
    model = _mlp()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sp = st.DynamicSparsity(model, opt, density=0.2, distribution="erk", growth=growth, drop_fraction=0.3,
                            update_interval=delta_t, total_steps=steps, seed=3, execution=execution, **kw)
    x, y = _data()
    topologies = []
    losses = _fit(model, opt, sp, x, y, 1, steps, batch,
                  on_update=lambda: topologies.append({n: sp.active_indices(n).clone() for n in sp.layer_names}))
    return torch.tensor(losses), topologies, sp, model, opt


@pytest.mark.parametrize("growth", ["random", "unexplored", "gradient"])
def test_sparse_execution_reproduces_masked_training(engine_backend, one_thread, growth):
    lm, topo_m, sm, _, _ = _train("masked", growth)
    ls, topo_s, ss, model, opt = _train("sparse", growth)
    assert set(ss.layer_execution.values()) == {"sparse"} and set(sm.layer_execution.values()) == {"masked"}
    assert all(isinstance(model[i], SparseLinear) for i in (0, 2, 4))
    assert len(topo_m) == len(topo_s) == 300 // 25
    for a, b in zip(topo_m, topo_s):
        for n in a:
            assert torch.equal(a[n], b[n]), f"topologies differ in {n}"
    torch.testing.assert_close(ls, lm, rtol=1e-9, atol=1e-9)
    assert ls[-30:].mean() < ls[:30].mean()
    st_m, st_s = sm.exploration_stats(), ss.exploration_stats()
    assert st_m == st_s  # integer counts: exactly equal
    assert st_s["dropped_grown_weights"] > 0 and st_s["itop_rate"] > 0.2
    assert sm.update_history == ss.update_history
    assert sm.layer_report() != [] and [r["active"] for r in sm.layer_report()] == [
        r["active"] for r in ss.layer_report()]
    # nothing dense is left: optimizer state is O(nnz) and the masks agree with the CSR patterns
    for i, name in ((0, "0.weight"), (2, "2.weight"), (4, "4.weight")):
        values = model[i].weight_values
        assert opt.state[values]["momentum_buffer"].shape == values.shape == (ss.counts[name],)
        assert torch.equal(ss.masks[name], sm.masks[name])
        assert torch.equal(ss.fired_masks[name], sm.fired_masks[name])


def test_adam_state_is_carried_and_zeroed_like_masked(one_thread):
    lm, _, sm, _, _ = _train("masked", optimizer="adam", steps=120, delta_t=20)
    ls, _, ss, model, opt = _train("sparse", optimizer="adam", steps=120, delta_t=20)
    torch.testing.assert_close(ls, lm, rtol=1e-9, atol=1e-9)
    assert opt.state[model[2].weight_values]["exp_avg_sq"].numel() == ss.counts["2.weight"]


def test_regrow_dropped_false_matches_masked(one_thread):
    lm, tm, _, _, _ = _train("masked", steps=100, regrow_dropped=False)
    ls, ts, _, _, _ = _train("sparse", steps=100, regrow_dropped=False)
    torch.testing.assert_close(ls, lm, rtol=1e-9, atol=1e-9)
    assert all(torch.equal(a[n], b[n]) for a, b in zip(tm, ts) for n in a)


@pytest.mark.parametrize("kernels", ["numba", "torch"])
@pytest.mark.parametrize("growth", ["random", "gradient"])
def test_conv_net_sparse_matches_masked(one_thread, growth, kernels, monkeypatch):
    """Also without numba: RigL's block-wise gradient score of a sparse conv then reads what the
    torch fallback captured, and the layers still run sparse (no fall back to masked)."""
    if kernels == "torch":
        monkeypatch.setenv("SPARSETIME_DISABLE_NUMBA", "1")

    def run(execution):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2),
                              nn.ReLU(), nn.Flatten(), nn.Linear(16 * 3 * 3, 4)).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        sp = st.DynamicSparsity(model, opt, density=0.3, distribution="uniform", update_interval=10,
                                total_steps=60, execution=execution, seed=1, growth=growth)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 3, 8, 8, generator=g, dtype=torch.float64)
        y = torch.randint(0, 4, (64,), generator=g)
        return torch.tensor(_fit(model, opt, sp, x, y, 0, 59, 8)), sp, model

    lm, sm, _ = run("masked")
    ls, ss, model = run("sparse")
    assert isinstance(model[0], SparseConv2d) and isinstance(model[2], SparseConv2d)
    assert isinstance(model[5], SparseLinear)
    assert set(ss.layer_execution.values()) == {"sparse"}
    torch.testing.assert_close(ls, lm, rtol=1e-9, atol=1e-9)
    assert all(torch.equal(ss.masks[n], sm.masks[n]) for n in sm.layer_names)


def test_checkpoint_resume_in_sparse_mode_is_exact(one_thread):
    full, _, s_full, m_full, _ = _train("sparse", steps=80, delta_t=10)

    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    kw = dict(density=0.2, distribution="erk", growth="random", drop_fraction=0.3, update_interval=10,
              total_steps=80, seed=3, execution="sparse")
    sp = st.DynamicSparsity(model, opt, **kw)
    x, y = _data()
    losses = _fit(model, opt, sp, x, y, 1, 35, 16)
    saved = {"model": model.state_dict(), "opt": opt.state_dict(), "sp": sp.state_dict()}
    # a fresh process: new model, optimizer and sparsifier (different random topology), then load
    model2 = _mlp(seed=5)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sp2 = st.DynamicSparsity(model2, opt2, **{**kw, "seed": 11})
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sp2.load_state_dict(saved["sp"])
    losses += _fit(model2, opt2, sp2, x, y, 36, 80, 16)
    torch.testing.assert_close(torch.tensor(losses), full, rtol=0, atol=0)
    assert sp2.exploration_stats() == s_full.exploration_stats()
    assert all(torch.equal(sp2.active_indices(n), s_full.active_indices(n)) for n in sp2.layer_names)
    assert "masks" not in saved["sp"] and set(saved["sp"]["active"]) == set(sp.layer_names)


def test_masked_state_loads_into_sparse_engine_and_back(one_thread):
    _, _, sm, _, _ = _train("masked", steps=60, delta_t=10)
    state = sm.state_dict()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sp = st.DynamicSparsity(model, opt, density=0.2, update_interval=10, total_steps=60, execution="sparse")
    sp.load_state_dict(state)
    assert sp.exploration_stats() == sm.exploration_stats()
    for n in sm.layer_names:
        assert torch.equal(sp.masks[n], sm.masks[n])
        assert torch.equal(sp.fired_masks[n], sm.fired_masks[n])
        assert sp.layer_exploration_rates()[n] == sm.layer_exploration_rates()[n]
    model_b = _mlp()
    back = st.DynamicSparsity(model_b, torch.optim.SGD(model_b.parameters(), lr=0.1), density=0.2,
                              update_interval=10, total_steps=60, execution="masked")
    back.load_state_dict(sp.state_dict())
    assert back.exploration_stats() == sm.exploration_stats()
    assert all(torch.equal(back.masks[n], sm.masks[n]) for n in sm.layer_names)
    assert all(torch.equal(back.tracker.births(n), sm.tracker.births(n)) for n in sm.layer_names)


def test_prebuilt_sparse_modules_are_driven_without_a_dense_form(one_thread):
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(SparseLinear(20, 300, 0.05, generator=gen), nn.ReLU(),
                          SparseLinear(300, 5, 0.2, generator=gen))
    nnz = [model[0].nnz, model[2].nnz]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sp = st.DynamicSparsity(model, opt, update_interval=5, drop_fraction=0.5, drop_schedule="constant")
    assert sp.layer_names == ["0.weight", "2.weight"] and sp.density() == pytest.approx(sum(nnz) / (6000 + 1500))
    before = model[0].flat_indices().clone()
    x, y = _data()
    for t in range(10):
        loss = F.cross_entropy(model(x[:32].float()), y[:32])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sp.step()
    assert [model[0].nnz, model[2].nnz] == nnz
    assert len(sp.update_history) == 2
    # k = floor(0.5 * nnz) replaced per update; overlap with the start is what survived
    assert sp.update_history[0]["dropped"] == nnz[0] // 2 + nnz[1] // 2
    assert not torch.equal(before, model[0].flat_indices())
    assert sp.exploration_rate() > sum(nnz) / 7500


def test_cuda_like_device_falls_back_to_masked_with_a_warning(monkeypatch):
    from sparsetime.nn import SparseExecution

    monkeypatch.setattr(SparseExecution, "supports_device", lambda self, device: False)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="no sparse kernels on"):
        sp = st.DynamicSparsity(model, opt, density=0.1, execution="sparse", update_interval=None)
    assert set(sp.layer_execution.values()) == {"masked"} and isinstance(model[0], nn.Linear)


def test_tied_weights_stay_masked():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    model[2].weight = model[0].weight
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match=r"0\.weight: weight tied with 2"):
        sp = st.DynamicSparsity(model, opt, density=0.3, execution="sparse", update_interval=None)
    assert sp.layer_execution == {"0.weight": "masked"} and model[2].weight is model[0].weight


def test_layers_without_kernels_stay_masked_with_a_warning():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match=r"1\.weight: Conv2d with groups=2"):
        sp = st.DynamicSparsity(model, opt, density=0.3, execution="sparse", update_interval=None)
    assert sp.layer_execution == {"0.weight": "sparse", "1.weight": "masked", "3.weight": "sparse"}
    out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(growth="momentum"), "execution='sparse' cannot run growth='momentum'"),
    (dict(redistribution=True), "cannot run redistribution=True"),
    (dict(growth="gradient", grad_accumulation=2), "grad_accumulation=2"),
])
def test_sparse_execution_rejects_dense_only_options(kwargs, message):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=message):
        st.DynamicSparsity(model, opt, density=0.1, execution="sparse", update_interval=10, total_steps=100,
                           **kwargs)
    assert isinstance(model[0], nn.Linear)  # nothing was converted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sp = st.DynamicSparsity(model, opt, density=0.1, execution="auto", update_interval=10, total_steps=100,
                                **kwargs)
    assert set(sp.layer_execution.values()) == {"masked"}


def test_auto_runs_large_sparse_layers_sparse_and_the_rest_masked():
    # 1024x1024 = 2^20 weights >= 2^18 at density 0.04 (<= 0.15 with numba, <= 0.05 without): sparse;
    # 1024x8 (8192 weights): masked
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sp = st.DynamicSparsity(model, opt, density=0.04, distribution="uniform", execution="auto", update_interval=None)
    assert sp.layer_execution == {"0.weight": "sparse", "2.weight": "masked"}
    dense_model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 8))
    sp2 = st.DynamicSparsity(dense_model, torch.optim.SGD(dense_model.parameters(), lr=0.1), density=0.5,
                             distribution="uniform", execution="auto", update_interval=None)
    assert set(sp2.layer_execution.values()) == {"masked"}


def test_a_pinned_plan_replaces_the_auto_rule_and_a_saved_model_reloads_with_it(one_thread):
    # auto alone keeps this small MLP masked (4096 weights < 2^18); the plan saved with a model whose
    # middle layer ran sparse rebuilds exactly that model, whose state_dict then loads
    kw = dict(density=0.1, distribution="uniform", growth="random", update_interval=10, total_steps=60, seed=3)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sp = st.DynamicSparsity(model, opt, execution="auto", **kw)
    assert set(sp.layer_execution.values()) == {"masked"}
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sp = st.DynamicSparsity(model, opt, execution="auto", sparse_layers=["2.weight"], **kw)
    assert sp.layer_execution == {"0.weight": "masked", "2.weight": "sparse", "4.weight": "masked"}
    x, y = _data()
    _fit(model, opt, sp, x, y, 1, 25, 16)
    saved = {"model": model.state_dict(), "opt": opt.state_dict(), "sp": sp.state_dict()}
    assert st.nn.stored_sparse_layers(saved["model"]) == {"2.weight"}
    model2 = _mlp(seed=5)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.05, momentum=0.9)
    sp2 = st.DynamicSparsity(model2, opt2, execution="auto",
                             sparse_layers=st.nn.stored_sparse_layers(saved["model"]), **kw)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sp2.load_state_dict(saved["sp"])
    assert isinstance(model2[2], SparseLinear) and isinstance(model2[0], nn.Linear)
    torch.testing.assert_close(model2(x[:8]), model(x[:8]), rtol=0, atol=0)
    # "sparse" takes a plan too: the unnamed layers stay masked
    model3 = _mlp()
    sp3 = st.DynamicSparsity(model3, torch.optim.SGD(model3.parameters(), lr=0.1), execution="sparse",
                             sparse_layers=set(), **kw)
    assert set(sp3.layer_execution.values()) == {"masked"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(sparse_layers=["2.weight", "9.weight"]), r"sparse_layers names 9\.weight, which are not sparse layers"),
    (dict(sparse_layers="2.weight"), "sparse_layers must be a collection of weight names"),
    (dict(sparse_layers=["2.weight"], execution="masked"), "needs execution='auto' or 'sparse'"),
    (dict(sparse_layers=["2.weight"], growth="momentum"), r"pins 2\.weight to sparse execution, which cannot run"),
])
def test_bad_pinned_plans_are_refused_before_the_model_changes(kwargs, message):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=message):
        st.DynamicSparsity(model, opt, density=0.1, update_interval=10, total_steps=100,
                           **{"execution": "auto", **kwargs})
    assert all(isinstance(model[i], nn.Linear) for i in (0, 2, 4))


def test_a_pinned_layer_without_kernels_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=2))
    with pytest.raises(ValueError, match=r"pins 1\.weight to sparse execution, but it cannot run sparse: Conv2d "
                                         "with groups=2"):
        st.DynamicSparsity(model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.3, execution="auto",
                           sparse_layers=["1.weight"], update_interval=None)


def test_bias_and_optimizer_references_survive_conversion():
    model = _mlp()
    bias = model[0].bias
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sp = st.DynamicSparsity(model, opt, density=0.1, execution="sparse", update_interval=None)
    assert model[0].bias is bias
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == 6 and any(p is model[0].weight_values for p in params)
    assert all(p.dim() == 1 for p in params)  # no dense weight is left in the optimizer
    assert sp.density() == pytest.approx(sum(sp.counts.values()) / (20 * 64 + 64 * 64 + 64 * 5))
