"""When truly sparse execution pays off (``execution="auto"``) and where it is available.

Thresholds come from ``bench/bench_kernels.py`` on a 2-core AVX2/AVX-512 CPU, 2 threads:
the numba linear kernels beat dense matmul for forward + both gradients from about 85-90%
sparsity on layers of a quarter million weights or more; smaller layers are dominated by
per-call overhead. The direct sparse convolution (``bench/bench_conv.py``, fwd + both gradients,
batch 128, the 3x3 layers of a CIFAR ResNet-18) breaks even around density 0.2 and wins from 0.1
(1.2-1.8x; 1.4-2.6x at 0.05), already on 64-channel layers: a convolution's work per weight is
OH * OW * N, so its size threshold is far lower than a linear layer's. At batch 128 even the small
convolutions of a WRN-22-2 or LeNet-5 win (fwd + both gradients, density 0.1, from NCHW / from CHWN:
16->16 at 32x32 1.3x / 3.4x, 32->64 stride 2 1.0x / 2.6x, LeNet-5's 20->50 5x5 3.0x / 4.7x), and
keeping them masked cost those networks most of their gain (WRN-22-2 at ERK 0.05 1.47x faster than
dense with 2^15 weights as the limit, 2.55x with 2^10; LeNet-5 1.05x, 1.58x). Inside a network the limit
is higher still (``bench/bench_cnn.py``, CIFAR ResNet-18 at ERK density 0.05): a masked conv
between sparse ones costs transposing copies of its input and output gradient, so running the
0.11-0.23-dense early layers and the 1x1 shortcuts sparse too took the step from 1.24x to 1.53x
faster than dense. A masked conv fed CHWN memory is slow in itself (oneDNN reorders it): a 1x1
stride-2 shortcut took 3x longer than from NCHW, so small 1x1 convs run sparse even when dense
(:data:`AUTO_CONV_1X1_WEIGHTS`). The torch fallback needs roughly three times sparser linear layers for the same gain
(and has no sparse convolution).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .backend import numba_available

#: density at or below which a large enough linear layer runs sparse under ``execution="auto"``
AUTO_MAX_DENSITY = 0.15
#: density at or below which a convolution runs sparse under ``execution="auto"`` (numba only)
AUTO_MAX_DENSITY_CONV = 0.25
#: 1x1 convolutions (ResNet shortcuts) run sparse up to density min(1, this / weights), at any
#: size. Measured (``SparseConv2d`` vs ``nn.Conv2d``, fwd + both gradients): from CHWN input, as between sparse layers,
#: a masked 1x1 stride-2 conv costs 105 / 32 / 22 ms (64->128 at 32x32, 128->256 at 16x16, 256->512
#: at 8x8, batch 128) against 33 / 30 / 37 ms sparse at density 1: break-even near density 3 / 1 / 0.55
AUTO_CONV_1X1_WEIGHTS = 1 << 16
#: minimum dense size (number of weights) of a linear layer for sparse execution under ``"auto"``
AUTO_MIN_WEIGHTS = 1 << 18
#: the same for a convolution (16 -> 16 channels, 3x3, is 2,304 weights). Only the stems of RGB images
#: (3 -> 16 or 64 channels: 432 or 1,728 weights) fall below, where ERK gives densities near 1 anyway.
#: What no weight count captures is the work per weight, OH * OW * N: a sparse call has a fixed cost
#: of about 0.5 ms (fwd + both gradients), so at batch 1-8 on maps of 8x8 or less a dense conv wins
#: even at density 0.1 (64->64 at 8x8, batch 8: 1.4 vs 1.9 ms). "auto" assumes training batches.
AUTO_MIN_WEIGHTS_CONV = 1 << 10


def sparse_execution_supported(device: torch.device | str) -> bool:
    """True where sparse kernels exist: CPU. On CUDA the engine should fall back to masked mode
    (with a warning) until CUDA kernels exist."""
    return torch.device(device).type == "cpu"


def prefer_sparse(weight_shape: Sequence[int], density: float, device: torch.device | str = "cpu") -> bool:
    """Whether ``execution="auto"`` should run a layer with this weight shape sparse.

    ``weight_shape``: (out, in) for Linear, (out, in, kh, kw) for Conv2d.
    """
    if not (0.0 < float(density) <= 1.0):
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    shape = tuple(int(s) for s in weight_shape)
    if len(shape) not in (2, 4):
        raise ValueError(f"weight_shape must be (out, in) or (out, in, kh, kw), got {shape}")
    if not sparse_execution_supported(device):
        return False
    if len(shape) == 4:
        if shape[2:] == (1, 1):
            return numba_available() and density <= min(1.0, AUTO_CONV_1X1_WEIGHTS / math.prod(shape))
        return numba_available() and density <= AUTO_MAX_DENSITY_CONV and math.prod(shape) >= AUTO_MIN_WEIGHTS_CONV
    if math.prod(shape) < AUTO_MIN_WEIGHTS:
        return False
    limit = AUTO_MAX_DENSITY if numba_available() else AUTO_MAX_DENSITY / 3
    return density <= limit


#: Per-call cost model of the numba sparse convolution against its dense-scatter path (forward;
#: the gradients scale alike), fitted on a 2-core Zen 2 with 2 threads (ResNet-18 layers at ERK
#: densities, batch 1-64, eval): sparse ~ NS_PER_ROW_NONZERO * nnz * OH (gathering a weight row's
#: nonzeros for each output row) + NS_PER_SPARSE_MAC * nnz * OH * OW * N; dense ~ NS_PER_WEIGHT *
#: weights (scattering the values into a dense weight, which oneDNN then reorders) +
#: NS_PER_DENSE_MAC * weights * OH * OW * N + NS_PER_DENSE_CALL, plus NS_PER_CHWN_ELEMENT per input
#: element when the input comes in the sparse layers' CHWN memory (a dense conv reorders it).
NS_PER_ROW_NONZERO = 11.0
NS_PER_SPARSE_MAC = 0.04
NS_PER_WEIGHT = 1.4
NS_PER_DENSE_MAC = 0.012
NS_PER_DENSE_CALL = 300_000.0
NS_PER_CHWN_ELEMENT = 10.0
#: the dense path is taken only when the model says it is this many times faster, so that calls
#: near the break-even point (where the fit is least sure) keep the sparse kernels
DENSE_CALL_MARGIN = 1.5


def dense_conv_call_faster(nnz: int, weight_shape: Sequence[int], input_shape: Sequence[int],
                           out_hw: tuple[int, int], input_chwn: bool) -> bool:
    """Whether one call of a sparse convolution is better served by its dense-scatter path
    (``F.conv2d`` on the values scattered into a dense weight): small batches on small maps, e.g.
    inference one image at a time, where the sparse kernels' cost per (nonzero, output row)
    outweighs the multiply-adds they save. Measured here (forward, 2 threads, batch 1): 64->64
    at 32x32, density 0.23: 3.2 ms sparse, 0.85 ms dense; 128->128 at 16x16, 0.11: 3.1 vs 1.0 ms;
    at batch 32 and up sparse wins on every ResNet-18 layer (and by far in training at batch 128)."""
    oh, ow = out_hw
    batch = int(input_shape[0])
    weights = math.prod(int(s) for s in weight_shape)
    sparse = NS_PER_ROW_NONZERO * nnz * oh + NS_PER_SPARSE_MAC * nnz * oh * ow * batch
    dense = NS_PER_WEIGHT * weights + NS_PER_DENSE_MAC * weights * oh * ow * batch + NS_PER_DENSE_CALL
    if input_chwn and batch > 1:
        dense += NS_PER_CHWN_ELEMENT * math.prod(int(s) for s in input_shape)
    return dense * DENSE_CALL_MARGIN < sparse
