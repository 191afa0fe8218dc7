"""LayoutMaxPool2d and in-place ops after layout-keeping modules: nn's numbers, CHWN kept, no views."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sparsetime as st
from sparsetime.nn import LayoutBatchNorm2d, LayoutMaxPool2d, SparseConv2d, keep_layout_norms, keep_layout_pools
from sparsetime.nn.layout_norm import is_chwn


def chwn(n: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    return torch.randn(c, h, w, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).permute(
        3, 0, 1, 2)


@pytest.mark.parametrize("settings", [dict(kernel_size=2, stride=2, ceil_mode=True),
                                      dict(kernel_size=3, stride=2, padding=1),
                                      dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1))])
def test_max_pool_matches_nn_in_value_indices_and_gradient_and_keeps_the_layout(settings):
    reference = nn.MaxPool2d(**settings, return_indices=True)
    ours = copy.deepcopy(reference)
    assert keep_layout_pools(ours) == 1 and type(ours) is LayoutMaxPool2d
    x = chwn(4, 3, 7, 9, seed=1).requires_grad_()
    xr = x.detach().contiguous().requires_grad_()
    (y, idx), (yr, idxr) = ours(x), reference(xr)
    assert is_chwn(y) and not y._is_view()
    assert torch.equal(y, yr) and torch.equal(idx, idxr)
    gy = torch.randn(y.shape, dtype=y.dtype)
    y.backward(gy)
    yr.backward(gy)
    assert torch.equal(x.grad, xr.grad)
    plain = torch.randn(2, 3, 6, 6)  # a contiguous input takes the usual path
    assert torch.equal(ours(plain)[0], reference(plain)[0])
    single = chwn(1, 3, 6, 6, seed=2)  # batch 1: CHWN is also NCHW, the usual path
    assert torch.equal(ours(single)[0], reference(single)[0])


def test_an_in_place_relu_after_batchnorm_gets_a_plain_tensor_and_the_reference_gradients():
    """nn.ReLU(inplace=True) on a view would be recorded as CopySlices on its base (a copy of the
    whole gradient in backward): the layout BatchNorm returns a tensor of its own instead."""
    reference = nn.Sequential(nn.BatchNorm2d(5), nn.ReLU(inplace=True), nn.MaxPool2d(2)).double()
    ours = copy.deepcopy(reference)
    assert keep_layout_norms(ours) == 1 and keep_layout_pools(ours) == 1
    x = chwn(6, 5, 4, 4, seed=3).requires_grad_()
    xr = x.detach().contiguous().requires_grad_()
    y_bn = ours[0](x)
    assert not y_bn._is_view() and is_chwn(y_bn)
    y, yr = ours[2](ours[1](y_bn)), reference(xr)
    assert "CopySlices" not in repr(y.grad_fn.next_functions)
    gy = torch.randn(y.shape, dtype=y.dtype)
    y.backward(gy)
    yr.backward(gy)
    torch.testing.assert_close(y, yr)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(ours[0].weight.grad, reference[0].weight.grad)


def test_vgg_style_stack_with_in_place_relu_and_pooling_trains_as_the_masked_engine(train_twins):
    """conv-BN-ReLU(inplace)-pool blocks under sparse execution: every layer between sparse convs
    keeps CHWN, and two topology updates later weights, masks and statistics equal the masked run."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                        nn.MaxPool2d(2, 2, ceil_mode=True),
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                        nn.MaxPool2d(2, 2, ceil_mode=True), nn.Flatten(), nn.Linear(8 * 2 * 2, 3)).double()
    masked, sparse = net, copy.deepcopy(net)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (masked, sparse)]
    sps = [st.DynamicSparsity(m, o, density=0.4, distribution="uniform", update_interval=2, total_steps=10,
                              execution=e, dense_layers=["9"], seed=5)
           for m, o, e in zip((masked, sparse), opts, ("masked", "sparse"))]
    assert isinstance(sparse[4], SparseConv2d) and type(sparse[3]) is LayoutMaxPool2d
    assert type(sparse[5]) is LayoutBatchNorm2d
    seen = []
    sparse[4].register_forward_pre_hook(lambda mod, args: seen.append(is_chwn(args[0])))
    x = torch.randn(6, 4, 7, 7, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    train_twins((masked, sparse), opts, sps, x, y)
    assert seen and all(seen)
    assert len(sps[1].update_history) == len(sps[0].update_history) == 2
    torch.testing.assert_close(sps[1].masks["4.weight"], sps[0].masks["4.weight"])
    torch.testing.assert_close(sparse[4].to_dense(), masked[4].weight.detach())
    torch.testing.assert_close(sparse[5].running_mean, masked[5].running_mean)


def test_lenet5_under_auto_runs_conv2_sparse_pools_its_layout_and_trains_as_the_masked_engine(train_twins):
    """The registry's LeNet-5: "auto" runs its 20->50 5x5 conv (25,000 weights) sparse, the pool
    after it is a module swapped for the layout pool (CHWN in and out), and training equals masked."""
    from sparsetime.kernels import numba_available
    from sparsetime.models import build_model

    if not numba_available():
        pytest.skip("execution='auto' runs convolutions sparse with numba only")
    torch.manual_seed(0)
    net = build_model("lenet5", (1, 16, 16), 10).double()
    masked, sparse = net, copy.deepcopy(net)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (masked, sparse)]
    sps = [st.DynamicSparsity(m, o, density=0.05, distribution="uniform", update_interval=2, total_steps=10,
                              execution=e, seed=2) for m, o, e in zip((masked, sparse), opts, ("masked", "auto"))]
    assert sps[1].layer_execution == {"conv1.weight": "masked", "conv2.weight": "sparse", "fc3.weight": "masked",
                                      "fc4.weight": "masked"}
    assert type(sparse.pool2) is LayoutMaxPool2d
    layouts = []
    sparse.pool2.register_forward_hook(lambda mod, args, out: layouts.append((is_chwn(args[0]), is_chwn(out))))
    x = torch.randn(8, 1, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    train_twins((masked, sparse), opts, sps, x, y)
    assert layouts and all(layout == (True, True) for layout in layouts)
    assert len(sps[1].update_history) == len(sps[0].update_history) == 2
    torch.testing.assert_close(sps[1].masks["conv2.weight"], sps[0].masks["conv2.weight"])
    torch.testing.assert_close(sparse.conv2.to_dense(), masked.conv2.weight.detach())
    torch.testing.assert_close(sparse(x), masked(x))
