"""DynamicSparsityCallback in Lightning's Trainer (accelerator="cpu"), a tiny LightningModule."""
from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from sparsetime.core.state import masks_from_state  # noqa: E402
from sparsetime.integrations.lightning import CHECKPOINT_KEY, DynamicSparsityCallback  # noqa: E402
from sparsetime.integrations.torch_prune import masks_from_torch_prune  # noqa: E402


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def data() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=False)


def trainer(tmp_path, callbacks, max_epochs=2, **kwargs) -> "pl.Trainer":
    return pl.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, default_root_dir=str(tmp_path),
                      callbacks=callbacks, logger=pl.loggers.CSVLogger(str(tmp_path)), log_every_n_steps=1,
                      enable_progress_bar=False, enable_model_summary=False, **kwargs)


class Union(pl.Callback):
    """After each optimizer step (placed after the sparsity callback): the union of all masks so far."""

    def __init__(self, callback):
        self.callback, self.rates = callback, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        masks = self.callback.sparsifier.masks
        self.union = {n: self.__dict__.get("union", {}).get(n, m) | m for n, m in masks.items()}
        self.rates[trainer.global_step] = (sum(int(u.sum()) for u in self.union.values())
                                           / sum(u.numel() for u in self.union.values()))


def logged(tmp_path, key):
    path = next(tmp_path.rglob("metrics.csv"))
    with path.open() as fh:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(fh) if r.get(key)}


def test_steps_once_per_optimizer_step_and_logs_density_and_rs(tmp_path):
    module = Tiny()
    callback = DynamicSparsityCallback(density=0.25, update_interval=2, drop_fraction=0.5)
    union = Union(callback)
    fit = trainer(tmp_path, [callback, union], accumulate_grad_batches=2)
    fit.fit(module, data())
    sparsifier = callback.sparsifier
    assert fit.global_step == 8 and sparsifier.step_count == 8  # 16 batches, 2 per optimizer step
    assert [u["step"] for u in sparsifier.update_history] == [2, 4, 6, 8]
    params = dict(module.named_parameters())
    for name, mask in sparsifier.masks.items():
        assert torch.count_nonzero(params[name].detach()[~mask]) == 0
    density, rate = logged(tmp_path, "sparsity/density"), logged(tmp_path, "sparsity/itop_rate")
    expected = sum(int(m.sum()) for m in sparsifier.masks.values()) / sum(m.numel() for m in sparsifier.masks.values())
    assert len(density) == 8 and all(v == pytest.approx(expected) for v in density.values())
    steps = sorted(rate)  # CSVLogger rows are indexed by the step before the increment
    assert [rate[s] for s in steps] == pytest.approx([union.rates[s + 1] for s in steps])
    assert rate[steps[-1]] > rate[steps[0]]  # exploration grew


def test_fit_resumes_from_checkpoint_with_the_same_topology(tmp_path):
    every_epoch = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_top_k=-1, every_n_epochs=1,
                                               filename="{epoch}")
    first = DynamicSparsityCallback(density=0.25, update_interval=3, drop_fraction=0.5)
    trainer(tmp_path / "a", [first, every_epoch]).fit(Tiny(), data())
    path = tmp_path / "ckpt" / "epoch=0.ckpt"
    saved = torch.load(path, weights_only=True)[CHECKPOINT_KEY]
    assert saved["step"] == 8 and [u["step"] for u in saved["history"]] == [3, 6]

    second = DynamicSparsityCallback(density=0.25, update_interval=3, drop_fraction=0.5)
    starts = []

    class Start(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            starts.append({n: m.clone() for n, m in second.sparsifier.masks.items()})

    trainer(tmp_path / "b", [second, Start()]).fit(Tiny(), data(), ckpt_path=str(path))
    at_eight = masks_from_state(saved)
    assert all(torch.equal(starts[0][n], at_eight[n]) for n in at_eight)
    assert second.sparsifier.step_count == 16
    assert [u["step"] for u in second.sparsifier.update_history] == [3, 6, 9, 12, 15]
    for name, mask in first.sparsifier.masks.items():  # the same as the uninterrupted run
        assert torch.equal(second.sparsifier.masks[name], mask)
    assert second.sparsifier.exploration_rate() == first.sparsifier.exploration_rate()


def test_model_pruning_masks_seed_a_dynamic_sparse_fit(tmp_path):
    module = Tiny()
    pruning = pl.callbacks.ModelPruning("l1_unstructured", amount=0.75, use_global_unstructured=True,
                                        parameter_names=["weight"], make_pruning_permanent=False, verbose=0)
    trainer(tmp_path / "prune", [pruning], max_epochs=1).fit(module, data())
    pruned = {f"{n}.weight": m.weight_mask.bool().clone() for n, m in module.named_modules()
              if hasattr(m, "weight_mask")}
    masks = masks_from_torch_prune(module)
    assert set(masks) == {"net.0.weight", "net.2.weight"}
    assert all(torch.equal(masks[n], pruned[n]) for n in pruned)
    total = sum(int(m.sum()) for m in masks.values())
    assert total == round(0.25 * (8 * 32 + 32 * 4))  # global L1 pruning kept a quarter of the weights

    callback = DynamicSparsityCallback(initial_masks=masks, update_interval=2, drop_fraction=0.5)
    trainer(tmp_path / "dst", [callback], max_epochs=1).fit(module, data())
    sparsifier = callback.sparsifier
    assert sum(sparsifier.counts.values()) == total
    assert {n: int(m.sum()) for n, m in sparsifier.masks.items()} == {n: int(m.sum()) for n, m in masks.items()}
    assert any(not torch.equal(sparsifier.masks[n], masks[n]) for n in masks)  # and it explored from there
    assert sparsifier.fired_masks["net.0.weight"][masks["net.0.weight"]].all()  # starting from the imported masks


def test_bad_setups_are_refused():
    with pytest.raises(ValueError, match="allowed: 'masked'"):
        DynamicSparsityCallback(density=0.5, execution="sparse")
    callback = DynamicSparsityCallback(density=0.5)
    with pytest.raises(ValueError, match="holds no sparsetime sparsifier state"):
        callback.on_load_checkpoint(None, None, {"state_dict": {}})
