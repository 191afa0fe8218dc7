"""Sparse-aware initialisation and exact random masks."""
import math

import torch
from torch import nn

import sparsetime as st
from sparsetime.core.masks import random_mask, sparse_init_


def test_random_mask_exact_count_and_uniform_positions():
    g = torch.Generator().manual_seed(0)
    hits = torch.zeros(10, 10)
    for _ in range(400):
        m = random_mask((10, 10), 13, g)
        assert int(m.sum()) == 13
        hits += m
    # each position is active with probability 0.13: mean 52 of 400, std ~6.7
    assert (hits - 52).abs().max() < 6 * 6.7


def test_sparse_init_scales_each_unit_by_hand():
    w = torch.ones(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    sparse_init_(w, mask)
    assert torch.allclose(w[0], torch.tensor([math.sqrt(2), math.sqrt(2), 0, 0]))
    assert torch.allclose(w[1], torch.tensor([2.0, 0, 0, 0]))
    assert torch.equal(w[2], torch.zeros(4))


def test_sparse_init_preserves_preactivation_variance():
    torch.manual_seed(0)
    dense = nn.Linear(1000, 300)
    x = torch.randn(512, 1000)
    var_dense = (x @ dense.weight.T).var().item()
    for switch, lo, hi in ((True, 0.85, 1.15), (False, 0.01, 0.04)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(1000, 300))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        st.DynamicSparsity(model, opt, density=0.02, distribution="uniform", sparse_init=switch,
                           update_interval=None)
        ratio = (x @ model[0].weight.T).var().item() / var_dense
        assert lo < ratio < hi, (switch, ratio)
