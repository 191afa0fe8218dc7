"""FLOPs counting: per-layer inference FLOPs and per-step training FLOPs by method."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sparsetime.models import build_model
from sparsetime.train import count_layer_flops, get_method, inference_flops, mask_densities
from sparsetime.core.state import masks_from_state


class Twice(nn.Module):
    """Applies the same Linear twice: its FLOPs count twice."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x))


def test_hand_computed_layers():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),   # 9x9 -> 5x5: 8*25 outputs x 27 MACs
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, groups=2),              # 5x5 -> 3x3: 4*9 outputs x (4*9) MACs
        nn.Flatten(),
        nn.Linear(36, 5),                          # 36*5 MACs
    )
    flops = count_layer_flops(model, (3, 9, 9))
    assert flops == {"0.weight": 2 * 27 * 200, "2.weight": 2 * 36 * 36, "4.weight": 2 * 36 * 5}


def test_conv1d_and_shared_module():
    conv = nn.Sequential(nn.Conv1d(2, 3, 5))        # length 20 -> 16: 48 outputs x 10 MACs
    assert count_layer_flops(conv, (2, 20)) == {"0.weight": 2 * 10 * 48}
    assert count_layer_flops(Twice(), (6,)) == {"fc.weight": 2 * (2 * 36)}


@pytest.mark.parametrize("name, shape", [("lenet5", (1, 28, 28)), ("resnet18", (3, 16, 16)), ("mlp", (1, 8, 8))])
def test_matches_torch_flop_counter(name, shape):
    model = build_model(name, shape, 10)
    ours = count_layer_flops(model, shape)
    with FlopCounterMode(display=False) as counter:
        model.eval()
        model(torch.zeros(1, *shape))
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    reference = {}
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            ops = per_module[f"{root}.{module_name}"]
            reference[f"{module_name}.weight"] = float(sum(ops.values()))
    assert ours == pytest.approx(reference)


