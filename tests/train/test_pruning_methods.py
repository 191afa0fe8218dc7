"""Dense-to-sparse methods in the runner: pruning at init, GMP, init_mask seeding, bad input."""
from __future__ import annotations

import json

import pytest
import torch

import sparsetime as st
from sparsetime.data import batch_iterator, build_datasets
from sparsetime.models import build_model
from sparsetime.train import load_checkpoint, load_config, train
from sparsetime.train import trainer as trainer_module
from sparsetime.train.pruning_methods import gmp_steps
from sparsetime.core.state import masks_from_state

# synthetic 1x8x8 images, 4 classes; MLP 64-16-4 -> 64*16 + 16*4 = 1088 sparse weights; 4 steps per epoch
TRAIN, N_WEIGHTS = 128, 64 * 16 + 16 * 4
KEEP = round(0.3 * N_WEIGHTS)  # 326


def tiny(tmp_path, *extra: str):
    return load_config(None, [
        "dataset=synthetic", f"data.options.train_size={TRAIN}", "data.options.test_size=64",
        "model_options.hidden=[16]", "epochs=2", "batch_size=32", "sparsity.density=0.3",
        "sparsity.update_interval=3", f"output_dir={tmp_path}", "progress=none", "device=cpu", *extra])


def final_masks(run_dir) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run_dir / "checkpoint.pt")["sparsifier"]
    state = state.get("dynamic", state)
    return masks_from_state(state) if "version" in state else state["masks"]  # DynamicSparsity or GMP


def independent_init_and_batches(seed: int = 0):
    """The run's initial model and pre-training batches, rebuilt from the public pieces."""
    trainer_module.seed_everything(seed)
    splits = build_datasets("synthetic", seed=seed, train_size=TRAIN, test_size=64)
    model = build_model("mlp", splits.input_shape, splits.num_classes, hidden=[16])
    generator = torch.Generator().manual_seed(trainer_module.epoch_seed(seed, -1))
    batches = list(batch_iterator(splits.train, 32, shuffle=True, generator=generator, num_workers=0))
    return model, batches


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "random", "magnitude", "gmp"])
def test_method_trains_end_to_end_at_exact_density(tmp_path, method):
    extra = ["sparsity.update_interval=1"] if method == "gmp" else []
    result = train(tiny(tmp_path, f"sparsity.method={method}", *extra))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["method"] == method and summary["epochs"] == 2
    masks = final_masks(result.run_dir)
    assert sum(int(m.sum()) for m in masks.values()) == KEEP
    assert summary["density"] == pytest.approx(KEEP / N_WEIGHTS)
    state = load_checkpoint(result.run_dir / "checkpoint.pt")["model"]
    for name, mask in masks.items():
        assert torch.all(state[name][~mask] == 0), name
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    if method == "gmp":  # dense to 0.3 between steps 2 and 6 of 8: still above the target after epoch 1
        assert records[0]["density"] > records[1]["density"] == pytest.approx(KEEP / N_WEIGHTS)
        # FLOPs per example: dense epoch-1 start (3 f_D) dominates, so more than static sparse training
        static = train(tiny(tmp_path, "sparsity.method=magnitude")).summary["train_flops"]
        assert summary["train_flops"] > static


