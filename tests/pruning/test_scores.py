"""Pruning scores against hand computations: SNIP, SynFlow path sums, GraSP with an explicit Hessian."""
import numpy as np
import pytest
import torch
from torch import nn

import sparsetime.pruning as P


def _two_layer(seed=0, bias=False, hidden=4, n_in=3, n_out=2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden, bias=bias), nn.ReLU(), nn.Linear(hidden, n_out, bias=bias)).double()


def _np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_linear_ce_grads(w1, w2, x, y):
    """Gradients of mean cross-entropy of x @ w1.T @ w2.T (a linear 2-layer net), by hand."""
    h = x @ w1.T
    z = h @ w2.T
    dz = _np_softmax(z)
    dz[np.arange(len(y)), y] -= 1.0
    dz /= len(y)
    return (dz @ w2).T @ x, dz.T @ h


def test_snip_matches_hand_computation_on_linear_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    w1, w2 = model[0].weight.detach().numpy().copy(), model[1].weight.detach().numpy().copy()
    g1, g2 = _np_linear_ce_grads(w1, w2, x.numpy(), y.numpy())
    s = P.scores(model, "snip", [(x, y)])
    np.testing.assert_allclose(s["0.weight"].numpy(), np.abs(g1 * w1), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(s["1.weight"].numpy(), np.abs(g2 * w2), rtol=1e-10, atol=1e-14)


def test_snip_averages_gradients_over_num_batches():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)).double()
    batches = [(torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    w1, w2 = model[0].weight.detach().numpy().copy(), model[1].weight.detach().numpy().copy()
    grads = [_np_linear_ce_grads(w1, w2, x.numpy(), y.numpy()) for x, y in batches[:2]]
    g1 = (grads[0][0] + grads[1][0]) / 2
    s = P.scores(model, "snip", iter(batches), num_batches=2)
    np.testing.assert_allclose(s["0.weight"].numpy(), np.abs(g1 * w1), rtol=1e-10, atol=1e-14)


def test_scores_leave_model_untouched():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1]))]
    masks = P.magnitude_prune(model, 0.5)
    for method in P.METHODS:
        opts = {"density": 0.5, "rounds": 3} if method == "synflow" else {}
        P.scores(model, method, batches, masks=masks, **opts)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert model.training


def test_masked_positions_score_minus_inf():
    model = _two_layer(3)
    masks = P.magnitude_prune(model, 0.5)
    batches = [(torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1]))]
    for method in P.METHODS:
        opts = {"density": 0.5, "rounds": 2} if method == "synflow" else {}
        s = P.scores(model, method, batches, masks=masks, **opts)
        for n, m in masks.items():
            assert torch.isneginf(s[n][~m]).all(), method
            assert torch.isfinite(s[n][m]).all(), method


def test_synflow_single_round_equals_path_sums():
    """f(x) = W2 relu(W1 x + b1) + b2 with |.| everywhere and x = 1: R = 1ᵀ(|W2|(|W1| 1 + |b1|) + |b2|)."""
    model = _two_layer(4, bias=True)
    w1 = model[0].weight.detach().numpy().copy()
    b1 = model[0].bias.detach().numpy().copy()
    w2 = model[2].weight.detach().numpy().copy()
    # dR/dW2[i, j] = (|W1| 1 + |b1|)[j];  dR/dW1[j, k] = sum_i |W2|[i, j] (times input 1)
    hidden = np.abs(w1).sum(axis=1) + np.abs(b1)
    expected_w2 = np.abs(w2) * hidden[None, :]
    expected_w1 = np.abs(w1) * np.abs(w2).sum(axis=0)[:, None]
    s = P.scores(model, "synflow", density=0.5, rounds=1, input_shape=(3,))
    assert s["0.weight"].dtype == torch.float64
    np.testing.assert_allclose(s["0.weight"].numpy(), expected_w1, rtol=1e-12)
    np.testing.assert_allclose(s["2.weight"].numpy(), expected_w2, rtol=1e-12)


def _np_synflow_masks(w1, w2, density, rounds):
    """Second implementation of iterative SynFlow for a bias-free 2-layer net (global scope)."""
    m1, m2 = np.ones_like(w1, dtype=bool), np.ones_like(w2, dtype=bool)
    total = w1.size + w2.size
    for e in range(1, rounds + 1):
        a1, a2 = np.abs(w1) * m1, np.abs(w2) * m2
        s1 = a1 * a2.sum(axis=0)[:, None]
        s2 = a2 * a1.sum(axis=1)[None, :]
        s1[~m1], s2[~m2] = -np.inf, -np.inf
        flat = np.concatenate([s1.ravel(), s2.ravel()])
        k = round(density ** (e / rounds) * total)
        order = np.argsort(-flat, kind="stable")
        assert k == total or flat[order[k - 1]] > flat[order[k]], "tie at the boundary: pick other weights"
        keep = np.zeros(total, dtype=bool)
        keep[order[:k]] = True
        m1, m2 = keep[:w1.size].reshape(w1.shape), keep[w1.size:].reshape(w2.shape)
    return m1, m2


@pytest.mark.parametrize("rounds", [1, 4, 10])
def test_iterative_synflow_matches_reference(rounds):
    model = _two_layer(5, hidden=6, n_in=5, n_out=3)
    w1, w2 = model[0].weight.detach().numpy(), model[2].weight.detach().numpy()
    m1, m2 = _np_synflow_masks(w1, w2, 0.2, rounds)
    masks = P.prune(model, "synflow", 0.2, input_shape=(5,), rounds=rounds)
    assert np.array_equal(masks["0.weight"].numpy(), m1)
    assert np.array_equal(masks["2.weight"].numpy(), m2)


