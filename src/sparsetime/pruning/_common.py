"""Small helpers shared by the pruning modules: argument checks, batch handling, devices.

Private to :mod:`sparsetime.pruning`; the public functions validate through these so every bad
value raises the same kind of ValueError (naming the value and what is allowed).
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sparsetime.core.distributions import check_density  # noqa: F401  the pruning modules validate with it
from sparsetime.core.selection import select_sparse_parameters

logger = logging.getLogger(__name__)

SCOPES = ("global", "layer")
Masks = dict[str, torch.Tensor]
Batch = tuple[Any, Any]


def check_fraction(fraction: float, what: str = "fraction") -> float:
    """Return ``fraction`` as a float after checking it lies in the open interval (0, 1)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ValueError(f"{what} must be a number in (0, 1), got {fraction!r}")
    value = float(fraction)
    if not (0.0 < value < 1.0):
        raise ValueError(f"{what} must be in the open interval (0, 1), got {fraction!r}")
    return value


def check_scope(scope: str) -> str:
    """Return ``scope`` after checking it is 'global' or 'layer'."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    return scope


def check_int(value: Any, what: str, minimum: int | None = None) -> int:
    """Return ``value`` as an int after checking its type and lower bound."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    return int(value)


def selected_names(model: nn.Module, dense_layers: Sequence[str] | None = None, dense_first: bool = False,
                   dense_last: bool = False, extra_layers: Sequence[str] | None = None) -> list[str]:
    """Names of the masked set of ``model`` (raises ValueError for a model with no sparsifiable layer)."""
    return list(select_sparse_parameters(model, dense_layers=dense_layers, dense_first=dense_first,
                                         dense_last=dense_last, extra_layers=extra_layers))


def parameters_by_name(model: nn.Module, names: Iterable[str]) -> list[nn.Parameter]:
    """The parameters of ``model`` called ``names`` (in that order)."""
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"parameters {missing} not found in model; it has: {list(params)[:12]}")
    return [params[n] for n in names]


def check_masks(masks: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor] | None = None,
                what: str = "masks") -> None:
    """Check masks are bool tensors (and, given ``params``, named and shaped like them)."""
    if not isinstance(masks, Mapping) or not masks:
        raise ValueError(f"{what} must be a non-empty mapping of parameter name -> bool tensor, got {masks!r}")
    for name, mask in masks.items():
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            kind = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"{what}[{name!r}] must be a bool tensor, got {kind}")
        if params is not None:
            if name not in params:
                raise ValueError(f"{what} names {name!r}, which is not a parameter; allowed: {list(params)[:12]}")
            if tuple(params[name].shape) != tuple(mask.shape):
                raise ValueError(f"{what}[{name!r}] has shape {tuple(mask.shape)}, parameter has "
                                 f"{tuple(params[name].shape)}")


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to compute on: ``device`` if given, else the model's own device."""
    return torch.device(device) if device is not None else model_device(model)


def to_device(obj: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """Move a tensor, or tensors nested in tuples/lists/dicts, to ``device`` (floats also to ``dtype``)."""
    if isinstance(obj, torch.Tensor):
        if dtype is not None and obj.is_floating_point():
            return obj.to(device=device, dtype=dtype)
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device, dtype) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device, dtype) for k, v in obj.items()}
    return obj


def take_batches(batches: Iterable[Batch] | None, num_batches: int, method: str) -> list[Batch]:
    """The first ``num_batches`` (x, y) pairs of ``batches``; ValueError when there are none."""
    if batches is None:
        raise ValueError(f"method {method!r} needs batches=<iterable of (inputs, targets)>, got None")
    num_batches = check_int(num_batches, "num_batches", minimum=1)
    taken = list(itertools.islice(iter(batches), num_batches))
    if not taken:
        raise ValueError(f"method {method!r}: batches yielded no (inputs, targets) pair")
    for b in taken:
        if not isinstance(b, (tuple, list)) or len(b) < 2:
            raise ValueError(f"method {method!r}: each batch must be an (inputs, targets) pair, got {type(b).__name__}")
    if len(taken) < num_batches:
        logger.warning("%s: asked for %d batches, the iterable gave only %d", method, num_batches, len(taken))
    return taken


def default_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
                 ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss_fn`` or cross-entropy (mean over the batch)."""
    if loss_fn is None:
        return nn.functional.cross_entropy
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable (outputs, targets) -> scalar, got {loss_fn!r}")
    return loss_fn


def make_generator(generator: torch.Generator | None = None, seed: int | None = None) -> torch.Generator | None:
    """``generator`` if given, else a CPU generator seeded with ``seed`` (None when neither is given)."""
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if seed is None:
        return None
    return torch.Generator().manual_seed(check_int(seed, "seed"))


def working_copy(model: nn.Module, names: Sequence[str], masks: Mapping[str, torch.Tensor] | None,
                 device: torch.device, dtype: torch.dtype | None = None) -> tuple[nn.Module, list[nn.Parameter]]:
    """A deep copy of ``model`` to score on, so the caller's weights, buffers and grads stay untouched.

    The copy is moved to ``device`` (and ``dtype``), pruned weights (``masks`` False) are zeroed, and
    only the parameters called ``names`` require grad. Returns the copy and those parameters.
    """
    import copy

    work = copy.deepcopy(model)
    work.to(device=device) if dtype is None else work.to(device=device, dtype=dtype)
    params = dict(work.named_parameters())
    if masks is not None:
        check_masks(masks, params)
    for p in work.parameters():
        p.grad = None
        p.requires_grad_(False)
    chosen = parameters_by_name(work, names)
    with torch.no_grad():
        for name, p in zip(names, chosen):
            if masks is not None and name in masks:
                p.masked_fill_(~masks[name].to(p.device), 0)
            p.requires_grad_(True)
    return work, chosen
