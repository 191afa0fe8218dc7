"""Ticket mask criteria (Zhou et al. 2019) against scores computed by hand, and pruning with them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsetime.pruning import CRITERIA, criterion_score, prune_level, ticket_scores

W_I = torch.tensor([[0.5, -0.1], [-0.3, 0.2]])
W_F = torch.tensor([[0.1, -0.9], [0.4, 0.2]])


@pytest.mark.parametrize("criterion, expected", [
    ("large_final", [[0.1, 0.9], [0.4, 0.2]]),
    ("small_final", [[-0.1, -0.9], [-0.4, -0.2]]),
    ("large_init", [[0.5, 0.1], [0.3, 0.2]]),
    ("small_init", [[-0.5, -0.1], [-0.3, -0.2]]),
    ("large_init_large_final", [[0.1, 0.1], [0.3, 0.2]]),
    ("small_init_small_final", [[-0.5, -0.9], [-0.4, -0.2]]),
    ("magnitude_increase", [[-0.4, 0.8], [0.1, 0.0]]),
    ("movement", [[0.4, 0.8], [0.7, 0.0]]),  # |w_f - w_i| by hand
])
def test_each_criterion_matches_hand_computed_scores(criterion, expected):
    got = criterion_score(criterion, W_I, W_F)
    assert torch.allclose(got.float(), torch.tensor(expected), atol=1e-6)


def test_random_criterion_is_seeded_uniform_and_ignores_the_weights():
    a = criterion_score("random", W_I, W_F, torch.Generator().manual_seed(3))
    b = criterion_score("random", W_I * 0, W_F * 0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and bool(((a >= 0) & (a < 1)).all())


def test_unknown_criterion_names_the_allowed_ones():
    with pytest.raises(ValueError, match="largest.*allowed: large_final, small_final"):
        criterion_score("largest", W_I, W_F)
    assert len(CRITERIA) == 9


def test_prune_level_keeps_the_highest_criterion_scores_and_never_revives_pruned_weights():
    model = nn.Sequential(nn.Linear(4, 3, bias=False))
    init = {"0.weight": torch.randn(3, 4, generator=torch.Generator().manual_seed(0))}
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)))
    masks = {"0.weight": torch.ones(3, 4, dtype=torch.bool)}
    masks["0.weight"][0, 0] = False
    scores = ticket_scores("movement", init, dict(model.named_parameters()))
    new = prune_level(model, masks, 0.5, scores=scores)["0.weight"]
    movement = (model[0].weight.detach() - init["0.weight"]).abs()
    movement[0, 0] = -1  # pruned before: never kept
    keep = round(0.5 * 11)
    assert int(new.sum()) == keep and not new[0, 0]
    assert torch.equal(new.flatten().nonzero().squeeze(1).sort().values,
                       movement.flatten().topk(keep).indices.sort().values)
