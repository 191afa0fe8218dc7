"""Saving mid-run and loading into fresh objects continues bit-for-bit (masks and fired masks in the checkpoint, so a resume does not re-sample)."""
import io
import json
from pathlib import Path

import pytest
import torch

import sparsetime as st
from sparsetime.core.state import masks_from_state

from helpers import make_model, make_optimizer, train_steps

DATA = Path(__file__).parent / "data"


def build(seed_model, seed_sparsifier, growth, opt_name="sgd_momentum_wd"):
    torch.manual_seed(seed_model)
    model, shape, classes = make_model("resconv")
    opt = make_optimizer(opt_name, model.parameters())
    sp = st.DynamicSparsity(model, opt, density=0.15, growth=growth, update_interval=3, total_steps=24,
                            seed=seed_sparsifier, grad_accumulation=2 if growth == "gradient" else 1)
    return model, opt, sp, shape, classes


@pytest.mark.parametrize("growth,opt_name", [("random", "sgd_momentum_wd"), ("gradient", "adam"),
                                             ("momentum", "nesterov"), ("unexplored", "adamw")])
def test_resume_is_bit_for_bit(growth, opt_name):
    model, opt, sp, shape, classes = build(0, 7, growth, opt_name)
    train_steps(model, opt, sp, 24, shape, classes, seed=1)

    model_a, opt_a, sp_a, _, _ = build(0, 7, growth, opt_name)
    # the data stream is split in two halves: steps 1-11 and 12-24 use generators 1 and 2
    train_steps(model_a, opt_a, sp_a, 11, shape, classes, seed=11)
    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict(), "sp": sp_a.state_dict()}, buf)
    train_steps(model_a, opt_a, sp_a, 13, shape, classes, seed=12)

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model_b, opt_b, sp_b, _, _ = build(123, 99, growth, opt_name)  # different init and mask seed
    model_b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["opt"])
    sp_b.load_state_dict(ckpt["sp"])
    assert sp_b.step_count == 11
    train_steps(model_b, opt_b, sp_b, 13, shape, classes, seed=12)

    for n in sp_a.masks:
        assert torch.equal(sp_a.masks[n], sp_b.masks[n]), n
        assert torch.equal(sp_a.fired_masks[n], sp_b.fired_masks[n]), n
    for (na, pa), (nb, pb) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(pa, pb), na
    assert sp_a.exploration_stats() == sp_b.exploration_stats()
    assert sp_a.update_history == sp_b.update_history
    assert len(sp_a.update_history) == 8


def test_load_rejects_other_layers_names():
    """Masks saved under one key and loaded under another must fail loudly."""
    _, _, sp, _, _ = build(0, 0, "random")
    state = sp.state_dict()
    state["active"]["renamed.weight"] = state["active"].pop("stem.weight")
    with pytest.raises(ValueError, match="missing \\['stem.weight'\\], unexpected \\['renamed.weight'\\]"):
        sp.load_state_dict(state)
    state = sp.state_dict()
    state["active"]["stem.weight"] = torch.tensor([3, 1])
    with pytest.raises(ValueError, match="must be sorted, unique and in"):
        sp.load_state_dict(state)
    state["active"]["stem.weight"] = torch.tensor([0, 10**6])
    with pytest.raises(ValueError, match="must be sorted, unique and in \\[0, 216\\)"):
        sp.load_state_dict(state)
    state = sp.state_dict()  # a mask of another shape (states of version 1 and 2 hold bool masks)
    state["masks"] = {"stem.weight": torch.ones(2, 2, dtype=torch.bool)}
    del state["active"]["stem.weight"]
    with pytest.raises(ValueError, match="shape"):
        sp.load_state_dict(state)
    with pytest.raises(ValueError, match="not a sparsetime"):
        sp.load_state_dict({"masks": {}})


def _fresh(execution):
    torch.manual_seed(9)  # another initial topology than the saved one
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return st.DynamicSparsity(model, opt, density=0.25, update_interval=3, total_steps=30, seed=2,
                              drop_fraction=0.4, execution=execution)


@pytest.mark.parametrize("saved", ["masked", "sparse"])
@pytest.mark.parametrize("execution", ["masked", "sparse"])
@pytest.mark.parametrize("version", [1, 2])
def test_states_of_earlier_versions_still_load(saved, execution, version):
    """States written by the engine before the redesign (files made by that code, with what it
    reported about them) load into either execution mode and give the same topology and metrics."""
    if version == 1 and saved == "sparse":
        pytest.skip("version 1 had no sparse execution")
    state = torch.load(DATA / f"state_v2_{saved}.pt", weights_only=True)
    expect = json.loads((DATA / f"state_v2_{saved}.json").read_text())
    if version == 1:  # version 1 was version 2 without the sparse layers' ``active`` entry
        state = {k: v for k, v in state.items() if k != "active"}
        state["version"] = 1
    sp = _fresh(execution)
    sp.load_state_dict(state)
    assert sp.step_count == expect["step"] == 16
    assert {n: sp.active_indices(n).tolist() for n in sp.layer_names} == expect["active"]
    stats = sp.exploration_stats()
    stats["lifetime_histogram"] = {str(k): v for k, v in stats["lifetime_histogram"].items()}
    assert stats == expect["stats"]
    assert sp.layer_exploration_rates() == expect["layer_rates"]
    assert sp.update_history == expect["history"]
    masks = masks_from_state(state)
    assert all(torch.equal(masks[n], sp.masks[n]) for n in sp.layer_names)
    back = sp.state_dict()
    assert back["version"] == 3 and set(back["active"]) == set(sp.layer_names) and "masks" not in back
    assert all(torch.equal(masks_from_state(back)[n], masks[n]) for n in masks)
