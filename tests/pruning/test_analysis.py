"""Mask analysis: Hamming distance by hand, early-bird detection, linear mode connectivity with BN."""
import numpy as np
import pytest
import torch
from torch import nn

import sparsetime.pruning as P


def _b(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_hamming_by_hand():
    a = {"x.weight": _b([[1, 0], [1, 1]]), "y.weight": _b([1, 1, 0, 0, 0, 0])}
    b = {"x.weight": _b([[1, 1], [0, 1]]), "y.weight": _b([1, 1, 0, 0, 0, 1])}
    assert P.hamming_distance(a, b, normalized=False) == 3  # 2 in x, 1 in y
    assert P.hamming_distance(a, b) == pytest.approx(3 / 10)
    assert P.hamming_distance(a, a) == 0.0


def test_hamming_rejects_mismatched_masks():
    a = {"x.weight": _b([1, 0])}
    with pytest.raises(ValueError, match="shape"):
        P.hamming_distance(a, {"x.weight": _b([1, 0, 1])})
    with pytest.raises(ValueError, match="only in"):
        P.hamming_distance(a, {"z.weight": _b([1, 0])})
    with pytest.raises(ValueError, match="bool"):
        P.hamming_distance(a, {"x.weight": torch.tensor([1.0, 0.0])})


def _flip(base, positions):
    m = base.clone()
    m[list(positions)] = ~m[list(positions)]
    return {"w": m}


def test_early_bird_found_when_last_five_agree():
    base = torch.zeros(100, dtype=torch.bool)
    base[:50] = True
    far = [_flip(base, range(i * 30, i * 30 + 30)) for i in range(3)]   # 0.6 apart from each other
    near = [_flip(base, [90 + i, 91 + i]) for i in range(6)]             # within 0.04 of each other
    eb = P.EarlyBird()
    results = [eb.update(m) for m in far + near]
    # updates 4..8 are the first five near masks: the ticket emerges at update 8
    assert results == [False] * 7 + [True, True]
    assert eb.found_at == 8
    assert max(eb.distances) == pytest.approx(0.04)  # update 9 vs 5: flips {94,95} vs {90,91}


def test_early_bird_threshold_is_inclusive():
    base = torch.zeros(10, dtype=torch.bool)
    eb = P.EarlyBird(window=2, threshold=0.1)
    assert not eb.update({"w": base})
    assert eb.update(_flip(base, [3]))            # distance exactly 0.1
    eb2 = P.EarlyBird(window=2, threshold=0.1)
    eb2.update({"w": base})
    assert not eb2.update(_flip(base, [3, 4]))    # 0.2


def test_early_bird_state_roundtrip():
    base = torch.zeros(10, dtype=torch.bool)
    eb = P.EarlyBird(window=3)
    eb.update({"w": base})
    eb.update(_flip(base, [1]))
    fresh = P.EarlyBird(window=3)
    fresh.load_state_dict(eb.state_dict())
    # third mask: 0.1 from the first, 0 from the second -> emerged; without the loaded history it could not
    assert fresh.update(_flip(base, [1])) is True and eb.update(_flip(base, [1])) is True
    assert fresh.found_at == eb.found_at == 3


def test_instability_without_bn_by_hand():
    a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(-1.0)

    def err(m):  # error 1 - w^2: 0 at both ends, 1 at w = 0
        return 1.0 - float(m.weight.detach()) ** 2

    res = P.interpolate_instability(a, b, err)
    assert res.alphas == pytest.approx([i / 10 for i in range(11)])
    assert res.instability == pytest.approx(1.0)           # alpha 0.5 -> w = 0
    res = P.interpolate_instability(a, b, err, alphas=[0.25])
    assert res.alphas == [0.0, 0.25, 1.0]
    assert res.errors == pytest.approx([0.0, 0.75, 0.0])   # w(0.25) = 0.25 - 0.75 = -0.5
    assert res.instability == pytest.approx(0.75)
    assert float(a.weight.detach()) == 1.0 and float(b.weight.detach()) == -1.0


def test_instability_recomputes_bn_statistics_per_point():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    b = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    a[1].running_mean.fill_(5.0)  # stale statistics that must not survive
    b[1].running_mean.fill_(-5.0)
    a_state = {k: v.clone() for k, v in a.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    loader = [(torch.randn(4, 3, generator=g), torch.zeros(4)) for _ in range(2)]
    seen = []

    def evaluate(model):
        assert not model.training
        seen.append((model[1].running_mean.clone(), model[1].running_var.clone()))
        return 0.0

    res = P.interpolate_instability(a, b, evaluate, alphas=[0.3], bn_loader=loader)
    assert res.alphas == [0.0, 0.3, 1.0] and res.instability == 0.0
    wa, ba = a[0].weight.detach().numpy(), a[0].bias.detach().numpy()
    wb, bb = b[0].weight.detach().numpy(), b[0].bias.detach().numpy()
    for alpha, (mean, var) in zip(res.alphas, seen):
        w, bias = alpha * wa + (1 - alpha) * wb, alpha * ba + (1 - alpha) * bb
        acts = [x.numpy() @ w.T + bias for x, _ in loader]
        # momentum=None: running stats are the plain average of the per-batch statistics
        np.testing.assert_allclose(mean.numpy(), np.mean([h.mean(0) for h in acts], axis=0), rtol=1e-5)
        np.testing.assert_allclose(var.numpy(), np.mean([h.var(0, ddof=1) for h in acts], axis=0), rtol=1e-5)
    for k, v in a.state_dict().items():
        assert torch.equal(v, a_state[k]), k
    assert a[1].momentum == 0.1


def test_instability_bad_input():
    bn = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match="bn_loader"):
        P.interpolate_instability(bn, bn, lambda m: 0.0)
    with pytest.raises(ValueError, match="architecture"):
        P.interpolate_instability(nn.Linear(3, 2), nn.Linear(3, 3), lambda m: 0.0)
    with pytest.raises(ValueError, match="alphas"):
        P.interpolate_instability(nn.Linear(3, 2), nn.Linear(3, 2), lambda m: 0.0, alphas=[1.5])
