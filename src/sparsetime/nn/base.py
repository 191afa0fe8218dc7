"""Shared machinery of sparse modules: weight values as one nnz-length Parameter, int32 CSR index
buffers over the weight viewed as a matrix (out, fan_in), conversion and topology updates.

Subclasses (:class:`SparseLinear`, :class:`SparseConv2d`) add the forward pass and the dense
gradient rows needed for RigL growth (``_grad_rows``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..core.distributed import all_gather_cat
from ..core.distributions import active_count, check_density
from ..core.index_sets import mask_from_indices
from ..kernels._torch_impl import csr_tensor
from ..kernels.csr import CSRPattern, flat_indices, pattern_from_flat, validate_csr
from ..kernels.gradient_growth import blockwise_topk
from ..kernels.topology import remap, remap_optimizer_state, sample_absent


def check_positive(name: str, value: int) -> int:
    """A positive int, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class SparseModule(nn.Module):
    """Base of modules whose weight (shape ``weight_shape``) is stored as CSR over (out, fan_in)."""

    weight_shape: tuple[int, ...]
    backend: str | None

    # ------------------------------------------------------------------ construction
    def _init_sparse(self, weight_shape: tuple[int, ...], density: float | None, bias: bool,
                     rescale_init: bool, generator: torch.Generator | None,
                     device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        """Random exact-count pattern and ``nn.Linear``/``nn.Conv`` style initial values."""
        self.weight_shape = tuple(int(s) for s in weight_shape)
        rows, cols = self.matrix_shape
        dtype = dtype or torch.get_default_dtype()
        nnz = active_count(check_density(density), rows * cols)
        flat = sample_absent(rows * cols, torch.empty(0, dtype=torch.long), nnz, generator)
        pattern = pattern_from_flat(flat, (rows, cols), check=False)
        bound = 1.0 / math.sqrt(cols)
        values = (torch.rand(nnz, generator=generator, dtype=dtype) * 2 - 1) * bound
        if rescale_init:  # keep each unit's pre-activation variance (sparse-aware init)
            fan_in = (pattern.row_ptr[1:] - pattern.row_ptr[:-1]).long()
            scale = torch.sqrt(cols / fan_in.clamp(min=1).to(dtype))
            values = values * torch.repeat_interleave(scale, fan_in)
        self.weight_values = nn.Parameter(values.to(device))
        if bias:
            b = (torch.rand(rows, generator=generator, dtype=dtype) * 2 - 1) * bound
            self.bias = nn.Parameter(b.to(device))
        else:
            self.register_parameter("bias", None)
        self._register_pattern(pattern.to(device or "cpu"))
        self._sink: dict | None = None

    def _init_from(self, weight_shape: tuple[int, ...], pattern: CSRPattern, values: torch.Tensor,
                   bias: torch.Tensor | None) -> None:
        """Install a given pattern, values (CSR order) and bias."""
        self.weight_shape = tuple(int(s) for s in weight_shape)
        if tuple(pattern.shape) != self.matrix_shape:
            raise ValueError(f"pattern shape {pattern.shape} does not match the weight {self.weight_shape}")
        self.weight_values = nn.Parameter(values.detach().clone().reshape(-1))
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().clone().to(values.dtype))
        else:
            self.register_parameter("bias", None)
        self._register_pattern(pattern.to(values.device))
        self._sink = None

    def _register_pattern(self, p: CSRPattern) -> None:
        self.register_buffer("row_ptr", p.row_ptr)
        self.register_buffer("col_idx", p.col_idx)
        self.register_buffer("t_row_ptr", p.t_row_ptr, persistent=False)
        self.register_buffer("t_col_idx", p.t_col_idx, persistent=False)
        self.register_buffer("t_perm", p.t_perm, persistent=False)

    def _set_pattern(self, p: CSRPattern) -> None:
        dev = self.weight_values.device
        self.row_ptr, self.col_idx = p.row_ptr.to(dev), p.col_idx.to(dev)
        self.t_row_ptr, self.t_col_idx, self.t_perm = p.t_row_ptr.to(dev), p.t_col_idx.to(dev), p.t_perm.to(dev)

    # ------------------------------------------------------------------ shape and pattern
    @property
    def matrix_shape(self) -> tuple[int, int]:
        """The weight as a matrix: (out, fan_in) with fan_in = prod(weight_shape[1:])."""
        return self.weight_shape[0], math.prod(self.weight_shape[1:])

    @property
    def pattern(self) -> CSRPattern:
        """The current CSR pattern (with its cached transpose)."""
        return CSRPattern(self.matrix_shape, self.row_ptr, self.col_idx, self.t_row_ptr,
                          self.t_col_idx, self.t_perm)

    @property
    def nnz(self) -> int:
        """Number of stored (active) weights."""
        return int(self.col_idx.numel())

    @property
    def density(self) -> float:
        """Realised density nnz / number of dense weights."""
        return self.nnz / math.prod(self.weight_shape)

    def flat_indices(self) -> torch.Tensor:
        """Sorted int64 flat indices of the active weights into the dense weight (row-major)."""
        return flat_indices(self.row_ptr, self.col_idx, self.matrix_shape[1])

    # ------------------------------------------------------------------ conversion
    def to_dense(self) -> torch.Tensor:
        """The dense weight of shape ``weight_shape``; differentiable w.r.t. ``weight_values``."""
        dense = self.weight_values.new_zeros(math.prod(self.weight_shape))
        dense = dense.index_put((self.flat_indices(),), self.weight_values)
        return dense.view(self.weight_shape)

    def dense_mask(self) -> torch.Tensor:
        """Boolean mask of the active positions, shape ``weight_shape`` (for the masked engine)."""
        return mask_from_indices(self.flat_indices(), self.weight_shape, self.row_ptr.device)

    def to_sparse_csr(self) -> torch.Tensor:
        """The weight as a (out, fan_in) torch sparse CSR tensor (int64 indices, copied values)."""
        return csr_tensor(self.row_ptr.long(), self.col_idx.long(), self.weight_values.detach().clone(),
                          self.matrix_shape)

    def to_sparse_coo(self) -> torch.Tensor:
        """The weight as a coalesced torch sparse COO tensor of shape ``weight_shape``."""
        idx = torch.stack(torch.unravel_index(self.flat_indices(), self.weight_shape))
        return torch.sparse_coo_tensor(idx, self.weight_values.detach().clone(), self.weight_shape,
                                       is_coalesced=True, check_invariants=False)

    # ------------------------------------------------------------------ topology
    @torch.no_grad()
    def set_topology(self, new_flat: torch.Tensor, src: torch.Tensor,
                     optimizer: torch.optim.Optimizer | None = None) -> None:
        """Switch to the sorted positions ``new_flat``; entry j takes old entry ``src[j]`` (value,
        gradient, optimizer state) or starts at exactly 0 when ``src[j] < 0``.

        The Parameter object is kept (its ``.data`` is replaced), so optimizers stay attached.
        """
        if src.numel() != new_flat.numel():
            raise ValueError(f"src has {src.numel()} entries, new_flat has {new_flat.numel()}")
        old_numel = self.weight_values.numel()
        if src.numel() and int(src.max()) >= old_numel:
            raise ValueError(f"src refers to entry {int(src.max())} but the layer has {old_numel}")
        pattern = pattern_from_flat(new_flat.to("cpu"), self.matrix_shape)
        p = self.weight_values
        src = src.to(p.device).long()
        p.data = remap(p.data, src)
        if p.grad is not None:
            p.grad = remap(p.grad, src)
        self._set_pattern(pattern)
        if optimizer is not None:
            remap_optimizer_state(optimizer, p, src, old_numel)

    def capture_gradient_inputs(self, enabled: bool = True) -> None:
        """Keep the last backward's input and output gradient (needed for RigL growth)."""
        self._sink = {} if enabled else None

    def gather_captured(self) -> None:
        """Replace the captured tensors by every rank's, concatenated along the batch (their last
        dimension), so the dense gradient rows are those of the global batch."""
        if self._sink:
            self._sink = {key: all_gather_cat(value, -1) for key, value in self._sink.items()}

    def _grad_rows(self, r0: int, r1: int) -> torch.Tensor:
        """Rows r0:r1 of the dense weight gradient (as a matrix) of the captured mini-batch."""
        raise NotImplementedError

    def dense_gradient_topk(self, k: int, excluded: torch.Tensor, generator: torch.Generator | None = None,
                            transform: Callable[[torch.Tensor], torch.Tensor] = torch.abs) -> torch.Tensor:
        """RigL: the k positions outside ``excluded`` with the largest ``transform(dL/dW)`` (default
        |dL/dW|) of the last captured mini-batch, computed in row blocks (no dense-sized temporary)."""
        if not self._sink:
            raise ValueError("no captured gradient: call capture_gradient_inputs(True) and run a "
                             "backward pass before asking for gradient growth")
        return blockwise_topk(self._grad_rows, self.matrix_shape, excluded, k, generator, transform=transform)

    # ------------------------------------------------------------------ state dict
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        rp, ci = state_dict.get(prefix + "row_ptr"), state_dict.get(prefix + "col_idx")
        vals = state_dict.get(prefix + "weight_values")
        if rp is not None and ci is not None and vals is not None:
            validate_csr(rp, ci, self.matrix_shape)
            if vals.dim() != 1 or vals.numel() != ci.numel():
                raise ValueError(f"{prefix}weight_values has shape {tuple(vals.shape)}, expected "
                                 f"({ci.numel()},) to match {prefix}col_idx")
            dev = self.weight_values.device
            self.weight_values.data = self.weight_values.data.new_empty(vals.shape)
            self.row_ptr = torch.empty(rp.shape, dtype=self.row_ptr.dtype, device=dev)
            self.col_idx = torch.empty(ci.shape, dtype=self.col_idx.dtype, device=dev)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        flat = flat_indices(self.row_ptr.cpu(), self.col_idx.cpu(), self.matrix_shape[1])
        self._set_pattern(pattern_from_flat(flat, self.matrix_shape, check=False))