def test_snip_run_masks_equal_independent_snip_on_the_same_batches(tmp_path):
    result = train(tiny(tmp_path, "sparsity.method=snip"))
    model, batches = independent_init_and_batches()
    expected = st.pruning.prune(model, "snip", 0.3, batches=batches, seed=0)
    got = final_masks(result.run_dir)
    assert set(got) == set(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_synflow_option_rounds_changes_nothing_but_is_accepted(tmp_path):
    result = train(tiny(tmp_path, "sparsity.method=synflow", "sparsity.options.rounds=5"))
    model, batches = independent_init_and_batches()
    expected = st.pruning.prune(model, "synflow", 0.3, batches=batches, seed=0, rounds=5)
    got = final_masks(result.run_dir)
    assert all(torch.equal(got[n], expected[n]) for n in expected)


def test_init_mask_seeds_set_run_with_the_pruning_mask(tmp_path):
    # update_interval beyond training: no topology update, so the final mask is the initial one
    result = train(tiny(tmp_path, "sparsity.method=set", "sparsity.init_mask=snip", "sparsity.update_interval=100"))
    model, batches = independent_init_and_batches()
    expected = st.pruning.prune(model, "snip", 0.3, batches=batches, seed=0)
    got = final_masks(result.run_dir)
    assert all(torch.equal(got[n], expected[n]) for n in expected)
    assert result.summary["itop_rate"] == pytest.approx(KEEP / N_WEIGHTS)  # nothing explored beyond the seed


def test_init_mask_from_masks_file_then_set_explores(tmp_path):
    model, _ = independent_init_and_batches()
    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    masks = {n: torch.rand(dict(model.named_parameters())[n].shape, generator=torch.Generator().manual_seed(1)) < 0.3
             for n in names}
    path = tmp_path / "masks.pt"
    torch.save(masks, path)
    seeded = train(tiny(tmp_path / "a", "sparsity.method=static", f"sparsity.init_mask={path}"))
    got = final_masks(seeded.run_dir)
    assert all(torch.equal(got[n], masks[n]) for n in names)
    # the same file seeding SET: same density, topology updated, so Rs grows beyond the density
    dst = train(tiny(tmp_path / "b", "sparsity.method=set", f"sparsity.init_mask={path}"))
    active = sum(int(m.sum()) for m in masks.values())
    assert dst.summary["density"] == pytest.approx(active / N_WEIGHTS)
    assert dst.summary["itop_rate"] > active / N_WEIGHTS


def test_gmp_steps_snap_the_end_to_a_pruning_step():
    assert gmp_steps(100, 10, 0.25, 0.75) == (25, 75)
    assert gmp_steps(100, 20, 0.25, 0.75) == (25, 65)  # 25 + 2*20; 85 would be beyond end
    with pytest.raises(ValueError, match="unreachable"):
        gmp_steps(8, 5, 0.25, 0.75)


@pytest.mark.parametrize("extra, match", [
    (["sparsity.method=gmp", "sparsity.update_interval=50"], "unreachable"),
    (["sparsity.method=lth", "sparsity.options.fraction=1.5"], "fraction"),
    (["sparsity.method=lth", "sparsity.options.fraction=0"], "fraction"),
    (["sparsity.method=lth", "sparsity.options.rewind_step=8"], "rewind_step"),
    (["sparsity.method=snip", "sparsity.dense_first=true", "sparsity.dense_last=true"], "sparse|layer"),
    (["sparsity.method=snip", "sparsity.options.num_batch=2"], "num_batches"),
    (["sparsity.method=snip", "sparsity.options.scope=per_layer"], "global, layer"),
    (["sparsity.method=dense", "sparsity.init_mask=snip"], "accept it: rigl, set, snfs, static"),
    (["sparsity.method=set", "sparsity.init_mask=no_such_masks.pt"], "neither a pruning method"),
    (["sparsity.method=gmp", "sparsity.options.start=0.8"], "below end"),
    (["sparsity.method=lth", "sparsity.options.mode=rewind"], "weights, lr, finetune"),
])
def test_bad_input_is_a_value_error_and_writes_nothing(tmp_path, extra, match):
    out = tmp_path / "runs"
    with pytest.raises(ValueError, match=match):
        train(tiny(out, *extra))
    assert not out.exists() or not any(out.iterdir())


def test_interrupted_snip_run_resumes_without_rescoring_to_identical_result(tmp_path, monkeypatch,
                                                                           interrupt_at_epoch):
    reference = train(tiny(tmp_path / "a", "sparsity.method=snip"))
    interrupt_at_epoch(1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "b", "sparsity.method=snip"))
    interrupt_at_epoch(None)
    calls = []
    monkeypatch.setattr(st.pruning, "prune", lambda *a, **k: calls.append(1))  # scoring must be skipped
    resumed = train(tiny(tmp_path / "b", "sparsity.method=snip"))
    assert calls == []
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]
    ref_state = load_checkpoint(reference.run_dir / "checkpoint.pt")["model"]
    new_state = load_checkpoint(resumed.run_dir / "checkpoint.pt")["model"]
    assert all(torch.equal(ref_state[k], new_state[k]) for k in ref_state)
