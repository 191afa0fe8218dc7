"""Dense-to-sparse baselines: pruning scores, masks from scores, GMP, lottery tickets, mask analysis.

Every function works on any ``nn.Module`` without the runner; masks are {fully qualified
parameter name: bool tensor} and can seed a dynamic sparse training run
(``DynamicSparsity(..., initial_masks=masks)``).
"""
from .connectivity import InstabilityResult, interpolate_instability, recompute_bn_statistics
from .gmp import GradualMagnitudePruner, check_gmp_schedule, gmp_density
from .grasp import grasp_scores
from .lottery import lth_density, lth_levels, prune_level, random_masks, random_reinit, rewind, snapshot
from .mask_distance import EarlyBird, hamming_distance
from .masking import (apply_masks, layer_topk_masks, mask_density, masks_from_scores, topk_masks,
                      zero_optimizer_state)
from .oneshot import SCORE_FUNCTIONS, magnitude_prune, prune, score_options, scores
from .perturbations import PERTURBATIONS, perturb
from .saliency import magnitude_scores, random_scores, snip_scores
from .synflow import synflow_scores
from .ticket_criteria import CRITERIA, criterion_score, ticket_scores
from .ticket_restarts import RESTARTS, restart_weights

METHODS = tuple(SCORE_FUNCTIONS)

__all__ = [
    "CRITERIA", "METHODS", "PERTURBATIONS", "RESTARTS", "EarlyBird", "GradualMagnitudePruner", "InstabilityResult",
    "apply_masks", "check_gmp_schedule", "criterion_score", "gmp_density", "grasp_scores", "hamming_distance",
    "interpolate_instability", "layer_topk_masks", "lth_density", "lth_levels", "magnitude_prune",
    "magnitude_scores", "mask_density", "masks_from_scores", "perturb", "prune", "prune_level", "random_masks",
    "random_reinit", "random_scores", "recompute_bn_statistics", "restart_weights", "rewind", "score_options", "scores",
    "snapshot", "snip_scores", "synflow_scores", "ticket_scores", "topk_masks", "zero_optimizer_state",
]