def test_iterative_synflow_never_revives_pruned_weights():
    """Hidden units 0-2 lose every outgoing weight: their incoming weights stay active but score 0,
    tying with the pruned ones. Pruned weights must still never come back."""
    model = _two_layer(6, hidden=6, n_in=4, n_out=3)
    start = {"0.weight": torch.ones(6, 4, dtype=torch.bool), "2.weight": torch.ones(3, 6, dtype=torch.bool)}
    start["2.weight"][:, :3] = False
    start["0.weight"][3:, :2] = False
    active = sum(int(m.sum()) for m in start.values())  # 24 - 6 + 18 - 9 = 27 of 42
    positive = 3 * 4 - 6 + 3 * 3  # active weights on live paths: rows 3-5 of W1 (6) and W2[:, 3:] (9)
    assert (active, positive) == (27, 15)
    for seed in range(5):
        s = P.scores(model, "synflow", density=0.55, rounds=5, input_shape=(4,), masks=start, seed=seed)
        final = P.masks_from_scores(s, 0.55, generator=torch.Generator().manual_seed(seed), allow_collapse=True)
        assert sum(int(m.sum()) for m in final.values()) == round(0.55 * 42)
        for n in start:
            assert not (final[n] & ~start[n]).any(), "a pruned weight was revived"
            assert torch.isneginf(s[n][~start[n]]).all()


def test_synflow_needs_density_and_shape():
    model = _two_layer()
    with pytest.raises(ValueError, match="density"):
        P.scores(model, "synflow", input_shape=(3,))
    with pytest.raises(ValueError, match="input_shape"):
        P.scores(model, "synflow", density=0.5)
    s = P.scores(model, "synflow", [(torch.randn(2, 3), torch.tensor([0, 1]))], density=0.5, rounds=1)
    assert set(s) == {"0.weight", "2.weight"}


def _grasp_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 2, bias=False), nn.Tanh(), nn.Linear(2, 2, bias=False)).double()


def _explicit_grasp(model, batches, temperature):
    """w ⊙ (H g) with H the full 10x10 Hessian from torch.autograd.functional.hessian."""
    theta = torch.cat([model[0].weight.detach().flatten(), model[2].weight.detach().flatten()])

    def loss(t):
        w1, w2 = t[:6].view(2, 3), t[6:].view(2, 2)
        losses = [nn.functional.cross_entropy(torch.tanh(x @ w1.T) @ w2.T / temperature, y) for x, y in batches]
        return sum(losses) / len(losses)

    hess = torch.autograd.functional.hessian(loss, theta)
    assert hess.shape == (10, 10)
    grad = torch.autograd.functional.jacobian(loss, theta)
    return theta * (hess @ grad), theta, loss


@pytest.mark.parametrize("temperature,num_batches", [(200.0, 1), (1.0, 1), (3.0, 2)])
def test_grasp_matches_explicit_hessian(temperature, num_batches):
    model = _grasp_model(7)
    g = torch.Generator().manual_seed(8)
    batches = [(torch.randn(5, 3, generator=g, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1]))
               for _ in range(num_batches)]
    expected, _, _ = _explicit_grasp(model, batches, temperature)
    s = P.scores(model, "grasp", batches, num_batches=num_batches, temperature=temperature)
    got = torch.cat([s["0.weight"].flatten(), s["2.weight"].flatten()])
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-20)


def test_grasp_sign_keeps_weights_whose_removal_shrinks_gradient_norm():
    """Removing a small part ε of weight q changes ‖g‖² by about -2 ε w_q (Hg)_q: finite differences."""
    model = _grasp_model(9)
    batches = [(torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1, 0]))]
    s = P.scores(model, "grasp", batches, temperature=1.0)
    score = torch.cat([s["0.weight"].flatten(), s["2.weight"].flatten()])
    _, theta, loss = _explicit_grasp(model, batches, 1.0)

    def grad_norm_sq(t):
        return float((torch.autograd.functional.jacobian(loss, t) ** 2).sum())

    eps = 1e-6
    for q in range(10):
        shrunk = theta.clone()
        shrunk[q] -= eps * theta[q]
        change = grad_norm_sq(shrunk) - grad_norm_sq(theta)
        assert change == pytest.approx(-2 * eps * float(score[q]), rel=1e-3, abs=1e-16)
    # the kept half is the half whose removal reduces ‖g‖² the most
    masks = P.masks_from_scores(s, 0.5)
    kept = torch.cat([masks["0.weight"].flatten(), masks["2.weight"].flatten()])
    assert score[kept].min() > score[~kept].max()


def test_random_scores_seeded_standard_normal():
    model = nn.Sequential(nn.Linear(100, 100))
    a = P.scores(model, "random", seed=3)["0.weight"]
    b = P.scores(model, "random", seed=3)["0.weight"]
    c = P.scores(model, "random", seed=4)["0.weight"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.mean())) < 0.05 and abs(float(a.std()) - 1.0) < 0.05


def test_magnitude_scores_are_absolute_weights():
    model = _two_layer(10)
    s = P.scores(model, "magnitude")
    assert torch.equal(s["0.weight"], model[0].weight.detach().abs())


def test_snip_needs_batches():
    with pytest.raises(ValueError, match="batches"):
        P.scores(_two_layer(), "snip")
    with pytest.raises(ValueError, match="num_batches"):
        P.scores(_two_layer(), "grasp", [(torch.randn(2, 3), torch.tensor([0, 1]))], num_batches=0)
