"""masks_from_scores, magnitude pruning and apply_masks: exact counts, thresholds, collapse, bad input."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

import sparsetime.pruning as P


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))


shapes = st.lists(st.tuples(st.integers(1, 7), st.integers(1, 7)), min_size=1, max_size=4)


@settings(max_examples=30, deadline=None)
@given(shapes=shapes, density=st.floats(0.05, 1.0), seed=st.integers(0, 1000))
def test_global_count_exact_and_threshold(shapes, density, seed):
    g = torch.Generator().manual_seed(seed)
    scores = {f"l{i}.weight": torch.randn(s, generator=g) for i, s in enumerate(shapes)}
    total = sum(a * b for a, b in shapes)
    masks = P.masks_from_scores(scores, density, allow_collapse=True)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == round(density * total)
    # one threshold: every kept score >= every dropped score
    flat_s = torch.cat([s.flatten() for s in scores.values()])
    flat_m = torch.cat([m.flatten() for m in masks.values()])
    if 0 < kept < total:
        assert flat_s[flat_m].min() >= flat_s[~flat_m].max()


@settings(max_examples=30, deadline=None)
@given(shapes=shapes, density=st.floats(0.05, 1.0), seed=st.integers(0, 1000))
def test_layer_count_exact_per_layer(shapes, density, seed):
    g = torch.Generator().manual_seed(seed)
    scores = {f"l{i}.weight": torch.randn(s, generator=g) for i, s in enumerate(shapes)}
    masks = P.masks_from_scores(scores, density, scope="layer", allow_collapse=True)
    for name, s in scores.items():
        m = masks[name]
        assert int(m.sum()) == round(density * s.numel())
        if 0 < int(m.sum()) < m.numel():
            assert s[m].min() >= s[~m].max()


def test_ties_keep_exact_count_with_seeded_tiebreak():
    scores = {"a.weight": torch.ones(4, 5), "b.weight": torch.ones(3, 5)}
    m1 = P.masks_from_scores(scores, 0.4, generator=torch.Generator().manual_seed(1))
    m2 = P.masks_from_scores(scores, 0.4, generator=torch.Generator().manual_seed(1))
    assert sum(int(m.sum()) for m in m1.values()) == 14  # round(0.4 * 35)
    assert all(torch.equal(m1[k], m2[k]) for k in m1)


def test_layer_collapse_is_an_error_naming_the_layer():
    scores = {"big.weight": torch.arange(1.0, 101.0), "small.weight": torch.full((10,), -1.0)}
    with pytest.raises(ValueError, match="small.weight"):
        P.masks_from_scores(scores, 0.5)
    masks = P.masks_from_scores(scores, 0.5, allow_collapse=True)
    assert int(masks["small.weight"].sum()) == 0 and int(masks["big.weight"].sum()) == 55


@pytest.mark.parametrize("density", [0, 0.0, -0.1, 1.5, float("nan"), "0.5", None, True])
def test_bad_density(density):
    with pytest.raises(ValueError, match="density"):
        P.masks_from_scores({"a.weight": torch.randn(3, 3)}, density)


def test_bad_scope_and_scores():
    with pytest.raises(ValueError, match="scope"):
        P.masks_from_scores({"a.weight": torch.randn(3, 3)}, 0.5, scope="network")
    with pytest.raises(ValueError, match="scores"):
        P.masks_from_scores({}, 0.5)


def test_global_magnitude_matches_torch_global_unstructured():
    model = _mlp(3)
    density = 0.3
    masks = P.magnitude_prune(model, density)
    reference = _mlp(3)
    params = [(m, "weight") for m in reference if isinstance(m, nn.Linear)]
    total = sum(m.weight.numel() for m, _ in params)
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured,
                                    amount=total - round(density * total))
    for (name, mask), (module, _) in zip(masks.items(), params):
        assert torch.equal(mask, module.weight_mask.bool()), name


def test_layer_magnitude_matches_torch_l1_unstructured():
    model = _mlp(4)
    masks = P.magnitude_prune(model, 0.25, scope="layer")
    reference = _mlp(4)
    for name, module in [("0.weight", reference[0]), ("2.weight", reference[2]), ("4.weight", reference[4])]:
        n = module.weight.numel()
        torch_prune.l1_unstructured(module, "weight", amount=n - round(0.25 * n))
        assert torch.equal(masks[name], module.weight_mask.bool()), name


def test_dense_classifier_excluded():
    masks = P.magnitude_prune(_mlp(), 0.5, dense_last=True)
    assert list(masks) == ["0.weight", "2.weight"]


def test_no_sparsifiable_layer():
    model = nn.Sequential(nn.BatchNorm1d(4))
    for method in P.METHODS:
        with pytest.raises(ValueError, match="no sparsifiable layer"):
            P.scores(model, method, [(torch.randn(2, 4), torch.tensor([0, 1]))], **(
                {"density": 0.5} if method == "synflow" else {}))
    with pytest.raises(ValueError, match="no sparsifiable layer"):
        P.magnitude_prune(model, 0.5)


def test_unknown_method_and_option():
    with pytest.raises(ValueError, match="allowed"):
        P.scores(_mlp(), "obd")
    with pytest.raises(ValueError, match="num_batchez"):
        P.scores(_mlp(), "snip", [(torch.randn(2, 6), torch.tensor([0, 1]))], num_batchez=2)


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
def test_apply_masks_zeroes_weights_and_optimizer_state(opt_cls):
    model = _mlp(5)
    kwargs = {"lr": 0.1, "momentum": 0.9} if opt_cls is torch.optim.SGD else {"lr": 0.01}
    opt = opt_cls(model.parameters(), **kwargs)
    torch.nn.functional.cross_entropy(model(torch.randn(4, 6)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    masks = P.magnitude_prune(model, 0.2)
    P.apply_masks(model, masks, opt)
    params = dict(model.named_parameters())
    for name, m in masks.items():
        assert (params[name][~m] == 0).all()
        assert (params[name][m] != 0).all()
        state = opt.state[params[name]]
        shaped = [v for v in state.values() if torch.is_tensor(v) and v.shape == m.shape]
        assert shaped, "optimizer state was expected"
        for v in shaped:
            assert (v[~m] == 0).all()
    assert math.isclose(P.mask_density(masks), round(0.2 * 164) / 164)  # 6*10 + 10*8 + 8*3 weights


def test_apply_masks_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        P.apply_masks(_mlp(), {"0.weight": torch.ones(3, 3, dtype=torch.bool)})


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(-5, 5), min_size=1, max_size=60, unique=True), data=st.data())
def test_topk_mask_matches_select_topk_on_distinct_scores(values, data):
    from sparsetime.core.topk import select_topk

    scores = torch.tensor(values, dtype=torch.float64)
    k = data.draw(st.integers(0, len(values)))
    expected = torch.zeros(len(values), dtype=torch.bool)
    expected[select_topk(scores, k)] = True
    assert torch.equal(P.topk_masks({"w": scores}, k)["w"], expected)


def test_nan_scores_rank_last():
    scores = {"w": torch.tensor([0.5, float("nan"), -3.0, float("nan"), 2.0])}
    assert P.topk_masks(scores, 3)["w"].tolist() == [True, False, True, False, True]
    assert int(P.topk_masks(scores, 4)["w"].sum()) == 4
