"""Sparse model files: CSR in safetensors, read back as dense state_dicts, dense models or sparse modules."""
from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn

import sparsetime as st
from sparsetime.nn import SparseConv2d, SparseLinear, load_sparse, save_sparse

safetensors_torch = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 6))


def trained(model: nn.Module, steps: int = 4):
    """A few real SET steps: magnitude drop, random growth (grown weights start at exactly 0)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsifier = st.DynamicSparsity(model, opt, density=0.3, distribution="uniform", update_interval=steps,
                                    drop_fraction=0.3, drop_schedule="constant", seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(8, 2, 5, 5, generator=g)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sparsifier.step()
    return sparsifier


def test_file_holds_csr_of_the_masked_positions_and_reads_back(tmp_path):
    model = small_net()
    sparsifier = trained(model)
    masks = sparsifier.masks
    weights = dict(model.named_parameters())
    assert any(bool((weights[n].detach()[m] == 0).any()) for n, m in masks.items())  # just-grown zeros
    path = save_sparse(model, tmp_path / "m.safetensors", masks=masks)
    raw = safetensors_torch.load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata()["format"] == "sparsetime-sparse"
    for name, mask in masks.items():  # by hand: row-major positions of the True entries, per-row counts
        w, m = weights[name].detach(), mask.reshape(mask.shape[0], -1)
        rows, cols = m.nonzero(as_tuple=True)
        assert torch.equal(raw[f"{name}.csr_values"], w.reshape(m.shape)[rows, cols])
        assert raw[f"{name}.csr_col_indices"].dtype == torch.int16
        assert torch.equal(raw[f"{name}.csr_col_indices"].long(), cols)
        assert raw[f"{name}.csr_row_ptr"].tolist() == [0] + m.sum(1).cumsum(0).tolist()
        assert name not in raw
    assert torch.equal(raw["0.bias"], model[0].bias.detach()) and torch.equal(raw["3.bias"], model[3].bias.detach())

    state = load_sparse(path)
    assert list(state) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key

    x = torch.randn(3, 2, 5, 5)
    dense = load_sparse(path, small_net())  # a fresh instance of the model class
    assert torch.equal(dense(x), model(x))
    sparse = load_sparse(path, small_net(), sparse=True)
    assert isinstance(sparse[0], SparseConv2d) and isinstance(sparse[3], SparseLinear)
    assert torch.equal(sparse[0].dense_mask(), masks["0.weight"])  # exact positions, stored zeros included
    assert torch.equal(sparse[3].dense_mask(), masks["3.weight"])
    torch.testing.assert_close(sparse(x), model(x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_is_preserved(tmp_path, dtype):
    model = small_net().to(dtype)
    masks = {"3.weight": torch.rand(6, 100, generator=torch.Generator().manual_seed(1)) < 0.1}
    path = save_sparse(model, tmp_path / "m.safetensors", masks=masks)
    assert safetensors_torch.load_file(str(path))["3.weight.csr_values"].dtype == dtype
    state = load_sparse(path)
    assert all(v.dtype == dtype for v in state.values())
    assert torch.equal(state["3.weight"], model[3].weight.detach() * masks["3.weight"])


def test_sparse_modules_round_trip_without_masks(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(SparseLinear(30, 20, density=0.1), nn.ReLU(), SparseLinear(20, 5, density=0.2))
    path = save_sparse(model, tmp_path / "m.safetensors")
    other = nn.Sequential(SparseLinear(30, 20, density=0.3), nn.ReLU(), SparseLinear(20, 5, density=0.5))
    load_sparse(path, other)  # another pattern and nnz: replaced by the file's
    for a, b in ((model[0], other[0]), (model[2], other[2])):
        assert torch.equal(a.flat_indices(), b.flat_indices()) and torch.equal(a.weight_values, b.weight_values)
    x = torch.randn(4, 30)
    assert torch.equal(other(x), model(x))
    dense = load_sparse(path, nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5)))
    assert torch.equal(dense[0].weight, model[0].to_sparse_csr().to_dense())
    torch.testing.assert_close(dense(x), model(x))


def test_default_mlp_at_98_percent_is_under_5_percent_of_the_dense_file(tmp_path):
    """The default run's model (784-1000-1000-10, ERK, density 0.02) against torch.save of its state_dict."""
    from sparsetime.models import build_model

    model = build_model("mlp", (1, 28, 28), 10)
    sparsifier = st.DynamicSparsity(model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.02,
                                    distribution="erk", update_interval=None)
    sparse = save_sparse(model, tmp_path / "m.safetensors", masks=sparsifier.masks)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    ratio = os.path.getsize(sparse) / os.path.getsize(tmp_path / "m.pt")
    assert ratio < 0.05, ratio
    nnz = sum(int(m.sum()) for m in sparsifier.masks.values())
    assert os.path.getsize(sparse) < nnz * (4 + 2) + 64 * 1024  # float32 value + int16 column per weight, plus rows


def test_bad_inputs_and_files_are_refused(tmp_path):
    model = small_net()
    with pytest.raises(ValueError, match="not in the state_dict.*allowed"):
        save_sparse(model, tmp_path / "m.safetensors", masks={"9.weight": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="mask of '3.weight' must be a bool tensor of the weight's shape"):
        save_sparse(model, tmp_path / "m.safetensors", masks={"3.weight": torch.ones(6, 99, dtype=torch.bool)})
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_sparse(garbage)
    plain = tmp_path / "plain.safetensors"
    safetensors_torch.save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="not a sparsetime sparse file"):
        load_sparse(plain)
    with pytest.raises(ValueError, match="does not exist"):
        load_sparse(tmp_path / "missing.safetensors")
    path = save_sparse(model, tmp_path / "m.safetensors", masks={"3.weight": model[3].weight != 0})
    tensors = safetensors_torch.load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
    tensors["3.weight.csr_col_indices"][0] = 500  # beyond fan-in 100
    bad = tmp_path / "bad.safetensors"
    safetensors_torch.save_file(tensors, str(bad), metadata=metadata)
    with pytest.raises(ValueError, match="'3.weight' has a malformed CSR index"):
        load_sparse(bad)


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    model = small_net()
    path = save_sparse(model, tmp_path / "m.safetensors")
    before = path.read_bytes()

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="No space left"):
        save_sparse(model, path, masks={"3.weight": model[3].weight != 0})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_missing_safetensors_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ImportError, match=r"pip install 'sparsetime\[safetensors\]'"):
        save_sparse(small_net(), tmp_path / "m.safetensors")
