"""RigL growth scores without a dense-sized temporary (the gradient criterion).

The dense weight gradient ``G = dY^T X`` is computed in blocks of rows; each block's |G| competes
in a streaming top-k, so memory is O(block_rows * in_features + k). Ties at the k-th score (for
example many exactly-zero gradients) are broken uniformly at random with the caller's generator:
if the streaming pass had to cut a tie, a second pass lists the tied candidates and draws them
exactly as :func:`sparsetime.core.topk.topk_mask` does (memory O(number of tied candidates)).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .topology import isin_sorted

BlockGrad = Callable[[int, int], torch.Tensor]
Transform = Callable[[torch.Tensor], torch.Tensor]


def _block_scores(block_grad: BlockGrad, r0: int, r1: int, excluded: torch.Tensor, cols: int,
                  transform: Transform = torch.abs) -> torch.Tensor:
    """``transform(dL/dW)`` (default |.|) for rows r0:r1, flattened, with excluded positions at -inf
    and NaN scores below every real score."""
    s = transform(block_grad(r0, r1)).reshape(-1)
    s = torch.nan_to_num_(s, nan=torch.finfo(s.dtype).min, posinf=float("inf"))
    lo = torch.searchsorted(excluded, torch.tensor(r0 * cols, device=excluded.device))
    hi = torch.searchsorted(excluded, torch.tensor(r1 * cols, device=excluded.device))
    s[excluded[lo:hi] - r0 * cols] = float("-inf")
    return s


def gradient_growth(xt: torch.Tensor, gyt: torch.Tensor, excluded: torch.Tensor, k: int,
                    generator: torch.Generator | None = None,
                    block_elems: int = 1 << 22) -> torch.Tensor:
    """Sorted flat indices of the k candidates with the largest |dL/dW|, W of shape (out, in).

    ``xt`` (in, batch) and ``gyt`` (out, batch) are the layer input and output gradient in
    features-major layout; ``excluded`` (sorted int64 flat indices) are the non-candidates,
    i.e. the weights active after the drop. ``block_elems`` bounds the temporary's size.
    """
    gyt = gyt.to(xt.dtype)
    return blockwise_topk(lambda r0, r1: gyt[r0:r1] @ xt.t(), (gyt.shape[0], xt.shape[0]),
                          excluded, k, generator, block_elems)


def blockwise_topk(block_grad: BlockGrad, shape: tuple[int, int], excluded: torch.Tensor, k: int,
                   generator: torch.Generator | None = None, block_elems: int = 1 << 22,
                   transform: Transform = torch.abs) -> torch.Tensor:
    """Sorted flat indices of the k non-excluded positions of a (rows, cols) matrix with the
    largest ``transform(entry)`` (default |entry|), where ``block_grad(r0, r1)`` computes rows
    r0:r1 (any layer type)."""
    out_f, in_f = shape
    excluded = excluded.reshape(-1).long()
    free = out_f * in_f - excluded.numel()
    if k < 0 or k > free:
        raise ValueError(f"cannot grow {k} weights: {free} inactive positions (k must be in [0, {free}])")
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=excluded.device)
    rows = max(1, block_elems // max(in_f, 1))
    dev = excluded.device
    best_v = torch.empty(0, device=dev)
    best_i = torch.empty(0, dtype=torch.long, device=dev)
    cut = float("-inf")
    for r0 in range(0, out_f, rows):
        r1 = min(out_f, r0 + rows)
        s = _block_scores(block_grad, r0, r1, excluded, in_f, transform)
        if s.numel() > k + 1:
            v, i = torch.topk(s, k + 1, sorted=False)
        else:
            v, i = s, torch.arange(s.numel(), device=s.device)
        v = torch.cat([best_v.to(v.dtype), v])
        i = torch.cat([best_i, i + r0 * in_f])
        if v.numel() > k:
            v2, j = torch.topk(v, k + 1, sorted=True)
            cut = max(cut, float(v2[k]))
            best_v, best_i = v2[:k], i[j[:k]]
        else:
            best_v, best_i = v, i
    tau = float(best_v.min())
    if cut < tau:
        return best_i.sort().values
    # a tie at the threshold was cut somewhere: choose the tied candidates uniformly at random, with
    # the same draw as core.topk.topk_mask over the candidates (a randperm over the tied positions in
    # ascending order), so the masked and the sparse engine pick the same positions
    sure = best_i[best_v > tau]
    need = k - sure.numel()
    tied_all = []
    for r0 in range(0, out_f, rows):
        r1 = min(out_f, r0 + rows)
        s = _block_scores(block_grad, r0, r1, excluded, in_f, transform)
        tied = (s == tau).nonzero().squeeze(1)
        if tied.numel():
            tied_all.append(tied + r0 * in_f)
    tied = torch.cat(tied_all)
    pick = torch.randperm(tied.numel(), generator=generator, device="cpu")[:need].to(dev)
    key_i = tied[pick]
    chosen = torch.cat([sure, key_i])
    if isin_sorted(excluded, chosen).any():  # pragma: no cover - guarded by the -inf scores
        raise RuntimeError("gradient growth picked an excluded position")
    return chosen.sort().values
