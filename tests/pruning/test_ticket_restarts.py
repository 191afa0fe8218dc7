"""Ticket restarts (Zhou et al. 2019) and perturbations (Frankle et al. 2020b) on tiny tensors."""
from __future__ import annotations

import pytest
import torch

from sparsetime.pruning import perturb, restart_weights
from sparsetime.pruning.perturbations import add_noise
from sparsetime.pruning.ticket_restarts import restart_layer

G = torch.Generator().manual_seed(0)
START = torch.randn(6, 10, generator=G)
INIT = torch.randn(6, 10, generator=G)
MASK = torch.rand(6, 10, generator=G) < 0.6
FRESH = torch.randn(6, 10, generator=G)


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(5)


def test_rewind_keeps_the_start_weights_and_reinit_takes_the_fresh_ones_where_kept():
    assert torch.equal(restart_layer("rewind", START, MASK), START)
    got = restart_layer("reinit", START, MASK, FRESH)
    assert torch.equal(got[MASK], FRESH[MASK]) and torch.equal(got[~MASK], START[~MASK])


def test_reshuffle_permutes_the_surviving_start_values_within_the_layer():
    got = restart_layer("reshuffle", START, MASK, generator=gen())
    assert torch.equal(got[MASK].sort().values, START[MASK].sort().values)
    assert not torch.equal(got[MASK], START[MASK]) and torch.equal(got[~MASK], START[~MASK])


def test_constant_is_plus_minus_the_layer_std_with_the_start_signs():
    got = restart_layer("constant", START, MASK)
    alpha = ((START - START.mean()) ** 2).mean().sqrt()  # population std, by hand
    assert torch.allclose(got[MASK].abs(), alpha.expand(int(MASK.sum())))
    assert torch.equal(torch.sign(got[MASK]), torch.sign(START[MASK]))


def test_signs_keep_the_start_signs_with_fresh_magnitudes():
    got = restart_layer("signs", START, MASK, FRESH)
    assert torch.equal(got[MASK], torch.sign(START[MASK]) * FRESH[MASK].abs())


def test_unknown_restart_and_missing_fresh_weights_are_refused():
    with pytest.raises(ValueError, match="'late'.*allowed: rewind, reinit, reshuffle, constant, signs"):
        restart_weights("late", {"w": START}, {"w": MASK})
    with pytest.raises(ValueError, match="fresh"):
        restart_layer("signs", START, MASK)


def test_signs_and_magnitudes_to_init():
    s = perturb("signs_to_init", {"w": START}, {"w": INIT}, {"w": MASK})["w"]
    assert torch.equal(s[MASK], START[MASK].abs() * torch.sign(INIT[MASK])) and torch.equal(s[~MASK], START[~MASK])
    m = perturb("magnitudes_to_init", {"w": START}, {"w": INIT}, {"w": MASK})["w"]
    assert torch.equal(m[MASK], torch.sign(START[MASK]) * INIT[MASK].abs())


def test_permute_layer_and_filter_preserve_the_multisets():
    layer = perturb("permute_layer", {"w": START}, {"w": INIT}, {"w": MASK}, generator=gen())["w"]
    assert torch.equal(layer[MASK].sort().values, START[MASK].sort().values) and not torch.equal(layer, START)
    rows = perturb("permute_filter", {"w": START}, {"w": INIT}, {"w": MASK}, generator=gen())["w"]
    for r in range(START.shape[0]):  # each filter keeps its own surviving values
        assert torch.equal(rows[r][MASK[r]].sort().values, START[r][MASK[r]].sort().values)
    assert torch.equal(rows[~MASK], START[~MASK]) and not torch.equal(rows, START)


def test_permute_global_mixes_layers_but_keeps_the_global_multiset():
    tickets = {"a": START, "b": INIT[:2]}
    masks = {"a": MASK, "b": torch.ones(2, 10, dtype=torch.bool)}
    got = perturb("permute_global", tickets, tickets, masks, generator=gen())
    before = torch.cat([START[MASK], INIT[:2].flatten()]).sort().values
    after = torch.cat([got["a"][MASK], got["b"].flatten()]).sort().values
    assert torch.equal(before, after) and not torch.equal(got["b"].sort().values, INIT[:2].sort().values)
    assert torch.equal(got["a"][~MASK], START[~MASK])


def test_same_sign_permutation_preserves_every_sign_and_each_signs_multiset():
    got = perturb("permute_same_sign", {"w": START}, {"w": INIT}, {"w": MASK}, generator=gen())["w"]
    assert torch.equal(torch.sign(got), torch.sign(START)) and not torch.equal(got, START)
    for sel in (MASK & (START >= 0), MASK & (START < 0)):
        assert torch.equal(got[sel].sort().values, START[sel].sort().values)


def test_noise_has_the_requested_std_relative_to_the_init_std():
    ticket = torch.zeros(400, 500)
    mask = torch.ones_like(ticket, dtype=torch.bool)
    mask[0] = False
    got = add_noise(ticket, mask, 0.5, 2.0, gen())
    assert got[mask].std().item() == pytest.approx(1.0, rel=0.01) and bool((got[0] == 0).all())
    assert torch.equal(add_noise(ticket, mask, 0.0, 2.0, gen()), ticket)
    with pytest.raises(ValueError, match="noise_scale = -1.*>= 0"):
        add_noise(ticket, mask, -1.0, 2.0)


def test_unknown_perturbation_is_refused():
    with pytest.raises(ValueError, match="'flip'.*allowed: signs_to_init"):
        perturb("flip", {"w": START}, {"w": INIT}, {"w": MASK})
