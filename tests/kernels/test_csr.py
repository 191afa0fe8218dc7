"""CSR index construction, its cached transpose and validation of untrusted indices."""
import pytest
import torch

from sparsetime.kernels import flat_indices, pattern_from_flat, pattern_from_mask, validate_csr


def test_hand_built_pattern():
    # W (3x4) nonzeros at (0,1), (0,3), (2,0), (2,1)  -> flat 1, 3, 8, 9
    p = pattern_from_flat(torch.tensor([1, 3, 8, 9]), (3, 4))
    assert p.row_ptr.tolist() == [0, 2, 2, 4]
    assert p.col_idx.tolist() == [1, 3, 0, 1]
    assert p.row_ptr.dtype == torch.int32 and p.col_idx.dtype == torch.int32
    # transpose: column 0 -> row 2 (entry 2); column 1 -> rows 0, 2 (entries 0, 3); column 3 -> row 0 (entry 1)
    assert p.t_row_ptr.tolist() == [0, 1, 3, 3, 4]
    assert p.t_col_idx.tolist() == [2, 0, 2, 0]
    assert p.t_perm.tolist() == [2, 0, 3, 1]
    assert p.nnz == 4


def test_transpose_matches_dense_transpose():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(13, 17, generator=g) < 0.3
    vals = torch.randn(int(mask.sum()), generator=g)
    p = pattern_from_mask(mask)
    dense = torch.zeros(13, 17)
    dense[mask] = vals
    pt = pattern_from_mask(mask.t().contiguous())
    assert torch.equal(p.t_row_ptr, pt.row_ptr)
    assert torch.equal(p.t_col_idx, pt.col_idx)
    assert torch.equal(vals[p.t_perm.long()], dense.t()[mask.t()])
    assert torch.equal(flat_indices(p.row_ptr, p.col_idx, 17), mask.reshape(-1).nonzero().squeeze(1))


def test_pattern_from_flat_rejects_bad_indices():
    with pytest.raises(ValueError, match="strictly increasing"):
        pattern_from_flat(torch.tensor([3, 1]), (2, 2))
    with pytest.raises(ValueError, match="strictly increasing"):
        pattern_from_flat(torch.tensor([1, 1]), (2, 2))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        pattern_from_flat(torch.tensor([0, 4]), (2, 2))
    with pytest.raises(ValueError, match="shape"):
        pattern_from_flat(torch.tensor([0]), (2, -1))


@pytest.mark.parametrize("row_ptr, col_idx, msg", [
    ([0, 1], [0], "entries"),              # wrong length of row_ptr
    ([1, 1, 1], [0], "start at 0"),
    ([0, 1, 2], [0], "end at nnz"),
    ([0, 2, 1, 2], [0, 1], "non-decreasing"),
    ([0, 1, 2, 2], [0, 5], r"\[0, 3\)"),
    ([0, 2, 2, 2], [1, 1], "strictly increasing"),
    ([0, 2, 2, 2], [2, 1], "strictly increasing"),
])
def test_validate_csr_errors(row_ptr, col_idx, msg):
    rows = len(row_ptr) - 1 if msg != "entries" else 3
    with pytest.raises(ValueError, match=msg):
        validate_csr(torch.tensor(row_ptr), torch.tensor(col_idx), (rows, 3))


def test_validate_csr_accepts_good_pattern():
    validate_csr(torch.tensor([0, 2, 2, 3]), torch.tensor([0, 2, 1]), (3, 3))
