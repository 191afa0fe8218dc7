"""DynamicSparsity under DistributedDataParallel: 2 CPU processes with gloo.

Ranks are seeded differently on purpose (model init and sparsifier seed). Every rank must hold
the same masks after every update, the same Rs and exploration statistics, and end with the
weights of a single-process run on the same global batches. The tolerance is 1e-9 relative in
float64: DDP averages two half-batch gradients where one process averages the whole batch, so
the sums are taken in another order; the topologies are compared exactly.
"""
import pytest
import torch
import torch.multiprocessing as mp

import ddp_workers as w

STEPS = 12


def _spawn(tmp_path, target, *args):
    mp.spawn(w.run_rank, args=(2, str(tmp_path / "init"), target, *args), nprocs=2, join=True)
    errors = [p.read_text() for p in sorted(tmp_path.glob("rank*.err"))]
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) if (tmp_path / f"rank{r}.pt").exists()
               else None for r in range(2)]
    return results, errors


def _single(growth, execution, out):
    """The reference: one process, rank 0's seeds, the whole global batch each step."""
    import os

    w_batch, w.BATCH = w.BATCH, w.BATCH * 2
    try:
        w.train(0, 1, growth, execution, STEPS, str(out))
    finally:
        w.BATCH = w_batch
    assert not os.path.exists(out / "rank0.err"), (out / "rank0.err").read_text()
    return torch.load(out / "rank0.pt", weights_only=True)


@pytest.mark.parametrize("growth,execution", [
    ("random", "masked"), ("gradient", "masked"), ("momentum", "masked"), ("unexplored", "masked"),
    ("random", "sparse"), ("gradient", "sparse"), ("unexplored", "sparse"),
])
def test_ranks_train_one_network_equal_to_a_single_process(tmp_path, growth, execution):
    (a, b), errors = _spawn(tmp_path, w.train, growth, execution, STEPS, str(tmp_path))
    assert errors == []
    assert len(a["actives"]) == len(b["actives"]) == STEPS // 3
    for upd_a, upd_b in zip(a["actives"], b["actives"]):
        assert all(torch.equal(upd_a[n], upd_b[n]) for n in upd_a)
    assert a["rs"] == b["rs"] and a["stats"] == b["stats"] and a["layer_rates"] == b["layer_rates"]
    expected = {"masked": {"masked"}, "sparse": {"sparse"}}[execution]
    assert set(a["execution"].values()) == expected
    single_dir = tmp_path / "single"
    single_dir.mkdir()
    ref = _single(growth, execution, single_dir)
    for upd_a, upd_ref in zip(a["actives"], ref["actives"]):
        assert all(torch.equal(upd_a[n], upd_ref[n]) for n in upd_a)
    assert a["rs"] == ref["rs"]
    for name, value in ref["weights"].items():
        torch.testing.assert_close(a["weights"][name], value, rtol=1e-9, atol=1e-12)
        assert torch.equal(a["weights"][name], b["weights"][name]), name


def test_a_desynchronised_rank_is_caught_by_the_consistency_check(tmp_path):
    _, errors = _spawn(tmp_path, w.train, "random", "masked", STEPS, str(tmp_path), True)
    assert len(errors) == 2  # every rank raises, none hangs
    for text in errors:
        first = text.splitlines()[0]
        assert first.startswith("TopologyMismatchError: the sparse topology of layer '2.weight' differs across ranks")
        assert "ranks [0]" in first and "ranks [1]" in first


@pytest.mark.parametrize("kind", ["gmp", "snip"])
def test_pruning_masks_are_the_same_on_every_rank(tmp_path, kind):
    (a, b), errors = _spawn(tmp_path, w.prune, kind, 10, str(tmp_path))
    assert errors == []
    assert all(torch.equal(a["masks"][n], b["masks"][n]) for n in a["masks"])
    if kind == "snip":  # scored on different batches, the ranks' own masks differed; rank 0's won
        assert any(not torch.equal(a["local"][n], b["local"][n]) for n in a["local"])
        assert all(torch.equal(a["masks"][n], a["local"][n]) for n in a["masks"])
    else:
        total = sum(m.numel() for m in a["masks"].values())
        assert sum(int(m.sum()) for m in a["masks"].values()) == round(0.1 * total)
