"""Lottery-ticket experiments run by ``run_lottery``: rewinding, learning-rate rewinding, fine-tuning, controls.

Levels rewound to step k > 0 train steps k..T with the schedule positioned at k. Every optimiser
step of a run is observed through global optimizer step hooks: before the update (the learning
rate in use, the weights the step starts from and their gradients) and after it (the full model
state, BN statistics included); each run's state when training starts is recorded too. Expected
values are rebuilt independently: the cosine schedule by hand, the batches from the public data
pieces, the rewound weights from level 0's own step-k observation.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from sparsetime.data import batch_iterator, build_datasets
from sparsetime.experiments.lottery import format_table, run_lottery
from sparsetime.models import build_model
from sparsetime.models import registry as model_registry
from sparsetime.train import load_checkpoint, load_config, lottery_level, save_checkpoint, train
from sparsetime.train import trainer as trainer_module
from sparsetime.core.state import masks_from_state

# synthetic 1x8x8 images, 4 classes; MLP 64-16-4; 128 examples / batch 32 = 4 steps per epoch; 3 epochs
TRAIN, BATCH, STEPS_PER_EPOCH, EPOCHS, LR = 128, 32, 4, 3, 0.05
T = STEPS_PER_EPOCH * EPOCHS
N_WEIGHTS = 64 * 16 + 16 * 4


def cosine_lr(step: int) -> float:
    """Cosine from LR to 0 over T steps, no warm-up (the cosine schedule written out by hand)."""
    return LR * 0.5 * (1.0 + math.cos(math.pi * step / T))


def config(out, k: int, mode: str = "weights", *extra: str):
    return load_config(None, [
        "dataset=synthetic", f"data.options.train_size={TRAIN}", "data.options.test_size=64",
        "model_options.hidden=[16]", f"epochs={EPOCHS}", f"batch_size={BATCH}", "optim.name=sgd",
        f"optim.lr={LR}", "schedule.name=cosine", "schedule.min_lr=0", "sparsity.options.levels=1",
        "sparsity.options.fraction=0.5", f"sparsity.options.rewind_step={k}", f"sparsity.options.mode={mode}",
        f"output_dir={out}", "progress=none", "device=cpu", *extra])


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: v.detach().clone() for n, v in model.state_dict().items()}


class StepRecorder:
    """Per run (trainer), in the order the runs train: the model state when training starts, and per
    optimiser step the lr, parameters and gradients before the update and the full state after it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trainers: list = []
        self.steps: dict[int, list[dict]] = {}
        self.after: dict[int, list[dict]] = {}
        self.start: dict[int, dict] = {}
        original_fit = trainer_module.Trainer.fit

        def fit(trainer):
            self.trainers.append(trainer)
            self.steps[id(trainer)], self.after[id(trainer)] = [], []
            self.start[id(trainer)] = state_of(trainer.model)
            return original_fit(trainer)

        monkeypatch.setattr(trainer_module.Trainer, "fit", fit)
        self.handles = [register_optimizer_step_pre_hook(self._before), register_optimizer_step_post_hook(self._after)]

    def _trainer(self, optimizer):
        (trainer,) = [t for t in self.trainers if t.optimizer is optimizer]
        return trainer

    def _before(self, optimizer, args, kwargs) -> None:
        trainer = self._trainer(optimizer)
        named = dict(trainer.model.named_parameters())
        self.steps[id(trainer)].append({
            "lr": optimizer.param_groups[0]["lr"],
            "params": {n: p.detach().clone() for n, p in named.items()},
            "grads": {n: p.grad.detach().clone() for n, p in named.items()},
        })

    def _after(self, optimizer, args, kwargs) -> None:
        trainer = self._trainer(optimizer)
        self.after[id(trainer)].append(state_of(trainer.model))

    def of(self, run: int) -> list[dict]:
        return self.steps[id(self.trainers[run])]

    def start_of(self, run: int) -> dict[str, torch.Tensor]:
        return self.start[id(self.trainers[run])]

    def state_after(self, run: int, steps: int) -> dict[str, torch.Tensor]:
        """The state of run ``run`` after its first ``steps`` optimiser steps (BN statistics included)."""
        return self.after[id(self.trainers[run])][steps - 1]


@pytest.fixture
def recorder(monkeypatch):
    rec = StepRecorder(monkeypatch)
    yield rec
    for handle in rec.handles:
        handle.remove()


