"""LayoutBatchNorm2d: nn.BatchNorm2d's numbers, in the CHWN layout of sparse convolution outputs."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.nn import LayoutBatchNorm2d, SparseConv2d, keep_layout_norms
from sparsetime.nn.layout_norm import is_chwn


def chwn(n: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    return torch.randn(c, h, w, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).permute(
        3, 0, 1, 2)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_matches_batchnorm_in_training_and_eval_and_keeps_the_layout(momentum):
    reference = nn.BatchNorm2d(5, momentum=momentum).double()
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-1, 1)
    ours = copy.deepcopy(reference)
    assert keep_layout_norms(ours) == 1 and type(ours) is LayoutBatchNorm2d
    for step in range(3):
        x = chwn(4, 5, 3, 6, seed=step).requires_grad_()
        xr = x.detach().clone().requires_grad_()
        y, yr = ours(x), reference(xr)
        assert is_chwn(y) and y.stride() == x.stride()  # the input's layout, no copy to NCHW
        gy = torch.randn(y.shape, dtype=y.dtype)
        y.backward(gy)
        yr.backward(gy)
        torch.testing.assert_close(y, yr)
        torch.testing.assert_close(x.grad, xr.grad)
        torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
        torch.testing.assert_close(ours.bias.grad, reference.bias.grad)
    torch.testing.assert_close(ours.running_mean, reference.running_mean)
    torch.testing.assert_close(ours.running_var, reference.running_var)  # unbiased over N*H*W in both
    assert int(ours.num_batches_tracked) == int(reference.num_batches_tracked) == 3
    ours.eval()
    reference.eval()
    x = chwn(2, 5, 3, 6, seed=9)
    torch.testing.assert_close(ours(x), reference(x))
    plain = torch.randn(3, 5, 2, 2, dtype=torch.float64)  # a contiguous input takes the usual path
    torch.testing.assert_close(ours(plain), reference(plain))
    assert ours.state_dict().keys() == reference.state_dict().keys()


def test_sparse_execution_keeps_the_layout_through_batchnorm_and_relu():
    """A conv-BN-ReLU-conv stack under sparse execution: the second conv gets CHWN memory, no copy,
    and the training step matches the masked engine on a twin model."""
    torch.manual_seed(0)

    def net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    masked, sparse = net().double(), None
    sparse = copy.deepcopy(masked)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (masked, sparse)]
    sps = [st.DynamicSparsity(m, o, density=0.3, distribution="uniform", update_interval=2, total_steps=10,
                              execution=e, dense_layers=["8"], seed=3)
           for m, o, e in zip((masked, sparse), opts, ("masked", "sparse"))]
    assert isinstance(sparse[0], SparseConv2d) and type(sparse[1]) is LayoutBatchNorm2d
    seen = []
    sparse[3].register_forward_pre_hook(lambda mod, args: seen.append(is_chwn(args[0])))
    x = torch.randn(6, 8, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    for _ in range(4):  # two topology updates
        for model, opt, sp in zip((masked, sparse), opts, sps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sp.step()
    assert seen and all(seen)
    torch.testing.assert_close(sps[1].masks["3.weight"], sps[0].masks["3.weight"])
    torch.testing.assert_close(sparse[3].to_dense(), masked[3].weight.detach())
    torch.testing.assert_close(sparse[1].running_var, masked[1].running_var)
    masked.eval()
    sparse.eval()
    with torch.no_grad():  # evaluation normalises with the running statistics, in the CHWN layout too
        torch.testing.assert_close(sparse(x), masked(x))
