"""Which parameters of a model are sparse.

By default the weights of every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` are sparsifiable, and so are
the fused Q/K/V projection weights of ``nn.MultiheadAttention`` (Linear weights in all but name); biases,
normalisation parameters and embeddings are not unless named through ``extra_layers``. Users keep
layers dense with name patterns (``fnmatch`` globs over fully qualified parameter *or* module names)
and the two switches the papers use (dense first layer, dense classifier).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from torch import nn

SPARSIFIABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _matches(pattern: str, param_name: str) -> bool:
    module_name = param_name.rsplit(".", 1)[0] if "." in param_name else ""
    return fnmatch.fnmatchcase(param_name, pattern) or (
        module_name != "" and fnmatch.fnmatchcase(module_name, pattern)
    )


#: fused projection weights of ``nn.MultiheadAttention``: bare Parameters used as Linear weights
#: (``in_proj_weight`` is (3E, E) for Q/K/V together; the separate ones exist when kdim/vdim != E)
ATTENTION_PROJECTIONS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def _sparsifiable_weights(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(attribute name, parameter) of the weights of ``module`` that are sparse by default."""
    if isinstance(module, SPARSIFIABLE_TYPES) and isinstance(getattr(module, "weight", None), nn.Parameter):
        return [("weight", module.weight)]
    if isinstance(module, nn.MultiheadAttention):
        return [(a, getattr(module, a)) for a in ATTENTION_PROJECTIONS
                if isinstance(getattr(module, a, None), nn.Parameter)]
    return []


def candidate_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """All weights that are sparsifiable by type, in module registration order.

    Linear and ConvNd weights, and the Q/K/V projection weights of ``nn.MultiheadAttention``
    (treated as Linear weights of shape (out, in); its ``out_proj`` is an ``nn.Linear``).
    """
    found: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for attr, weight in _sparsifiable_weights(module):
            if id(weight) in seen:  # weight tying: sparsify the tensor once
                continue
            seen.add(id(weight))
            found[f"{module_name}.{attr}" if module_name else attr] = weight
    return found


def select_sparse_parameters(
    model: nn.Module,
    dense_layers: Sequence[str] | None = None,
    dense_first: bool = False,
    dense_last: bool = False,
    extra_layers: Sequence[str] | None = None,
) -> dict[str, nn.Parameter]:
    """Return the masked set: {fully qualified name: parameter}, in model order.

    ``dense_layers`` patterns must each match at least one candidate; ``extra_layers`` patterns
    add parameters that are not Linear/Conv weights (e.g. an embedding) and must match a
    parameter of the model with at least two dimensions.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    candidates = candidate_parameters(model)
    all_params = dict(model.named_parameters())
    for pattern in _as_list(extra_layers, "extra_layers"):
        hits = [n for n in all_params if _matches(pattern, n)]
        if not hits:
            raise ValueError(
                f"extra_layers pattern {pattern!r} matches no parameter; parameters are: {_preview(all_params)}"
            )
        for name in hits:
            if all_params[name].dim() < 2:
                raise ValueError(f"extra_layers pattern {pattern!r} matches {name!r} with shape "
                                 f"{tuple(all_params[name].shape)}; only tensors with >= 2 dims can be sparse")
            candidates.setdefault(name, all_params[name])
    # keep model order for extra layers too
    order = {n: i for i, n in enumerate(all_params)}
    candidates = dict(sorted(candidates.items(), key=lambda kv: order.get(kv[0], -1)))
    if not candidates:
        raise ValueError(
            f"model {type(model).__name__} has no sparsifiable layer (Linear/Conv1d/2d/3d weights); "
            "name other parameters with extra_layers=[...]"
        )
    names = list(candidates)
    dense: set[str] = set()
    for pattern in _as_list(dense_layers, "dense_layers"):
        hits = [n for n in names if _matches(pattern, n)]
        if not hits:
            raise ValueError(
                f"dense_layers pattern {pattern!r} matches no sparsifiable layer; allowed names: {_preview(candidates)}"
            )
        dense.update(hits)
    if dense_first:
        dense.add(names[0])
    if dense_last:
        dense.add(names[-1])
    selected = {n: p for n, p in candidates.items() if n not in dense}
    if not selected:
        raise ValueError("every sparsifiable layer was kept dense (dense_layers/dense_first/dense_last); "
                         "nothing is left to sparsify")
    return selected


def _as_list(patterns: Iterable[str] | str | None, what: str) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    out = list(patterns)
    for p in out:
        if not isinstance(p, str):
            raise ValueError(f"{what} must be strings (name patterns), got {p!r}")
    return out


def _preview(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
