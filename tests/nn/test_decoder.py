"""A GPT-style decoder with every projection sparse: :class:`SelfAttention` against
``nn.MultiheadAttention`` (outputs, attention weights, gradients), and the sparse engine against
the masked one on a small decoder (float64, SET and RigL with topology updates): the same losses,
topologies, logits and gradients, with every Linear sparse and the embeddings dense."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import sparsetime as st
from sparsetime.kernels import set_backend
from sparsetime.models.decoder import Decoder, lm_loss
from sparsetime.nn import SelfAttention, SparseLinear, replace_attention

VOCAB, WIDTH, SEQ = 40, 32, 10


def _inputs(batch: int = 3, seq: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, seq, WIDTH, dtype=torch.float64, requires_grad=True)
    causal = torch.ones(seq, seq, dtype=torch.bool).triu(1)
    pad = torch.zeros(batch, seq, dtype=torch.bool)
    pad[0, seq - 2:] = True
    return x, causal, pad


@pytest.mark.parametrize("masks", ["none", "causal", "causal+padding", "float"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_self_attention_matches_multihead_attention(masks, need_weights):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(WIDTH, 4, batch_first=True).double()
    sa = SelfAttention.from_mha(mha)
    x, causal, pad = _inputs()
    kw = {"none": {}, "causal": {"attn_mask": causal}, "causal+padding": {"attn_mask": causal, "key_padding_mask": pad},
          "float": {"attn_mask": torch.randn(7, 7, dtype=torch.float64)}}[masks]
    ref, ref_w = mha(x, x, x, need_weights=need_weights, **kw)
    out, w = sa(x, x, x, need_weights=need_weights, **kw)
    torch.testing.assert_close(out, ref)
    if need_weights:
        torch.testing.assert_close(w, ref_w)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [x, mha.in_proj_weight, mha.out_proj.weight, mha.in_proj_bias], g)
    grads = torch.autograd.grad(out, [x, sa.in_proj.weight, sa.out_proj.weight, sa.in_proj.bias], g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_is_causal_matches_an_explicit_causal_mask():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(WIDTH, 4, batch_first=True).double()
    sa = SelfAttention.from_mha(mha)
    x, causal, _ = _inputs(batch=1)
    ref = mha(x, x, x, attn_mask=causal, need_weights=False)[0]
    out = sa(x, is_causal=True)[0]
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])


def test_replace_attention_swaps_compatible_modules_only():
    model = nn.ModuleDict({"a": nn.MultiheadAttention(WIDTH, 4, batch_first=True),
                           "b": nn.MultiheadAttention(WIDTH, 4)})  # sequence-first: left alone
    assert replace_attention(model) == ["a"]
    assert isinstance(model["a"], SelfAttention) and isinstance(model["b"], nn.MultiheadAttention)
    with pytest.raises(ValueError, match="batch_first=False"):
        SelfAttention.from_mha(model["b"])
    x = torch.randn(2, 5, WIDTH)
    with pytest.raises(ValueError, match="self-attention only"):
        model["a"](x, torch.randn(2, 5, WIDTH), x)


@pytest.mark.parametrize("execution", ["masked", "sparse"])
def test_torch_transformer_encoder_with_replaced_attention_runs_in_every_mode(execution, one_thread):
    """nn.TransformerEncoder's fused inference path reads in_proj_weight: with SelfAttention (and sparse
    projections) the encoder must stay on the module path, in training and in eval, with padding masks."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(WIDTH, 4, 2 * WIDTH, dropout=0.0, batch_first=True)
    reference = nn.TransformerEncoder(layer, 2).double()  # enable_nested_tensor defaults to True
    model = nn.TransformerEncoder(layer, 2).double()
    model.load_state_dict(reference.state_dict())
    assert replace_attention(model) == ["layers.0.self_attn", "layers.1.self_attn"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sp = st.DynamicSparsity(model, opt, density=1.0, update_interval=100, total_steps=10, seed=0,
                            execution=execution, sparse_init=False)
    if execution == "sparse":
        assert isinstance(model.layers[0].self_attn.in_proj, SparseLinear)
    x = torch.randn(3, SEQ, WIDTH, dtype=torch.float64)
    pad = torch.zeros(3, SEQ, dtype=torch.bool)
    pad[1, -3:] = True  # left aligned: what the nested-tensor path would take
    for train in (True, False):
        model.train(train), reference.train(train)
        with torch.set_grad_enabled(train):
            torch.testing.assert_close(model(x, src_key_padding_mask=pad)[~pad],
                                       reference(x, src_key_padding_mask=pad)[~pad])
            torch.testing.assert_close(model(x), reference(x))
    assert sp.density() == pytest.approx(1.0)


def _build(execution: str, growth: str):
    torch.manual_seed(0)
    model = Decoder(vocab=VOCAB, width=WIDTH, heads=4, ffn=64, layers=2, max_seq=SEQ).double()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sp = st.DynamicSparsity(model, opt, density=0.2, distribution="erk", growth=growth, update_interval=2,
                            total_steps=8, drop_fraction=0.3, seed=5, execution=execution)
    return model, opt, sp


def _train(execution: str, growth: str, steps: int = 8):
    model, opt, sp = _build(execution, growth)
    g = torch.Generator().manual_seed(1)
    losses, topologies = [], []
    for _ in range(steps):
        loss = lm_loss(model, torch.randint(0, VOCAB, (4, SEQ), generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sp.step() is not None:
            topologies.append({n: sp.active_indices(n).clone() for n in sp.layer_names})
        losses.append(loss.item())
    tokens = torch.randint(0, VOCAB, (2, SEQ), generator=g)
    opt.zero_grad()
    logits = model(tokens)
    logits.pow(2).mean().backward()
    return model, sp, torch.tensor(losses), topologies, logits.detach()


def _weight_grads(model: nn.Module, sp) -> dict[str, torch.Tensor]:
    """dL/dW at the active positions (sorted flat order), in either engine."""
    out = {}
    for name in sp.layer_names:
        module = model.get_submodule(name.rpartition(".")[0])
        if isinstance(module, SparseLinear):
            out[name] = module.weight_values.grad
        else:
            out[name] = module.weight.grad.reshape(-1)[sp.active_indices(name)]
    return out


@pytest.fixture
def kernel_backend(backend):
    """Force the sparse kernels of the whole engine onto ``backend`` (numba, then torch)."""
    set_backend(backend)
    yield backend
    set_backend("auto")


@pytest.mark.parametrize("growth", ["random", "gradient"])
def test_sparse_decoder_matches_masked(growth, kernel_backend, one_thread):
    masked, sp_m, losses_m, topo_m, logits_m = _train("masked", growth)
    sparse, sp_s, losses_s, topo_s, logits_s = _train("sparse", growth)
    linears = [f"blocks.{i}.{leaf}.weight" for i in (0, 1) for leaf in ("attn.in_proj", "attn.out_proj", "fc", "proj")]
    assert sp_s.layer_names == [*linears, "head.weight"]  # embeddings are not sparsified
    assert set(sp_s.layer_execution.values()) == {"sparse"}
    assert all(isinstance(sparse.get_submodule(n.rpartition(".")[0]), SparseLinear) for n in sp_s.layer_names)
    assert isinstance(sparse.tok, nn.Embedding) and isinstance(sparse.pos, nn.Embedding)
    assert len(topo_s) == len(topo_m) == 4
    for a, b in zip(topo_s, topo_m):
        assert all(torch.equal(a[n], b[n]) for n in b)
    torch.testing.assert_close(losses_s, losses_m, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(logits_s, logits_m, rtol=1e-9, atol=1e-10)
    gs, gm = _weight_grads(sparse, sp_s), _weight_grads(masked, sp_m)
    for name in gm:
        torch.testing.assert_close(gs[name], gm[name], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(sparse.tok.weight.grad, masked.tok.weight.grad, rtol=1e-8, atol=1e-10)
