"""DynamicSparsityCallback in transformers.Trainer: a tiny BERT built from a config, generated data."""
from __future__ import annotations

import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from sparsetime.core.sparsifier import DynamicSparsity  # noqa: E402
from sparsetime.core.state import masks_from_state  # noqa: E402
from sparsetime.integrations.huggingface import STATE_FILE, DynamicSparsityCallback  # noqa: E402
from sparsetime.train.checkpoint import load_checkpoint  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Sequences of 8 token ids; the label is whether token 1 occurs more often than token 2."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 12, (n, 8), generator=g)
        self.labels = ((self.ids == 1).sum(1) > (self.ids == 2).sum(1)).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=12, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=8, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def trainer_for(model, out, callback, max_steps=8, accumulation=1, callbacks=()):
    args = transformers.TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=4, max_steps=max_steps, save_steps=4, logging_steps=2,
        gradient_accumulation_steps=accumulation, learning_rate=5e-3, report_to="none", use_cpu=True, seed=0,
        disable_tqdm=True, dataloader_num_workers=0, save_strategy="steps")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=list(callbacks))
    callback.attach(trainer)
    return trainer


class Recorder(transformers.TrainerCallback):
    """A logger placed before the sparsity callback; also tracks the union of masks after each step."""

    def __init__(self, callback):
        self.callback, self.logs, self.union, self.micro_batches = callback, [], None, 0

    def on_step_end(self, args, state, control, **kwargs):
        masks = self.callback.sparsifier.masks
        if self.union is None:
            self.union = {n: m.clone() for n, m in masks.items()}
        for n, m in masks.items():
            self.union[n] |= m

    def on_substep_end(self, args, state, control, **kwargs):
        self.micro_batches += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:
            union = sum(int(u.sum()) for u in self.union.values()) / sum(u.numel() for u in self.union.values())
            masks = self.callback.sparsifier.masks
            density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
            self.logs.append((state.global_step, dict(logs), density, union))


def test_steps_per_optimizer_step_with_accumulation_and_logs_density_and_rs(tmp_path):
    model = tiny_bert()
    callback = DynamicSparsityCallback(density=0.3, update_interval=2, drop_fraction=0.5)
    recorder = Recorder(callback)
    trainer = trainer_for(model, tmp_path, callback, max_steps=4, accumulation=2, callbacks=[recorder])
    trainer.train()
    sparsifier = callback.sparsifier
    assert trainer.state.global_step == 4 and recorder.micro_batches == 4  # 8 batches, 4 of them end a substep
    assert sparsifier.step_count == 4  # once per optimizer step, not per micro-batch
    assert [u["step"] for u in sparsifier.update_history] == [2, 4]
    names = dict(model.named_parameters())
    for name, mask in sparsifier.masks.items():
        assert torch.count_nonzero(names[name].detach()[~mask]) == 0
    assert [step for step, *_ in recorder.logs] == [2, 4]
    for step, logs, density, union in recorder.logs:  # a logger ahead of the callback sees the scalars
        assert logs["sparsity/density"] == pytest.approx(density, abs=1e-12)
        assert logs["sparsity/itop_rate"] == pytest.approx(union, abs=1e-12)
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["sparsity/density"] for h in history] == [logs["sparsity/density"] for _, logs, *_ in recorder.logs]
    assert recorder.logs[-1][1]["sparsity/itop_rate"] > recorder.logs[0][1]["sparsity/density"]  # it explored


def test_resume_from_checkpoint_continues_the_same_topology(tmp_path):
    first = DynamicSparsityCallback(density=0.3, update_interval=2, drop_fraction=0.5)
    trainer_for(tiny_bert(), tmp_path / "a", first).train()
    saved = load_checkpoint(tmp_path / "a" / "checkpoint-4" / STATE_FILE)
    at_four = masks_from_state(saved)
    model = tiny_bert()
    fresh = DynamicSparsity(model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.3, update_interval=2,
                            drop_fraction=0.5, total_steps=8, seed=0)
    assert any(not torch.equal(at_four[n], m) for n, m in fresh.masks.items())  # the updates moved the topology

    shutil.copytree(tmp_path / "a" / "checkpoint-4", tmp_path / "b" / "checkpoint-4")
    second = DynamicSparsityCallback(density=0.3, update_interval=2, drop_fraction=0.5)
    starts = []
    original = second.on_train_begin

    def begin(*args, **kwargs):
        original(*args, **kwargs)
        starts.append({n: m.clone() for n, m in second.sparsifier.masks.items()})

    second.on_train_begin = begin
    trainer_for(tiny_bert(), tmp_path / "b", second).train(resume_from_checkpoint=True)
    assert all(torch.equal(starts[0][n], at_four[n]) for n in at_four)  # the checkpoint's topology, not a new one
    assert second.sparsifier.step_count == 8
    assert [u["step"] for u in second.sparsifier.update_history] == [2, 4, 6, 8]
    assert second.sparsifier.update_history[:2] == saved["history"]
    for name, mask in first.sparsifier.masks.items():  # the same run as the uninterrupted one
        assert torch.equal(second.sparsifier.masks[name], mask)
    assert second.sparsifier.exploration_rate() == first.sparsifier.exploration_rate()


def _begin_args(out):
    args = transformers.TrainingArguments(output_dir=str(out), report_to="none", use_cpu=True, max_steps=8)
    state = transformers.TrainerState(max_steps=8)
    return args, state, transformers.TrainerControl()


def test_resume_without_saved_state_is_refused(tmp_path):
    callback = DynamicSparsityCallback(density=0.3)
    args, state, control = _begin_args(tmp_path)
    state.global_step = 4
    model = tiny_bert()
    with pytest.raises(ValueError, match="holds no sparsifier state.*resume_from"):
        callback.on_train_begin(args, state, control, model=model, optimizer=torch.optim.SGD(model.parameters(), 0.1))
    with pytest.raises(ValueError, match="execution='sparse' is not supported.*allowed: 'masked'"):
        DynamicSparsityCallback(density=0.3, execution="sparse")
