"""Masks to and from ``torch.nn.utils.prune``: the ``weight_orig`` / ``weight_mask`` convention.

torch's pruning utilities (and Lightning's ``ModelPruning``, which wraps them) keep a pruned
tensor ``weight`` as a parameter ``weight_orig``, a buffer ``weight_mask`` and a forward pre-hook
that computes ``weight = weight_orig * weight_mask``.

* :func:`to_torch_prune` hands a sparse model to those tools: each masked weight becomes that
  re-parametrisation (``prune.custom_from_mask``), so ``prune.is_pruned``, ``prune.remove``, further
  pruning (masks combine) and ``ModelPruning.make_pruning_permanent`` all work on it.
* :func:`masks_from_torch_prune` reads the masks of a model pruned with them, by default making
  the pruning permanent (``prune.remove``: ``weight`` is a plain Parameter again, the same object
  as ``weight_orig``, so an optimizer built before stays attached), ready to seed a dynamic
  sparse run with ``DynamicSparsity(model, optimizer, initial_masks=masks)``.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from sparsetime.nn import SparseModule, densify


def _split(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, tensor = name.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        module = None
    if module is None or not isinstance(module._parameters.get(tensor), nn.Parameter):
        allowed = [n for n, _ in model.named_parameters()]
        raise ValueError(f"mask name {name!r} is not a parameter of the model; allowed: {allowed}")
    return module, tensor


def to_torch_prune(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """Re-parametrise every weight named in ``masks`` ({parameter name: bool mask}, e.g. a
    sparsifier's ``masks``) as ``<name>_orig`` * ``<name>_mask``, in place; returns the model.

    Sparse modules (``SparseLinear``/``SparseConv2d``) are first replaced by dense layers holding
    their pattern as the mask, so a model trained with ``execution="sparse"`` exports too. Do this
    at the end of dynamic sparse training: the sparsifier no longer drives the pruned weights.
    """
    masks = dict(masks or {})
    for name, module in model.named_modules():
        if isinstance(module, SparseModule):
            masks[(f"{name}." if name else "") + "weight"] = module.dense_mask()
    if any(isinstance(m, SparseModule) for m in model.modules()):
        if isinstance(model, SparseModule):
            raise ValueError("the model itself is a sparse module; wrap it in a container (nn.Sequential) first")
        densify(model)
    targets = []
    for name, mask in masks.items():
        module, tensor = _split(model, name)
        weight = module._parameters[tensor]
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != weight.shape:
            raise ValueError(f"mask of {name!r} must be a bool tensor of shape {tuple(weight.shape)}")
        targets.append((module, tensor, mask.to(weight.device)))
    for module, tensor, mask in targets:  # all checked: now change the model
        prune.custom_from_mask(module, tensor, mask)
    return model


def masks_from_torch_prune(model: nn.Module, make_permanent: bool = True) -> dict[str, torch.Tensor]:
    """{parameter name: bool mask} of every tensor pruned with ``torch.nn.utils.prune`` in ``model``.

    With ``make_permanent`` (default) the pruning is removed, leaving plain parameters that are
    zero where the mask is False, under their own names (``fc.weight``), which is what
    ``DynamicSparsity(initial_masks=...)`` needs. ValueError when nothing in the model is pruned.
    """
    found: list[tuple[str, nn.Module, str]] = []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for buffer_name in list(module._buffers):
            tensor = buffer_name[: -len("_mask")]
            if buffer_name.endswith("_mask") and isinstance(module._parameters.get(f"{tensor}_orig"), nn.Parameter):
                found.append((prefix + tensor, module, tensor))
    if not found:
        raise ValueError("no tensor of the model is pruned with torch.nn.utils.prune (no '<name>_orig' parameter "
                         "with a '<name>_mask' buffer)")
    masks = {}
    for name, module, tensor in found:
        masks[name] = module._buffers[f"{tensor}_mask"].detach().to(torch.bool).clone()
        if make_permanent:
            prune.remove(module, tensor)
    return masks
