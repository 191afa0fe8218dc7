"""Model-level conversions: dense <-> sparse modules, dense state_dict, torch sparse tensors."""
import pytest
import torch
from torch import nn

from sparsetime.nn import (SparseConv2d, SparseLinear, dense_state_dict, densify, load_sparse_weights,
                           sparse_weights, sparsify)


def _model():
    """float64 throughout, so the conv kernels are JIT-compiled for one dtype only."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def _masks(model):
    g = torch.Generator().manual_seed(1)
    return {"0.weight": torch.rand(model[0].weight.shape, generator=g) < 0.5,
            "3": torch.rand(model[3].weight.shape, generator=g) < 0.3}


def test_sparsify_keeps_function_and_densify_inverts():
    dense = _model()
    masks = _masks(dense)
    with torch.no_grad():
        dense[0].weight.mul_(masks["0.weight"])
        dense[3].weight.mul_(masks["3"])
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    ref = dense(x)
    model = sparsify(_copy(dense), masks)
    assert isinstance(model[0], SparseConv2d) and isinstance(model[3], SparseLinear)
    assert isinstance(model[5], nn.Linear)
    torch.testing.assert_close(model(x), ref)
    back = densify(model)
    assert isinstance(back[0], nn.Conv2d) and isinstance(back[3], nn.Linear)
    torch.testing.assert_close(back(x), ref)
    with pytest.raises(ValueError, match="allowed"):
        sparsify(_model(), {"1": torch.ones(1)})


def test_dense_state_dict_loads_into_dense_architecture(tmp_path):
    sparse = sparsify(_model(), _masks(_model()))
    sd = dense_state_dict(sparse)
    assert list(sd) == list(_model().state_dict())
    path = tmp_path / "dense.pt"
    torch.save(sd, path)
    fresh = _model()
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(fresh(x), sparse(x))


def test_sparse_weights_round_trip():
    sparse = sparsify(_model(), _masks(_model()))
    tensors = sparse_weights(sparse)
    assert tensors["3.weight"].layout == torch.sparse_csr
    assert tensors["0.weight"].layout == torch.sparse_coo
    target = _model()
    load_sparse_weights(target, tensors)
    assert isinstance(target[3], SparseLinear) and isinstance(target[0], SparseConv2d)
    assert torch.equal(target[3].flat_indices(), sparse[3].flat_indices())
    with torch.no_grad():
        target[3].bias.copy_(sparse[3].bias)
        target[0].bias.copy_(sparse[0].bias)
        target[5].load_state_dict(sparse[5].state_dict())
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(target(x), sparse(x))
    with pytest.raises(ValueError, match="shape"):
        load_sparse_weights(_model(), {"5.weight": tensors["3.weight"]})


def _copy(model):
    clone = _model()
    clone.load_state_dict(model.state_dict())
    return clone


def test_auto_execution_heuristic():
    from sparsetime.kernels import numba_available, prefer_sparse, sparse_execution_supported
    assert sparse_execution_supported("cpu") and not sparse_execution_supported("cuda")
    assert not prefer_sparse((64, 64), 0.01)                   # small layer: overhead dominates
    assert not prefer_sparse((4096, 4096), 0.5)               # dense enough that matmul wins
    assert not prefer_sparse((4096, 4096), 0.01, "cuda")      # no CUDA kernels yet
    assert prefer_sparse((4096, 4096), 0.01)
    assert prefer_sparse((4096, 4096), 0.1) == numba_available()
    assert prefer_sparse((256, 256, 3, 3), 0.1) == numba_available()  # bench_conv: 1.6x at 0.1
    assert prefer_sparse((64, 64, 3, 3), 0.05) == numba_available()
    assert prefer_sparse((256, 256, 3, 3), 0.2) == numba_available()  # in-network (bench_cnn): layouts kept
    assert not prefer_sparse((256, 256, 3, 3), 0.3)                   # dense wins above
    assert prefer_sparse((512, 256, 1, 1), 0.45) == numba_available()  # a shortcut between sparse layers
    assert not prefer_sparse((512, 256, 1, 1), 0.6)                   # limit 2^16 / 2^17 weights = 0.5
    assert prefer_sparse((128, 64, 1, 1), 1.0) == numba_available()   # small 1x1: sparse even when dense
    assert not prefer_sparse((128, 64, 1, 1), 1.0, "cuda")
    assert prefer_sparse((16, 16, 3, 3), 0.05) == numba_available()   # small convs win at batch 128
    assert prefer_sparse((50, 20, 5, 5), 0.04) == numba_available()   # LeNet-5's conv2
    assert not prefer_sparse((16, 3, 3, 3), 0.1)                      # an RGB stem: below 2^10 weights
    with pytest.raises(ValueError, match="density"):
        prefer_sparse((10, 10), 0.0)
    with pytest.raises(ValueError, match="weight_shape"):
        prefer_sparse((10,), 0.5)


def test_replace_parameter_moves_optimizer_state_to_values():
    from sparsetime.nn import replace_parameter
    torch.manual_seed(0)
    lin = nn.Linear(5, 4)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    lin(torch.randn(3, 5)).sum().backward()
    opt.step()
    mask = torch.rand(4, 5) < 0.5
    exp_avg = opt.state[lin.weight]["exp_avg"].clone()
    bias_avg = opt.state[lin.bias]["exp_avg"].clone()
    layer = SparseLinear.from_dense(lin, mask)
    replace_parameter(opt, lin.weight, layer.weight_values, layer.flat_indices())
    replace_parameter(opt, lin.bias, layer.bias, None)
    assert torch.equal(opt.state[layer.weight_values]["exp_avg"], exp_avg[mask])
    assert opt.state[layer.weight_values]["step"] == 1
    assert lin.weight not in opt.state and torch.equal(opt.state[layer.bias]["exp_avg"], bias_avg)
    layer(torch.randn(3, 5)).sum().backward()
    opt.step()  # runs on the sparse values
    assert opt.state[layer.weight_values]["exp_avg"].shape == (int(mask.sum()),)
    with pytest.raises(ValueError, match="param_groups"):
        replace_parameter(opt, lin.weight, layer.weight_values)