class CrossAttention(nn.Module):
    """Attention with separate key/value widths (q/k/v_proj_weight), keys passed by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, kdim=4, vdim=6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x[:, :3], key=x[:, :, :4], value=x[:, :, :6])[0]


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_projections_are_counted_per_token(batch_first):
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=batch_first)
    flops = count_layer_flops(layer, (5, 8))  # (1, 5, 8): 5 tokens whichever dimension is the batch
    tokens = 5
    assert flops == {"self_attn.in_proj_weight": 2 * 8 * 24 * tokens, "self_attn.out_proj.weight": 2 * 8 * 8 * tokens,
                     "linear1.weight": 2 * 8 * 16 * tokens, "linear2.weight": 2 * 16 * 8 * tokens}
    cross = count_layer_flops(CrossAttention(), (7, 8))  # 3 query tokens, 7 key/value tokens
    assert cross == {"mha.q_proj_weight": 2 * 8 * 8 * 3, "mha.k_proj_weight": 2 * 4 * 8 * 7,
                     "mha.v_proj_weight": 2 * 6 * 8 * 7, "mha.out_proj.weight": 2 * 8 * 8 * 3}


def test_restores_training_mode_and_takes_no_gradients():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model.train()
    before = model[1].running_mean.clone()
    count_layer_flops(model, (4,))
    assert model.training
    assert torch.equal(model[1].running_mean, before)  # eval mode: BN statistics untouched
    assert model[0].weight.grad is None


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        count_layer_flops(nn.Linear(3, 3), ())


def test_sparse_inference_flops_scale_with_layer_density():
    layers = {"a.weight": 1000.0, "b.weight": 200.0}
    assert inference_flops(layers) == 1200.0
    assert inference_flops(layers, {"a.weight": 0.1}) == 100.0 + 200.0
    assert inference_flops(layers, {"a.weight": 0.1, "b.weight": 0.5}) == 200.0
    with pytest.raises(ValueError, match="no counted FLOPs.*c.weight"):
        inference_flops(layers, {"c.weight": 0.5})


def test_mask_densities():
    masks = {"w": torch.tensor([[True, False], [False, False]]), "v": torch.ones(3, dtype=torch.bool)}
    assert mask_densities(masks) == {"w": 0.25, "v": 1.0}


@pytest.mark.parametrize("method, expected", [
    ("dense", 3 * 100.0),
    ("static", 3 * 10.0),
    ("set", 3 * 10.0),
    ("rigl", (3 * 10.0 * 50 + 2 * 10.0 + 100.0) / 51),
    ("snfs", 2 * 10.0 + 100.0),
])
def test_training_step_flops_per_method(method, expected):
    # per example and step: dense 3 f_D, static and SET 3 f_S, RigL (3 f_S ΔT + 2 f_S + f_D) / (ΔT + 1),
    # SNFS 2 f_S + f_D; with f_S = 10, f_D = 100, ΔT = 50
    assert get_method(method).step_flops(10.0, 100.0, 50) == pytest.approx(expected)


# ----------------------------------------------------------------------------- RigL after its last update

def rigl_config(out, *extra: str):
    """Synthetic 1x8x8 images, MLP 64-16-4; 120 examples in batches of 32 -> 4 steps (32, 32, 32, 24) per
    epoch, 3 epochs: T = 12. Updates every 2 steps until T * stop_fraction."""
    from sparsetime.train import load_config

    return load_config(None, [
        "dataset=synthetic", "data.options.train_size=120", "data.options.test_size=32",
        "model_options.hidden=[16]", "epochs=3", "batch_size=32", "sparsity.method=rigl", "sparsity.density=0.3",
        "sparsity.update_interval=2", f"output_dir={out}", "progress=none", "device=cpu", *extra])


def hand_rigl_flops(run_dir, stop_steps: int) -> float:
    """Training FLOPs written out by hand: RigL's rate for the first ``stop_steps`` steps, 3 f_S after."""
    from sparsetime.train import load_checkpoint

    masks = masks_from_state(load_checkpoint(run_dir / "checkpoint.pt")["sparsifier"])
    shapes = {"layers.0.weight": (16, 64), "layers.1.weight": (4, 16)}
    assert {n: tuple(m.shape) for n, m in masks.items()} == shapes
    f_d = sum(2.0 * o * i for o, i in shapes.values())
    f_s = sum(2.0 * int(m.sum()) for m in masks.values())  # a Linear costs 2 FLOPs per active weight
    dt = 2
    rigl = (3 * f_s * dt + 2 * f_s + f_d) / (dt + 1)
    batches = [32, 32, 32, 24] * 3
    return sum(b * (rigl if step < stop_steps else 3 * f_s) for step, b in enumerate(batches))


@pytest.mark.parametrize("stop_fraction, stop_steps", [
    (0.5, 6),      # T * stop = 6: the stop falls in the middle of epoch 2 (steps 4..7)
    (0.45, 5),     # T * stop = 5.4: the last update is at step 4, steps 0..4 are charged at RigL's rate
    (0.25, 3),     # stop inside epoch 1, before its last (short) batch is reached
    (1.0, 12),     # never stops
])
def test_rigl_training_flops_cost_3_fs_per_step_after_the_last_update(tmp_path, stop_fraction, stop_steps):
    from sparsetime.train import train

    result = train(rigl_config(tmp_path, f"sparsity.stop_fraction={stop_fraction}"))
    assert result.summary["topology_updates"] == stop_steps // 2
    assert result.summary["train_flops"] == pytest.approx(hand_rigl_flops(result.run_dir, stop_steps), rel=1e-12)


def test_rigl_training_flops_of_a_resumed_run_split_at_the_stop_step(tmp_path, interrupt_at_epoch):
    """A run resumed at step 4 (after epoch 1) whose stop step 6 lies in its first epoch."""
    from sparsetime.train import resume, run_directory, resolve_config, train

    config = rigl_config(tmp_path, "sparsity.stop_fraction=0.5")
    interrupt_at_epoch(1)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    interrupt_at_epoch(None)
    result = resume(run_directory(resolve_config(config)))
    assert "resumed from" in (result.run_dir / "train.log").read_text()
    assert result.summary["train_flops"] == pytest.approx(hand_rigl_flops(result.run_dir, 6), rel=1e-12)
