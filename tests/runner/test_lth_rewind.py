"""Lottery-ticket levels rewound to step k > 0 train steps k..T with the schedule positioned at k (SPEC §6).

Every optimiser step of a run is observed through a global optimizer step pre-hook (after backward,
before the update): the learning rate in use, the weights the step starts from and their gradients.
Expected values are rebuilt independently: the cosine schedule by hand, the batches from the
public data pieces, the rewound weights from level 0's own step-k observation.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from sparsetime.data import batch_iterator, build_datasets
from sparsetime.experiments.lottery import run_lottery
from sparsetime.models import build_model
from sparsetime.train import load_checkpoint, load_config
from sparsetime.train import trainer as trainer_module

# synthetic 1x8x8 images, 4 classes; MLP 64-16-4; 128 examples / batch 32 = 4 steps per epoch; 3 epochs
TRAIN, BATCH, STEPS_PER_EPOCH, EPOCHS, LR = 128, 32, 4, 3, 0.05
T = STEPS_PER_EPOCH * EPOCHS


def cosine_lr(step: int) -> float:
    """Cosine from LR to 0 over T steps, no warm-up (SPEC schedule, written out by hand)."""
    return LR * 0.5 * (1.0 + math.cos(math.pi * step / T))


def config(out, k: int, mode: str = "weights"):
    return load_config(None, [
        "dataset=synthetic", f"data.options.train_size={TRAIN}", "data.options.test_size=64",
        "model_options.hidden=[16]", f"epochs={EPOCHS}", f"batch_size={BATCH}", "optim.name=sgd",
        f"optim.lr={LR}", "schedule.name=cosine", "schedule.min_lr=0", "sparsity.options.levels=1",
        "sparsity.options.fraction=0.5", f"sparsity.options.rewind_step={k}", f"sparsity.options.mode={mode}",
        f"output_dir={out}", "progress=none", "device=cpu"])


class StepRecorder:
    """Per run (trainer), one record per optimiser step: lr, parameters and gradients before the update."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trainers: list = []
        self.steps: dict[int, list[dict]] = {}
        original_fit = trainer_module.Trainer.fit

        def fit(trainer):
            self.trainers.append(trainer)
            self.steps[id(trainer)] = []
            return original_fit(trainer)

        monkeypatch.setattr(trainer_module.Trainer, "fit", fit)
        self.handle = register_optimizer_step_pre_hook(self._hook)

    def _hook(self, optimizer, args, kwargs) -> None:
        (trainer,) = [t for t in self.trainers if t.optimizer is optimizer]
        named = dict(trainer.model.named_parameters())
        self.steps[id(trainer)].append({
            "lr": optimizer.param_groups[0]["lr"],
            "params": {n: p.detach().clone() for n, p in named.items()},
            "grads": {n: p.grad.detach().clone() for n, p in named.items()},
        })

    def of(self, level: int) -> list[dict]:
        return self.steps[id(self.trainers[level])]


