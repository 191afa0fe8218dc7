"""Direct sparse convolution and SparseConv2d against dense F.conv2d autograd."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsetime.kernels import pattern_from_mask
from sparsetime.kernels.conv import sparse_conv2d
from sparsetime.nn import SparseConv2d


def _case(o, c, kh, kw, density, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(o, c * kh * kw, generator=g) < density
    w = torch.randn(o, c, kh, kw, generator=g, dtype=torch.float64) * mask.view(o, c, kh, kw)
    return mask, w


@pytest.mark.parametrize("stride, padding, dilation", [
    (1, 1, 1), (2, 1, 1), (1, 0, 2), ((2, 1), (0, 2), 1), (3, 2, (1, 2)),
])
def test_matches_dense_conv(backend, stride, padding, dilation):
    mask, w = _case(6, 4, 3, 3, 0.3, seed=1)
    mask[2] = False  # an output channel with no weights
    w = w * mask.view_as(w)
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64)
    _check(mask, w, x, torch.randn(6, dtype=torch.float64), backend, stride, padding, dilation)


def _check(mask, w, x, bias, backend, stride=1, padding=0, dilation=1):
    vals = w.reshape(w.shape[0], -1)[mask].clone().requires_grad_()
    b = bias.clone().requires_grad_() if bias is not None else None
    xs = x.detach().clone().requires_grad_()
    y = sparse_conv2d(xs, vals, pattern_from_mask(mask), tuple(w.shape), b, stride, padding, dilation,
                      backend=backend)
    gy = torch.randn(y.shape, dtype=y.dtype)
    y.backward(gy)
    wd = w.clone().requires_grad_()
    bd = bias.clone().requires_grad_() if bias is not None else None
    xd = x.detach().clone().requires_grad_()
    yd = F.conv2d(xd, wd, bd, stride, padding, dilation)
    yd.backward(gy)
    torch.testing.assert_close(y, yd)
    torch.testing.assert_close(xs.grad, xd.grad)
    torch.testing.assert_close(vals.grad, wd.grad.reshape(w.shape[0], -1)[mask])
    if bias is not None:
        torch.testing.assert_close(b.grad, bd.grad)


def test_single_nonzero_batch_one_and_1x1(backend):
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[1, 2] = True
    w = torch.zeros(2, 3, 1, 1, dtype=torch.float64)
    w[1, 2] = 0.5
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    _check(mask, w, x, None, backend)
    mask, w = _case(3, 2, 5, 5, 0.0, seed=0)  # empty pattern, kernel larger than the padding
    _check(mask, w, torch.randn(2, 2, 6, 6, dtype=torch.float64), torch.ones(3, dtype=torch.float64), backend,
           padding=1)


def test_non_contiguous_input_and_chained_layers(backend):
    m1, w1 = _case(5, 3, 3, 3, 0.4, seed=2)
    m2, w2 = _case(4, 5, 3, 3, 0.4, seed=3)
    x = torch.randn(6, 3, 7, 7, dtype=torch.float64).permute(0, 1, 3, 2)  # non-contiguous
    v1 = w1.reshape(5, -1)[m1].clone().requires_grad_()
    v2 = w2.reshape(4, -1)[m2].clone().requires_grad_()
    h = torch.relu(sparse_conv2d(x, v1, pattern_from_mask(m1), tuple(w1.shape), padding=1, backend=backend))
    y = sparse_conv2d(h, v2, pattern_from_mask(m2), tuple(w2.shape), padding=1, backend=backend)
    (y ** 2).sum().backward()
    a1, a2 = w1.clone().requires_grad_(), w2.clone().requires_grad_()
    yd = F.conv2d(torch.relu(F.conv2d(x, a1, padding=1)), a2, padding=1)
    (yd ** 2).sum().backward()
    torch.testing.assert_close(y, yd)
    torch.testing.assert_close(v1.grad, a1.grad.reshape(5, -1)[m1])
    torch.testing.assert_close(v2.grad, a2.grad.reshape(4, -1)[m2])


def test_module_from_dense_to_dense_and_state_dict(backend):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1).double()  # float64 only: one JIT compile per kernel
    mask = torch.rand(conv.weight.shape) < 0.3
    layer = SparseConv2d.from_dense(conv, mask, backend=backend)
    assert torch.equal(layer.to_dense().detach(), conv.weight.detach() * mask)
    assert torch.equal(layer.dense_mask(), mask)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.conv2d(x, conv.weight * mask, conv.bias, 2, 1))
    fresh = SparseConv2d(3, 4, 3, 0.9, stride=2, padding=1, backend=backend, dtype=torch.float64)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x), layer(x))
    assert "density=" in repr(layer) and layer.nnz == int(mask.sum())
    coo = layer.to_sparse_coo()
    assert torch.equal(coo.to_dense(), layer.to_dense().detach())
    with pytest.raises(ValueError, match="groups"):
        SparseConv2d.from_dense(nn.Conv2d(4, 4, 3, groups=2))


def test_module_init_and_validation():
    layer = SparseConv2d(8, 16, 3, 0.1, padding=1, generator=torch.Generator().manual_seed(0))
    assert layer.nnz == int(0.1 * 16 * 8 * 9 + 0.5)
    assert layer.weight_values.abs().max() <= 1.0  # rescaled from U(-1/sqrt(72), 1/sqrt(72))
    with pytest.raises(ValueError, match="density"):
        SparseConv2d(8, 16, 3, 0.0)
    with pytest.raises(ValueError, match="stride"):
        SparseConv2d(8, 16, 3, 0.5, stride=0)
    with pytest.raises(ValueError, match="input"):
        layer(torch.randn(2, 7, 5, 5))


@pytest.mark.parametrize("block_bytes", [1, 4096, 1 << 30])  # one input channel per block, a few, all
def test_random_shapes_match_dense_conv_for_every_channel_block(backend, block_bytes, monkeypatch):
    """The register-blocked, channel-blocked kernels on random geometries: dense rows (groups of four
    with border tails), empty rows and columns, stride 2, padding, batch 1 and non-contiguous inputs."""
    from sparsetime.kernels import conv as conv_module
    monkeypatch.setattr(conv_module, "L2_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(conv_module, "MIN_BLOCK_NONZEROS", 0)  # the block is what L2_BLOCK_BYTES says
    gen = torch.Generator().manual_seed(7)
    for trial in range(6):
        o, c = (int(v) for v in torch.randint(1, 9, (2,), generator=gen))
        kh, kw = (int(v) for v in torch.randint(1, 4, (2,), generator=gen))
        stride = (int(torch.randint(1, 3, (1,), generator=gen)), int(torch.randint(1, 3, (1,), generator=gen)))
        padding = (int(torch.randint(0, kh, (1,), generator=gen)), int(torch.randint(0, kw, (1,), generator=gen)))
        batch = 1 if trial % 3 == 0 else int(torch.randint(2, 5, (1,), generator=gen))
        density = (0.9, 0.5, 0.15)[trial % 3]
        mask, w = _case(o, c, kh, kw, density, seed=100 + trial)
        mask[0] = False  # an empty output row
        mask[:, 0] = False  # an empty column
        w = w * mask.view_as(w)
        x = torch.randn(batch, c, 7 + trial, 6, dtype=torch.float64)
        if trial % 2:
            x = torch.randn(batch, c, 6, 7 + trial, dtype=torch.float64).transpose(2, 3)  # non-contiguous
        _check(mask, w, x, torch.randn(o, dtype=torch.float64), backend, stride, padding)


def test_channel_block_fits_l2_unless_that_leaves_too_few_nonzeros_per_row():
    from sparsetime.kernels.conv import L2_BLOCK_BYTES, MIN_BLOCK_NONZEROS, channel_block

    row_bytes = 3 * 16 * 128 * 4  # 3 rows of a 16-wide, batch-128 float32 channel: 24 KiB
    assert L2_BLOCK_BYTES // row_bytes == 16
    assert channel_block(3, 16, 128, 4, 128) == 16  # no density given: L2 alone
    assert channel_block(3, 16, 128, 4, 128, 9 * 0.1) == 18  # ceil(16 / 0.9)
    assert MIN_BLOCK_NONZEROS == 16 and channel_block(3, 16, 128, 4, 128, 9 * 0.5) == 16  # L2 fit has enough
    assert channel_block(3, 16, 128, 4, 128, 9 * 0.01) == 128  # ceil(16 / 0.09) = 178, capped at C
    assert channel_block(3, 1 << 20, 128, 4, 5) == 1  # rows larger than L2: one channel


def test_in_place_relu_may_follow_sparse_layers(backend):
    """VGG's classifier is Linear -> ReLU(inplace=True): the sparse outputs (permuted kernel layouts)
    must not be autograd views, and the gradients must stay those of the dense layers."""
    from sparsetime.nn import SparseLinear

    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(6 * 5 * 5, 7), nn.ReLU(inplace=True), nn.Linear(7, 2)).double()
    sparse = nn.Sequential(SparseConv2d.from_dense(dense[0], backend=backend), nn.ReLU(inplace=True), nn.Flatten(),
                           SparseLinear.from_dense(dense[3], backend=backend), nn.ReLU(inplace=True),
                           nn.Linear(7, 2).double())
    sparse[5].load_state_dict(dense[5].state_dict())
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    y, yd = sparse(x), dense(x)
    torch.testing.assert_close(y, yd)
    y.sum().backward()
    yd.sum().backward()
    torch.testing.assert_close(sparse[0].weight_values.grad, dense[0].weight.grad.reshape(-1))
    torch.testing.assert_close(sparse[3].weight_values.grad, dense[3].weight.grad.reshape(-1))


def _layer_and_twin(seed=0):
    """A 64->64 3x3 layer at density 0.25 (a ResNet-18 first stage under ERK) and its dense twin."""
    gen = torch.Generator().manual_seed(seed)
    layer = SparseConv2d(64, 64, 3, 0.25, padding=1, generator=gen).double()
    dense = nn.Conv2d(64, 64, 3, padding=1).double()
    with torch.no_grad():
        dense.weight.copy_(layer.to_dense().view_as(dense.weight))
        dense.bias.copy_(layer.bias)
    return layer, dense


@pytest.mark.skipif(not __import__("sparsetime").kernels.numba_available(), reason="needs numba")
def test_one_image_at_a_time_takes_the_dense_path_and_a_batch_the_sparse_kernels(monkeypatch):
    """Batch 1 on a 32x32 map (inference one image at a time): the sparse kernels' cost per
    (nonzero, output row) outweighs what they save, so the call scatters the values into a dense
    weight (``F.conv2d``); batch 64 runs the kernels. Both equal dense autograd, and
    RigL's captured tensors are the same on either path."""
    from sparsetime.kernels import conv as conv_module
    from sparsetime.kernels.heuristics import dense_conv_call_faster

    layer, dense = _layer_and_twin()
    layer.capture_gradient_inputs(True)
    assert dense_conv_call_faster(layer.nnz, (64, 64, 3, 3), (1, 64, 32, 32), (32, 32), False)
    assert not dense_conv_call_faster(layer.nnz, (64, 64, 3, 3), (64, 64, 32, 32), (32, 32), True)
    captured = {}
    for batch, dense_path in ((1, True), (64, False)):
        for small_calls_dense in (True, False):
            monkeypatch.setattr(conv_module, "DENSE_SMALL_CALLS", small_calls_dense)
            x = torch.randn(batch, 64, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(batch))
            xs, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
            layer.zero_grad(set_to_none=True)
            dense.zero_grad(set_to_none=True)
            y, yd = layer(xs), dense(xd)
            took_dense = dense_path and small_calls_dense
            assert (type(y.grad_fn).__name__ == "SparseConv2dFunctionBackward") != took_dense
            gy = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(7))
            y.backward(gy)
            yd.backward(gy)
            torch.testing.assert_close(y, yd)
            torch.testing.assert_close(xs.grad, xd.grad)
            torch.testing.assert_close(layer.weight_values.grad, dense.weight.grad.reshape(-1)[layer.flat_indices()])
            torch.testing.assert_close(layer.bias.grad, dense.bias.grad)
            captured[batch, small_calls_dense] = {k: v.clone() for k, v in layer._sink.items()}
        for key in ("xc", "gyc"):
            torch.testing.assert_close(captured[batch, True][key], captured[batch, False][key])
