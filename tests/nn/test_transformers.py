"""Transformers in every execution mode: a small encoder and a small GPT-style decoder with SET and
RigL, masked and sparse. Checks the masked set (attention's fused Q/K/V projection included),
the invariants after every step, exact counts, the layers that must stay masked, and that the
sparse engine reproduces the masked one (same topologies and losses, float64)."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st
from sparsetime.nn import SparseLinear

VOCAB, WIDTH, SEQ = 40, 32, 12


class Encoder(nn.Module):
    """Embedding, two nn.TransformerEncoderLayer, mean pooling, a classification head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(1))


class Block(nn.Module):
    """Pre-norm decoder block: causal self-attention and an MLP of nn.Linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, 4, batch_first=True)
        self.fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.proj = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        causal = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device), 1)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Token and position embeddings, two decoder blocks, a final norm and an LM head."""

    def __init__(self) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, WIDTH), nn.Embedding(SEQ, WIDTH)
        self.blocks = nn.Sequential(Block(), Block())
        self.ln = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        return self.head(self.ln(self.blocks(x)))


def _build(kind: str, execution: str, growth: str, seed: int = 0):
    torch.manual_seed(seed)
    model = (Encoder() if kind == "encoder" else GPT()).double()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sp = st.DynamicSparsity(model, opt, density=0.2, distribution="erk", growth=growth, update_interval=4,
                                total_steps=24, drop_fraction=0.3, seed=5, execution=execution)
    return model, opt, sp, [str(w.message) for w in caught]


def _loss(kind: str, model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    if kind == "encoder":
        return F.cross_entropy(model(tokens), tokens[:, 0] % 5)
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))


def _check_invariants(sp, opt):
    for name, p in sp.params.items():
        off = ~sp.masks[name]
        assert (p.detach()[off] == 0).all(), name
        for v in opt.state.get(p, {}).values():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                assert (v[off] == 0).all(), name


def _train(kind, execution, growth, steps=24):
    model, opt, sp, caught = _build(kind, execution, growth)
    counts = dict(sp.counts)
    g = torch.Generator().manual_seed(1)
    losses, topologies = [], []
    for _ in range(steps):
        tokens = torch.randint(0, VOCAB, (8, SEQ), generator=g)
        loss = _loss(kind, model, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sp.step() is not None:
            topologies.append({n: sp.active_indices(n).clone() for n in sp.layer_names})
        _check_invariants(sp, opt)
        assert sp.counts == counts
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():  # eval mode: nn.TransformerEncoderLayer's fast path reads linear1.weight
        _loss(kind, model, torch.randint(0, VOCAB, (4, SEQ), generator=g))
    return torch.tensor(losses), topologies, sp, model, caught


def test_masked_set_includes_the_fused_attention_projection():
    model, _, sp, _ = _build("gpt", "masked", "random")
    names = sp.layer_names
    assert names == ["blocks.0.attn.in_proj_weight", "blocks.0.attn.out_proj.weight", "blocks.0.fc.weight",
                     "blocks.0.proj.weight", "blocks.1.attn.in_proj_weight", "blocks.1.attn.out_proj.weight",
                     "blocks.1.fc.weight", "blocks.1.proj.weight", "head.weight"]
    in_proj = model.blocks[0].attn.in_proj_weight
    assert sp.shapes["blocks.0.attn.in_proj_weight"] == (3 * WIDTH, WIDTH) == tuple(in_proj.shape)
    assert sp.counts["blocks.0.attn.in_proj_weight"] == int((in_proj != 0).sum())
    # ERK treats it as a (3E, E) Linear weight: densities proportional to (out + in) / (out * in)
    d = sp.layer_target_densities
    ratio = ((3 * WIDTH + WIDTH) / (3 * WIDTH * WIDTH)) / ((4 * WIDTH + WIDTH) / (4 * WIDTH * WIDTH))
    assert d["blocks.0.attn.in_proj_weight"] / d["blocks.0.fc.weight"] == pytest.approx(ratio)
    total = sum(math.prod(s) for s in sp.shapes.values())
    assert abs(sum(sp.counts.values()) - 0.2 * total) <= len(names)


def test_dense_layers_pattern_keeps_attention_projections_dense():
    torch.manual_seed(0)
    model = GPT()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sp = st.DynamicSparsity(model, opt, density=0.2, update_interval=None, dense_layers=["*.in_proj_weight"])
    assert not any(n.endswith("in_proj_weight") for n in sp.layer_names)
    assert (model.blocks[0].attn.in_proj_weight != 0).all()


@pytest.mark.parametrize("kind", ["encoder", "gpt"])
@pytest.mark.parametrize("growth", ["random", "gradient"])
def test_masked_training_keeps_invariants_and_explores(kind, growth, one_thread):
    losses, topologies, sp, _, _ = _train(kind, "masked", growth)
    assert len(topologies) == 6 and len(sp.update_history) == 6
    assert sp.exploration_rate() > sp.density()
    assert all(u["grown"] == u["dropped"] for u in sp.update_history)
    # cosine decay: the update at T = 24 has drop fraction 0
    assert [u["dropped"] > 0 for u in sp.update_history] == [True] * 5 + [False]
    assert torch.isfinite(losses).all()


def test_sparse_execution_keeps_weight_reading_layers_masked(one_thread):
    _, _, sp, model, caught = _train("encoder", "sparse", "random", steps=4)
    ex = sp.layer_execution
    assert ex["head.weight"] == "sparse" and isinstance(model.head, SparseLinear)
    for i in (0, 1):
        for leaf in ("self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"):
            assert ex[f"encoder.layers.{i}.{leaf}"] == "masked"
    message = " ".join(caught)
    assert "encoder.layers.0.self_attn.out_proj.weight: its parent MultiheadAttention reads its .weight" in message
    assert "st.nn.replace_attention(model)" in message  # the way to run attention's projections sparse
    assert "encoder.layers.0.linear1.weight: its parent TransformerEncoderLayer reads its .weight" in message
    assert "encoder.layers.0.self_attn.in_proj_weight: parameter" in message


@pytest.mark.parametrize("kind", ["encoder", "gpt"])
@pytest.mark.parametrize("growth", ["random", "gradient"])
def test_sparse_engine_reproduces_masked_training(kind, growth, one_thread):
    lm, tm, sm, _, _ = _train(kind, "masked", growth)
    ls, ts, ss, model, _ = _train(kind, "sparse", growth)
    if kind == "gpt":
        sparse = {n for n, e in ss.layer_execution.items() if e == "sparse"}
        assert sparse == {"blocks.0.fc.weight", "blocks.0.proj.weight", "blocks.1.fc.weight", "blocks.1.proj.weight",
                          "head.weight"}
        assert isinstance(model.blocks[1].fc, SparseLinear)
    assert len(tm) == len(ts) == 6
    for a, b in zip(tm, ts):
        for n in a:
            assert torch.equal(a[n], b[n]), n
    torch.testing.assert_close(ls, lm, rtol=1e-9, atol=1e-9)
    assert sm.exploration_stats() == ss.exploration_stats()
