"""LayoutBatchNorm2d: nn.BatchNorm2d's numbers, in the CHWN layout of sparse convolution outputs."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.nn import LayoutBatchNorm2d, SparseConv2d, keep_layout_norms
from sparsetime.kernels.layout import to_chwn
from sparsetime.nn.layout_norm import enter_layout_after_dense_convs, is_chwn


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


def test_sparse_execution_keeps_the_layout_through_batchnorm_and_relu(train_twins):
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
    train_twins((masked, sparse), opts, sps, x, y)  # two topology updates
    assert seen and all(seen)
    torch.testing.assert_close(sps[1].masks["3.weight"], sps[0].masks["3.weight"])
    torch.testing.assert_close(sparse[3].to_dense(), masked[3].weight.detach())
    torch.testing.assert_close(sparse[1].running_var, masked[1].running_var)
    masked.eval()
    sparse.eval()
    with torch.no_grad():  # evaluation normalises with the running statistics, in the CHWN layout too
        torch.testing.assert_close(sparse(x), masked(x))


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "chwn"])
def test_to_chwn_is_a_differentiable_transposing_copy(layout):
    base = torch.randn(3, 4, 5, 2, dtype=torch.float64)
    x = {"nchw": base, "channels_last": base.to(memory_format=torch.channels_last),
         "chwn": base.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)}[layout].requires_grad_()
    y = to_chwn(x)
    assert is_chwn(y) and (y is x) == (layout == "chwn")
    assert torch.equal(y, base)
    gy = torch.randn(3, 4, 5, 2, dtype=torch.float64)
    (y * gy).sum().backward()
    assert torch.equal(x.grad, gy)


class _StemBlockNet(nn.Module):
    """A dense stem conv, BN, ReLU, then a residual block of two convs with an identity shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_bn(self.stem(x)))
        out = F.relu(self.bn1(self.conv1(h)))
        out = F.relu(self.bn2(self.conv2(out)) + h)
        return self.fc(out.mean((2, 3)))


def test_the_batchnorm_after_a_dense_stem_enters_the_layout_and_training_matches_the_masked_engine(train_twins):
    """The stem's BN is marked, transposes once, and the shortcut's addition meets one layout; two
    topology updates later weights, masks and statistics equal the masked engine's."""
    torch.manual_seed(0)
    masked = _StemBlockNet().double()
    sparse = copy.deepcopy(masked)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (masked, sparse)]
    sps = [st.DynamicSparsity(m, o, density=0.4, distribution="uniform", update_interval=2, total_steps=10,
                              execution=e, dense_layers=["stem", "fc"], seed=4)
           for m, o, e in zip((masked, sparse), opts, ("masked", "sparse"))]
    assert isinstance(sparse.conv1, SparseConv2d) and type(sparse.stem) is nn.Conv2d
    assert [sparse.stem_bn.enters_layout, sparse.bn1.enters_layout, sparse.bn2.enters_layout] == [True, False, False]
    seen = []
    sparse.stem_bn.register_forward_hook(lambda mod, args, out: seen.append((is_chwn(args[0]), is_chwn(out))))
    sparse.conv1.register_forward_pre_hook(lambda mod, args: seen.append((is_chwn(args[0]),)))
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    train_twins((masked, sparse), opts, sps, x, y)
    assert seen[:2] == [(False, True), (True,)]  # NCHW in from the dense stem, CHWN out, CHWN into conv1
    assert len(sps[1].update_history) == 2
    for name in ("conv1", "conv2"):
        torch.testing.assert_close(sps[1].masks[f"{name}.weight"], sps[0].masks[f"{name}.weight"])
        torch.testing.assert_close(getattr(sparse, name).to_dense(), getattr(masked, name).weight.detach())
    torch.testing.assert_close(sparse.stem.weight, masked.stem.weight)
    torch.testing.assert_close(sparse.stem_bn.running_var, masked.stem_bn.running_var)


def test_only_batchnorms_between_a_dense_conv_and_a_sparse_one_enter_the_layout():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),   # dense -> dense
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),   # dense -> sparse
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),   # sparse -> sparse
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),   # sparse -> sparse
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),              # sparse, then none
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    st.DynamicSparsity(net, opt, density=0.5, distribution="uniform", update_interval=2, total_steps=10,
                       execution="sparse", dense_layers=["0", "3", "16"])
    assert [type(net[i]) for i in (0, 3, 6, 9, 12)] == [nn.Conv2d, nn.Conv2d] + [SparseConv2d] * 3
    assert [i for i, m in enumerate(net) if getattr(m, "enters_layout", False)] == [4]
    assert enter_layout_after_dense_convs(nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))) == []