@pytest.fixture
def bn_mlp(monkeypatch):
    """A model with BatchNorm, registered for the test: 64 -> Linear -> BN -> ReLU -> Linear -> 4."""
    def factory(input_shape, num_classes, *, hidden=(16,)):
        (h,) = hidden
        return nn.Sequential(nn.Flatten(), nn.Linear(64, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, num_classes))

    monkeypatch.setattr(model_registry, "_REGISTRY", {**model_registry._REGISTRY, "bn_mlp": factory})
    return "bn_mlp"


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def level_masks(run_dir) -> dict[str, torch.Tensor]:
    return masks_from_state(load_checkpoint(run_dir / "checkpoint.pt")["sparsifier"]["dynamic"])


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


@pytest.mark.parametrize("k, warmup_epochs", [(5, 0.0), (2, 1.0)])  # k=2 lies inside a 4-step warm-up
def test_finetune_trains_steps_k_to_t_at_the_final_rate_from_the_trained_weights(tmp_path, recorder, k,
                                                                                    warmup_epochs):
    """Fine-tuning gets the retraining budget of the rewinding modes (T - k steps, Renda et al.), at
    the final learning rate from the first step: no warm-up, whatever schedule.warmup_epochs says."""
    cfg = config(tmp_path, k, mode="finetune")
    cfg.schedule.min_lr = 0.001
    cfg.schedule.warmup_epochs = warmup_epochs
    result = run_lottery(cfg)
    level0, level1 = recorder.of(0), recorder.of(1)
    assert len(level0) == T and len(level1) == T - k
    assert [s["lr"] for s in level1] == [0.001] * (T - k)
    trained = load_checkpoint(result.levels[0].run_dir / "checkpoint.pt")["model"]
    expected = masked(trained, level_masks(result.levels[1].run_dir))
    for n, w in level1[0]["params"].items():
        assert torch.equal(w, expected[n]), n
    summary = json.loads((result.levels[1].run_dir / "summary.json").read_text())
    assert (summary["steps"], summary["start_step"]) == (T - k, k)


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


# ----------------------------------------------------------------------------- ported from the old callback driver

@pytest.mark.parametrize("k, levels", [(0, 2), (5, 1)])
def test_weight_rewinding_restores_the_step_k_state_with_bn_statistics(tmp_path, recorder, bn_mlp, k, levels):
    """Every level starts from level 0's state at step k (its init for k = 0), BN statistics included,
    masked; each level keeps round(0.8 x) of the weights the previous level left, by trained magnitude."""
    result = run_lottery(config(tmp_path, k, "weights", f"model={bn_mlp}", f"sparsity.options.levels={levels}",
                                "sparsity.options.fraction=0.2"))
    reference = recorder.start_of(0) if k == 0 else recorder.state_after(0, k)
    assert int(reference["2.num_batches_tracked"]) == k  # BN counted k forward passes
    previous_masks, previous_count = None, N_WEIGHTS
    for level in range(1, levels + 1):
        masks = level_masks(result.levels[level].run_dir)
        start = recorder.start_of(level)
        assert start.keys() == reference.keys()
        for n, v in reference.items():  # weights masked, biases and BN buffers exactly as at step k
            assert torch.equal(start[n], v * masks[n] if n in masks else v), (level, n)
        count = sum(int(m.sum()) for m in masks.values())
        assert count == round(0.8 * previous_count)
        trained = load_checkpoint(result.levels[level - 1].run_dir / "checkpoint.pt")["model"]
        alive = previous_masks or {n: torch.ones_like(m) for n, m in masks.items()}
        kept = torch.cat([trained[n].abs()[masks[n]] for n in masks])
        removed = torch.cat([trained[n].abs()[alive[n] & ~masks[n]] for n in masks])
        assert all(not (masks[n] & ~alive[n]).any() for n in masks) and kept.min() >= removed.max()
        previous_masks, previous_count = masks, count


