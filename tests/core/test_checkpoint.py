"""Saving mid-run and loading into fresh objects continues bit-for-bit (masks and fired masks in the checkpoint, so a resume does not re-sample)."""
import io

import pytest
import torch

import sparsetime as st

from helpers import make_model, make_optimizer, train_steps


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
    state["masks"]["renamed.weight"] = state["masks"].pop("stem.weight")
    with pytest.raises(ValueError, match="missing \\['stem.weight'\\], unexpected \\['renamed.weight'\\]"):
        sp.load_state_dict(state)
    state = sp.state_dict()
    state["masks"]["stem.weight"] = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="shape"):
        sp.load_state_dict(state)
    with pytest.raises(ValueError, match="not a sparsetime"):
        sp.load_state_dict({"masks": {}})
