"""start_ticket: restarts and perturbations applied in place to a model holding the step-k weights."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsetime.pruning import random_reinit
from sparsetime.train.ticket_start import check_ticket_options, start_ticket


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


MASKS = {"0.weight": torch.rand(5, 6, generator=torch.Generator().manual_seed(1)) < 0.5,
         "2.weight": torch.rand(3, 5, generator=torch.Generator().manual_seed(2)) < 0.5}


def test_rewind_changes_nothing_and_frozen_returns_the_start_values():
    model = tiny()
    before = copy.deepcopy(model.state_dict())
    frozen = start_ticket(model, MASKS, before, {"pruned": "frozen"}, seed=7)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(frozen[n], before[n]) for n in MASKS)
    assert start_ticket(model, MASKS, before, {}, seed=7) is None


def test_reinit_is_the_reinit_control_and_signs_take_its_magnitudes():
    model, reference = tiny(), tiny()
    start = copy.deepcopy(model.state_dict())
    random_reinit(reference, seed=7)
    start_ticket(model, MASKS, start, {"restart": "reinit"}, seed=7)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    model = tiny()
    start_ticket(model, MASKS, start, {"restart": "signs"}, seed=7)
    for n, m in MASKS.items():
        got, fresh = model.state_dict()[n], reference.state_dict()[n]
        assert torch.equal(got[m], torch.sign(start[n][m]) * fresh[m].abs()) and torch.equal(got[~m], start[n][~m])
    assert torch.equal(model.state_dict()["0.bias"], start["0.bias"])  # only the masked weights change


def test_constant_restart_then_noise_perturbation():
    model = tiny()
    start = copy.deepcopy(model.state_dict())
    start_ticket(model, MASKS, start, {"restart": "constant", "perturb": "noise", "noise_scale": 0.0}, seed=7)
    for n, m in MASKS.items():
        alpha = start[n].std(unbiased=False)
        assert torch.allclose(model.state_dict()[n][m], torch.sign(start[n][m]) * alpha)


def test_perturbation_resets_signs_to_the_step_0_weights():
    model, init = tiny(), tiny()
    with torch.no_grad():
        for p in init.parameters():
            p.neg_()
    start = copy.deepcopy(model.state_dict())
    start_ticket(model, MASKS, init.state_dict(), {"perturb": "signs_to_init"}, seed=7)
    for n, m in MASKS.items():
        assert torch.equal(model.state_dict()[n][m], -start[n][m])


@pytest.mark.parametrize("options, match", [
    ({"criterion": "big"}, "criterion = 'big' is invalid; allowed: large_final"),
    ({"perturb": "noise", "noise_scale": -1}, "noise_scale = -1 is invalid; allowed: a number >= 0"),
    ({"perturb": "noise", "noise_scale": float("inf")}, "noise_scale = inf is invalid"),
    ({"restart": "again"}, "restart = 'again' is invalid; allowed: rewind, reinit, reshuffle, constant, signs"),
])
def test_bad_ticket_options_name_the_value_and_the_allowed_ones(options, match):
    with pytest.raises(ValueError, match=match):
        check_ticket_options(options)
