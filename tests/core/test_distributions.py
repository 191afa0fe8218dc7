"""Layer densities against hand computations and exact counts."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from torch import nn

import sparsetime as st
from sparsetime.core.distributions import active_count, compute_densities

SHAPES = {"fc1.weight": (100, 784), "fc2.weight": (100, 100), "fc3.weight": (10, 100)}


def test_erk_three_layers_by_hand():
    # p = (in + out) / (in * out): 884/78400, 200/10000, 110/1000; N = 78400, 10000, 1000
    # eps = 0.1 * 89400 / (884 + 200 + 110) = 8940 / 1194
    d = compute_densities(SHAPES, 0.1, "erk")
    eps = 8940 / 1194
    assert d["fc1.weight"] == pytest.approx(eps * 884 / 78400, rel=1e-12)
    assert d["fc2.weight"] == pytest.approx(eps * 0.02, rel=1e-12)
    assert d["fc3.weight"] == pytest.approx(eps * 0.11, rel=1e-12)


def test_erk_caps_the_densest_layer_and_keeps_the_budget():
    # at 0.2, eps * 0.11 = 17880/1194 * 0.11 > 1: fc3 dense, the rest share 17880 - 1000
    d = compute_densities(SHAPES, 0.2, "erk")
    assert d["fc3.weight"] == 1.0
    eps = (17880 - 1000) / (884 + 200)
    assert d["fc1.weight"] == pytest.approx(eps * 884 / 78400, rel=1e-12)
    assert d["fc2.weight"] == pytest.approx(eps * 0.02, rel=1e-12)
    used = sum(d[n] * math.prod(s) for n, s in SHAPES.items())
    assert used == pytest.approx(17880, rel=1e-12)


def test_erk_conv_uses_kernel_dims_and_er_does_not():
    shapes = {"conv.weight": (16, 8, 3, 3), "fc.weight": (10, 64)}
    erk = compute_densities(shapes, 0.1, "erk")
    er = compute_densities(shapes, 0.1, "er")
    total = 16 * 8 * 9 + 640
    p_erk = {"conv.weight": (16 + 8 + 3 + 3) / (16 * 8 * 9), "fc.weight": 74 / 640}
    p_er = {"conv.weight": (16 + 8) / (16 * 8), "fc.weight": 74 / 640}
    for p, d in ((p_erk, erk), (p_er, er)):
        eps = 0.1 * total / (p["conv.weight"] * 1152 + p["fc.weight"] * 640)
        assert d["conv.weight"] == pytest.approx(min(1, eps * p["conv.weight"]))
        assert d["fc.weight"] == pytest.approx(min(1, eps * p["fc.weight"]))


def test_uniform_custom_and_full_density():
    assert set(compute_densities(SHAPES, 0.3, "uniform").values()) == {0.3}
    d = compute_densities(SHAPES, 0.1, {"fc3*": 1.0})
    rest = (8940 - 1000) / (78400 + 10000)
    assert d == pytest.approx({"fc1.weight": rest, "fc2.weight": rest, "fc3.weight": 1.0})
    assert set(compute_densities(SHAPES, 1.0, "erk").values()) == {1.0}


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "0.1", None, float("nan")])
def test_bad_density(bad):
    with pytest.raises(ValueError, match="density"):
        compute_densities(SHAPES, bad, "erk")


def test_bad_distribution_lists_allowed():
    with pytest.raises(ValueError, match="uniform, er, erk"):
        compute_densities(SHAPES, 0.1, "erdos")


def test_custom_budget_that_cannot_be_met():
    with pytest.raises(ValueError, match="must be in"):
        compute_densities(SHAPES, 0.05, {"fc1*": 1.0})


def test_layer_densities_on_model_with_dense_layers():
    model = nn.Sequential(nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
    d = st.layer_densities(model, 0.1, "erk", dense_layers=["4"])
    assert set(d) == {"0.weight", "2.weight"}
    eps = 0.1 * 88400 / (884 + 200)
    assert d["0.weight"] == pytest.approx(eps * 884 / 78400)
    with pytest.raises(ValueError, match="matches no sparsifiable layer"):
        st.layer_densities(model, 0.1, "erk", dense_layers=["fc9"])


@settings(max_examples=60, deadline=None)
@given(shapes=hs.lists(hs.tuples(hs.integers(1, 64), hs.integers(1, 64), hs.sampled_from([(), (1,), (3, 3)])),
                       min_size=1, max_size=6),
       density=hs.floats(0.001, 1.0), dist=hs.sampled_from(["uniform", "er", "erk"]))
def test_budget_is_met_and_counts_are_exact(shapes, density, dist):
    shp = {f"l{i}.weight": (o, i_) + k for i, (o, i_, k) in enumerate(shapes)}
    d = compute_densities(shp, density, dist)
    sizes = {n: math.prod(s) for n, s in shp.items()}
    assert all(0 < v <= 1 for v in d.values())
    total = sum(sizes.values())
    assert sum(d[n] * sizes[n] for n in shp) == pytest.approx(density * total, rel=1e-9, abs=1e-6)
    counts = [active_count(d[n], sizes[n]) for n in shp]
    assert abs(sum(counts) - density * total) <= len(shp)
