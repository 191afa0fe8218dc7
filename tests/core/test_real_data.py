"""Sparse-aware init on real Fashion-MNIST: a 98%-sparse MLP 784-1000-1000-1000-10 leaves chance fast.

The ITOP paper's code sits at 10% for 7 epochs on this setting without sparse-aware init. Uses the files of
Debian's dataset-fashion-mnist (installed by scripts/setup.sh) or $SPARSETIME_DATA.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.data import batch_iterator, build_datasets, locate_dataset

pytestmark = pytest.mark.skipif(locate_dataset("fashion_mnist") is None,
                                reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def accuracy(model, dataset, limit=2000):
    x, y = next(iter(batch_iterator(dataset, limit, shuffle=False)))
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_98_percent_sparse_mlp_leaves_chance_within_first_epoch():
    torch.manual_seed(0)
    data = build_datasets("fashion_mnist", download=False)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(),
                          nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sp = st.SET(model, opt, density=0.02, total_steps=469, update_interval=100)
    g = torch.Generator().manual_seed(0)
    for step, (x, y) in enumerate(batch_iterator(data.train, 128, shuffle=True, generator=g)):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sp.step()
        if step == 149:
            break
    assert abs(sp.density() - 0.02) < 1e-4
    # 150 of the epoch's 469 steps: well above the 10% of chance
    assert accuracy(model, data.test) > 0.5
