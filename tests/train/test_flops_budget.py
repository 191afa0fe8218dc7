"""Densities picked to meet an inference-FLOP budget (``sparsity.flops_fraction``)."""
import pytest

from sparsetime.core.distributions import compute_densities
from sparsetime.models import build_model
from sparsetime.train import load_config, train
from sparsetime.train.flops import count_layer_flops, density_for_flops, inference_flops


def _lenet():
    model = build_model("lenet5", (1, 28, 28), 10)
    flops = count_layer_flops(model, (1, 28, 28))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n in flops}
    return model, flops, shapes


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
@pytest.mark.parametrize("fraction", [0.05, 0.2])
def test_the_density_found_meets_the_budget(distribution, fraction):
    _, flops, shapes = _lenet()
    d = density_for_flops(flops, shapes, fraction, distribution)
    got = inference_flops(flops, compute_densities(shapes, d, distribution)) / sum(flops.values())
    assert got == pytest.approx(fraction, rel=1e-4)
    if distribution == "uniform":
        assert d == pytest.approx(fraction, rel=1e-4)  # every layer at d: the FLOPs fraction is d


def test_erk_needs_a_lower_density_than_uniform_for_the_same_flops():
    """ERK gives the small, FLOP-heavy convolutions more weights, so a FLOP budget buys fewer."""
    _, flops, shapes = _lenet()
    assert density_for_flops(flops, shapes, 0.1, "erk") < density_for_flops(flops, shapes, 0.1, "uniform")


def test_a_budget_below_the_dense_layers_is_refused():
    _, flops, shapes = _lenet()
    first = next(iter(shapes))
    with pytest.raises(ValueError, match="below the .* of dense FLOPs that the dense layers alone cost"):
        density_for_flops(flops, {n: s for n, s in shapes.items() if n != first}, 0.01, "erk")


def test_the_runner_trains_at_the_budgeted_density(tmp_path):
    overrides = ["dataset=synthetic", "data.options.train_size=64", "data.options.test_size=32",
                 "data.options.shape=[1,28,28]", "model=lenet5", "epochs=1", "batch_size=32",
                 "sparsity.flops_fraction=0.3", "sparsity.distribution=erk", f"output_dir={tmp_path}",
                 "progress=none", "device=cpu"]
    summary = train(load_config(None, overrides)).summary
    assert summary["inference_flops"] / summary["dense_inference_flops"] == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match="flops_fraction=0.3 needs a density distribution"):
        train(load_config(None, [*overrides, "sparsity.method=snip"]))