def reinit_by_hand(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Fresh weights: every module's own reset_parameters() under ``seed``, in module order."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return state_of(model)


def test_controls_of_a_level_train_next_to_it_without_renaming_anything(tmp_path, recorder, bn_mlp):
    k = 2
    plain = run_lottery(config(tmp_path, k, "weights", f"model={bn_mlp}"))
    assert plain.controls == [] and len(format_table(plain).splitlines()) == 3  # header and two levels
    trained_runs = len(recorder.trainers)
    result = run_lottery(config(tmp_path, k, "weights", f"model={bn_mlp}",
                                "sparsity.options.controls=[reinit, random_mask]"))
    assert result.experiment_dir == plain.experiment_dir
    assert [r.run_dir for r in result.levels] == [r.run_dir for r in plain.levels]
    assert all(r.already_finished for r in result.levels)
    assert len(recorder.trainers) == trained_runs + 2  # only the two controls were trained
    reinit, random_mask = result.controls
    assert (reinit.control, reinit.level, random_mask.control, random_mask.level) == ("reinit", 1, "random_mask", 1)
    assert reinit.run_dir.parent == random_mask.run_dir.parent == result.experiment_dir
    assert reinit.run_dir.name.startswith("level_01_reinit-") and random_mask.run_dir.name.startswith(
        "level_01_random_mask-")
    table = format_table(result)
    assert "reinit" in table and "random_mask" in table and str(random_mask.run_dir) in table

    ticket = level_masks(result.levels[1].run_dir)
    at_k = recorder.state_after(0, k)
    # random mask: the ticket's per-layer counts at other positions, on the step-k state
    masks = level_masks(random_mask.run_dir)
    assert {n: int(m.sum()) for n, m in masks.items()} == {n: int(m.sum()) for n, m in ticket.items()}
    assert any(not torch.equal(masks[n], ticket[n]) for n in ticket)
    start = recorder.start_of(trained_runs + 1)
    for n, v in at_k.items():
        assert torch.equal(start[n], v * masks[n] if n in masks else v), n
    # reinit: the ticket's mask on freshly drawn weights (BN reset too), not the run's own init
    assert all(torch.equal(level_masks(reinit.run_dir)[n], ticket[n]) for n in ticket)
    fresh = reinit_by_hand(build_model(bn_mlp, (1, 8, 8), 4), seed=lottery_level.control_seed(0, 1))
    start = recorder.start_of(trained_runs)
    for n, v in fresh.items():
        assert torch.equal(start[n], v * ticket[n] if n in ticket else v), n
    init = recorder.start_of(0)
    assert not torch.equal(start["1.weight"], init["1.weight"] * ticket["1.weight"])
    # both retrain steps k..T on the experiment's schedule, like weight rewinding
    for run in (trained_runs, trained_runs + 1):
        lrs = [s["lr"] for s in recorder.steps[id(recorder.trainers[run])]]
        assert lrs == pytest.approx([cosine_lr(t) for t in range(k, T)], rel=1e-12)


@pytest.mark.parametrize("extra, match", [
    (["sparsity.options.controls=[shuffle]"], "controls"),
    (["sparsity.options.controls=[reinit, reinit]"], "distinct"),
    (["sparsity.options.control=reinit"], "sparsity.options.controls"),
])
def test_bad_controls_are_rejected_before_anything_is_written(tmp_path, extra, match):
    out = tmp_path / "runs"
    with pytest.raises(ValueError, match=match):
        run_lottery(config(out, 0, "weights", *extra))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("extra, match", [
    (["sparsity.options.controls=[reinit]"], "sparsetime lth"),
    (["sparsity.options.control=reinit"], "level >= 1"),
    (["sparsity.options.control=shuffle", "sparsity.options.level=1", "sparsity.options.previous=x"],
     "reinit, random_mask"),
])
def test_a_single_level_run_checks_its_control(tmp_path, extra, match):
    with pytest.raises(ValueError, match=match):
        train(config(tmp_path, 0, "weights", "sparsity.method=lth", *extra))
    assert not any(tmp_path.iterdir())


def test_a_finetune_level_trained_from_step_0_by_an_older_version_is_not_reused(tmp_path):
    cfg = config(tmp_path, 5, mode="finetune")
    cfg.schedule.min_lr = 0.001
    result = run_lottery(cfg)
    summary_file = result.levels[1].run_dir / "summary.json"
    summary = json.loads(summary_file.read_text())
    summary_file.write_text(json.dumps({**summary, "start_step": 0, "steps": T}))  # as the old fine-tuning wrote it
    with pytest.raises(ValueError, match="trained from step 0, but its config now starts at step 5.*delete"):
        run_lottery(cfg)
    # the same for an interrupted one: its checkpoint says where it started
    summary_file.unlink()
    checkpoint = load_checkpoint(result.levels[1].run_dir / "checkpoint.pt")
    save_checkpoint(result.levels[1].run_dir / "checkpoint.pt", {**checkpoint, "start_step": 0})
    with pytest.raises(ValueError, match="trained from step 0, but its config now starts at step 5.*delete"):
        run_lottery(cfg)
    assert not summary_file.exists() and (result.levels[1].run_dir / "checkpoint.pt").is_file()  # nothing lost
