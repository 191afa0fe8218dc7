"""Sparse execution reproduces masked training: same losses over a few hundred steps.

The masked reference is written here independently: dense weights times a bool mask, weights and
momentum re-masked after every optimizer step, drop by |w| over the dense masked weight with
:func:`select_topk`, grown weights and their momentum set to 0. Growth is random, so the masked
run replays the positions the sparse run grew; the drop sets are computed separately and must agree.
"""
import torch
import torch.nn.functional as F

from sparsetime.core.topk import select_topk
from sparsetime.nn import SparseLinear

SIZES = [(20, 48), (48, 48), (48, 5)]


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g, dtype=torch.float64)
    y = (x[:, :5].sum(1) * 2 + x[:, 5]).floor().long().clamp(-2, 2) + 2
    return x, y


def _run_pair(store_update, backend, steps=300, delta_t=25, frac=0.3, batch=16):
    gen = torch.Generator().manual_seed(0)
    sparse = [SparseLinear(i, o, 0.25, generator=gen, backend=backend).double() for i, o in SIZES]
    masks = [(layer.to_dense() != 0).detach() for layer in sparse]
    dense = [layer.to_dense().detach().clone().requires_grad_() for layer in sparse]
    dbias = [layer.bias.detach().clone().requires_grad_() for layer in sparse]
    sgd = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    opt_s = torch.optim.SGD([p for layer in sparse for p in layer.parameters()], **sgd)
    opt_d = torch.optim.SGD(dense + dbias, **sgd)
    x, y = _data()
    topo_gen = torch.Generator().manual_seed(1)
    losses_s, losses_d = [], []
    for t in range(1, steps + 1):
        idx = torch.arange((t * batch) % 256, (t * batch) % 256 + batch) % 256
        xb, yb = x[idx], y[idx]
        h = xb
        for i, layer in enumerate(sparse):
            h = layer(h) if i == len(sparse) - 1 else torch.relu(layer(h))
        loss_s = F.cross_entropy(h, yb)
        opt_s.zero_grad()
        loss_s.backward()
        opt_s.step()
        h = xb
        for i, (w, b) in enumerate(zip(dense, dbias)):
            h = F.linear(h, w, b) if i == len(dense) - 1 else torch.relu(F.linear(h, w, b))
        loss_d = F.cross_entropy(h, yb)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        with torch.no_grad():
            for w, m in zip(dense, masks):
                w.mul_(m)
                opt_d.state[w]["momentum_buffer"].mul_(m)
        losses_s.append(loss_s.item())
        losses_d.append(loss_d.item())
        if t % delta_t == 0:
            for i, layer in enumerate(sparse):
                k = int(frac * layer.nnz)
                upd, _ = store_update(layer, k, "random", topo_gen, opt_s)
                active = masks[i].reshape(-1).nonzero().squeeze(1)
                w = dense[i].detach().reshape(-1)
                drop = active[select_topk(w[active].abs(), k, largest=False)]
                assert torch.equal(drop, upd.dropped), f"drop sets differ at step {t}, layer {i}"
                m = masks[i].reshape(-1).clone()
                m[drop] = False
                assert not m[upd.grown].any(), "grown an active position"
                m[upd.grown] = True
                masks[i] = m.view_as(masks[i])
                with torch.no_grad():
                    buf = opt_d.state[dense[i]]["momentum_buffer"]
                    for tensor in (dense[i], buf):
                        flat = tensor.view(-1)
                        flat[drop] = 0.0
                        flat[upd.grown] = 0.0
                assert torch.equal(layer.flat_indices(), masks[i].reshape(-1).nonzero().squeeze(1))
    return torch.tensor(losses_s), torch.tensor(losses_d), sparse, dense


def test_sparse_and_masked_runs_give_the_same_losses(store_update, backend, one_thread):
    ls, ld, sparse, dense = _run_pair(store_update, backend)
    assert ls.numel() == 300
    torch.testing.assert_close(ls, ld, rtol=1e-9, atol=1e-9)
    assert ls[-20:].mean() < ls[:20].mean()  # it actually trained
    for layer, w in zip(sparse, dense):
        torch.testing.assert_close(layer.to_dense().detach(), w.detach(), rtol=1e-9, atol=1e-9)