@pytest.fixture
def recorder(monkeypatch):
    rec = StepRecorder(monkeypatch)
    yield rec
    rec.handle.remove()


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def level_masks(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["sparsifier"]["dynamic"]["masks"]


def masked(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: w * masks[n] if n in masks else w for n, w in weights.items()}


def expected_first_grads(weights: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Gradients of batch k % spe of epoch k // spe's seeded order at ``weights``, computed from scratch."""
    splits = build_datasets("synthetic", seed=0, train_size=TRAIN, test_size=64)
    model = build_model("mlp", splits.input_shape, splits.num_classes, hidden=[16])
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(weights[n])
    generator = torch.Generator().manual_seed(trainer_module.epoch_seed(0, k // STEPS_PER_EPOCH))
    batches = list(batch_iterator(splits.train, BATCH, shuffle=True, generator=generator, num_workers=0))
    x, y = batches[k % STEPS_PER_EPOCH]
    nn.CrossEntropyLoss()(model(x), y).backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("k", [4, 5])  # on an epoch boundary, and one batch into epoch 2
def test_weight_rewinding_trains_steps_k_to_t_from_the_step_k_weights(tmp_path, recorder, k):
    result = run_lottery(config(tmp_path, k))
    level0, level1 = recorder.of(0), recorder.of(1)
    assert len(level0) == T and len(level1) == T - k
    assert [s["lr"] for s in level0] == pytest.approx([cosine_lr(t) for t in range(T)], rel=1e-12)
    assert [s["lr"] for s in level1] == pytest.approx([cosine_lr(t) for t in range(k, T)], rel=1e-12)
    assert level1[0]["lr"] < LR  # positioned at k, not at 0

    run1 = result.levels[1].run_dir
    masks = level_masks(run1)
    start = level1[0]["params"]
    expected = masked(level0[k]["params"], masks)  # level 0's weights after k steps, pruned
    assert start.keys() == expected.keys()
    for n in start:
        assert torch.equal(start[n], expected[n]), n

    grads = expected_first_grads(start, k)  # the first step uses the right batch of the seeded order
    for n, g in level1[0]["grads"].items():
        m = masks.get(n, torch.ones_like(g, dtype=torch.bool))
        torch.testing.assert_close(g[m], grads[n][m], rtol=1e-5, atol=1e-7)

    records = read_jsonl(run1 / "metrics.jsonl")
    first_epoch = k // STEPS_PER_EPOCH + 1
    assert [r["epoch"] for r in records] == list(range(first_epoch, EPOCHS + 1))
    assert records[-1]["step"] == T and records[0]["lr"] == pytest.approx(cosine_lr(k), rel=1e-12)
    summary = json.loads((run1 / "summary.json").read_text())
    assert (summary["steps"], summary["start_step"], summary["epochs"]) == (T - k, k, len(records))
    # static mask: every trained step costs 3 f_S per example, T - k steps of BATCH examples
    assert summary["train_flops"] == pytest.approx((T - k) * BATCH * 3 * summary["inference_flops"], rel=1e-9)
    s0 = json.loads((result.levels[0].run_dir / "summary.json").read_text())
    assert (s0["steps"], s0["start_step"], s0["epochs"]) == (T, 0, EPOCHS)


def test_lr_rewinding_keeps_the_trained_weights_and_replays_the_schedule_from_k(tmp_path, recorder):
    k = 6
    result = run_lottery(config(tmp_path, k, mode="lr"))
    level1 = recorder.of(1)
    assert len(level1) == T - k
    assert [s["lr"] for s in level1] == pytest.approx([cosine_lr(t) for t in range(k, T)], rel=1e-12)
    trained = load_checkpoint(result.levels[0].run_dir / "checkpoint.pt")["model"]
    expected = masked(trained, level_masks(result.levels[1].run_dir))
    for n, w in level1[0]["params"].items():
        assert torch.equal(w, expected[n]), n


def test_finetune_trains_every_step_at_the_final_rate(tmp_path, recorder):
    cfg = config(tmp_path, 5, mode="finetune")
    cfg.schedule.min_lr = 0.001
    run_lottery(cfg)
    level1 = recorder.of(1)
    assert len(level1) == T and {s["lr"] for s in level1} == {0.001}


def test_interrupted_rewound_level_resumes_bit_identical(tmp_path, monkeypatch):
    k = 5
    reference = run_lottery(config(tmp_path / "reference", k))
    original = trainer_module.Trainer._train_epoch

    def interrupt(self):
        if self.run.path.name.startswith("level_01") and self.epoch == 2:  # after its first (partial) epoch
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_lottery(config(tmp_path / "interrupted", k))
    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", original)
    resumed = run_lottery(config(tmp_path / "interrupted", k))
    got, ref = resumed.levels[1].run_dir, reference.levels[1].run_dir
    assert "resumed from" in (got / "train.log").read_text()
    a, b = load_checkpoint(got / "checkpoint.pt")["model"], load_checkpoint(ref / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    timing = {"seconds", "eval_seconds", "train_seconds", "config_hash"}  # the hash covers options.previous
    strip = [{key: v for key, v in r.items() if key not in timing} for r in read_jsonl(got / "metrics.jsonl")]
    assert strip == [{key: v for key, v in r.items() if key not in timing} for r in read_jsonl(ref / "metrics.jsonl")]
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (got, ref))
    assert {n: v for n, v in sa.items() if n not in timing} == {n: v for n, v in sb.items() if n not in timing}
    assert (sa["steps"], sa["start_step"]) == (T - k, k)
