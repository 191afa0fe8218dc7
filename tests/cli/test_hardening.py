"""Bad input through the command line: one clear line, no traceback, nothing left behind or lost.

Each case is what a new user tried; the error must name the bad value (or file) and what is
allowed, the exit code must say usage error (2) or failure (1), and no run directory may be left
behind by a run that never started.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest
import torch
from data_files import make_image_folder, write_cifar10, write_mnist_like, write_png

from sparsetime.cli import main
from sparsetime.data import catalog
from sparsetime.train import checkpoint as checkpoint_module
from sparsetime.train import load_config, resolve_config, run_directory
from sparsetime.train.run_lock import run_lock

TINY = ["dataset=synthetic", "data.options.train_size=64", "data.options.test_size=32", "model_options.hidden=[8]",
        "epochs=1", "batch_size=32", "sparsity.density=0.5", "progress=none", "device=cpu"]


@pytest.fixture(autouse=True)
def only_test_data(monkeypatch, tmp_path):
    """Datasets only where a test puts them (no system copy, no cache, no download)."""
    monkeypatch.delenv("SPARSETIME_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, info in list(catalog.CATALOG.items()):
        monkeypatch.setitem(catalog.CATALOG, name, dataclasses.replace(info, system_dirs=(), downloads=()))


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_clean_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines, err
    assert lines[-1].startswith("sparsetime: error: ") or lines[-1].startswith("sparsetime: interrupted"), err
    return lines[-1]


def test_malformed_yaml_and_python_tags(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\nmodel: mlp\n")
    code, _, err = run(capsys, "train", "--config", str(bad))
    assert code == 2 and "is not valid YAML" in one_clean_line(err) and "line" in err
    evil = tmp_path / "evil.yaml"
    evil.write_text("epochs: !!python/object/apply:os.system ['touch pwned']\n")
    code, _, err = run(capsys, "train", "--config", str(evil))
    assert code == 2 and "python/object/apply" in one_clean_line(err)
    assert not (tmp_path / "pwned").exists()


def test_a_yaml_alias_bomb_is_refused_before_it_expands(capsys, tmp_path):
    levels = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
               f"*a{i - 1}, *a{i - 1}]" for i in range(1, 8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("sparsity:\n  options:\n" + "".join(f"    {line}\n" for line in levels))
    start = time.perf_counter()
    code, _, err = run(capsys, "train", "--config", str(bomb), f"output_dir={tmp_path / 'runs'}")
    assert code == 2 and "aliases are not allowed" in one_clean_line(err)
    assert time.perf_counter() - start < 5 and not (tmp_path / "runs").exists()
    code, _, err = run(capsys, "train", "--print-config", "sparsity.options.x=[&a [1], *a]")
    assert code == 2 and "aliases are not allowed" in one_clean_line(err)


@pytest.mark.parametrize("override, expected", [
    ("sparsity.options.foo=1", "sparsity.options ['foo'] are not options of method 'set'; allowed: "),
    ("optim.lr=inf", "'optim.lr' = 'inf' is not a finite number"),
    ("optim.lr=nan", "'optim.lr' = 'nan' is not a finite number"),
    ("seed=1e30", "config key 'seed' = '1e30' is out of range"),
    ("seed=-3", "config key 'seed' = -3 is invalid; allowed: an integer with 0 <= seed < 2**63"),
    ("name=../../escape", "config key 'name' = '../../escape' is invalid; allowed: one path component"),
    ("name=/abs/path", "config key 'name' = '/abs/path' is invalid"),
    ("name=..", "config key 'name' = '..' is invalid"),
])
def test_bad_values_are_named_and_leave_nothing(capsys, tmp_path, override, expected):
    out = tmp_path / "runs"
    code, _, err = run(capsys, "train", *TINY, f"output_dir={out}", override)
    assert code == 2 and expected in one_clean_line(err)
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path.parent / "escape").exists()


def test_bad_engine_option_value_found_while_building_leaves_no_run_directory(capsys, tmp_path):
    out = tmp_path / "runs"
    code, _, err = run(capsys, "train", *TINY, f"output_dir={out}", "sparsity.options.grad_accumulation=0")
    assert code == 2 and "grad_accumulation must be an int >= 1, got 0" in one_clean_line(err)
    assert not any(out.iterdir())


def test_damaged_dataset_files(capsys, tmp_path):
    fashion = tmp_path / "fmnist"
    write_mnist_like(fashion, np.random.default_rng(0), gz=True, n_train=64, n_test=16, hw=(28, 28))
    images = fashion / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])  # a download cut short
    code, _, err = run(capsys, "train", *TINY[3:], "dataset=fashion_mnist", f"data_dir={fashion}",
                       f"output_dir={tmp_path / 'runs'}")
    assert code == 2 and "train-images-idx3-ubyte.gz is a damaged gzip file" in one_clean_line(err)
    cifar = tmp_path / "cifar"
    write_cifar10(cifar / "cifar-10-batches-py", np.random.default_rng(1))
    (cifar / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"")
    code, _, err = run(capsys, "train", *TINY[3:], "dataset=cifar10", f"data_dir={cifar}",
                       f"output_dir={tmp_path / 'runs'}")
    assert code == 2 and "data_batch_3 is not a readable CIFAR batch file (empty" in one_clean_line(err)


@pytest.mark.parametrize("damage", ["text", "truncated"])
def test_a_bad_evaluation_image_fails_before_training(capsys, tmp_path, damage):
    pytest.importorskip("PIL")
    make_image_folder(tmp_path / "images", np.random.default_rng(2))
    bad = tmp_path / "images" / "val" / "dog" / "0.png"
    if damage == "text":
        bad.write_text("this is not a picture")
    else:
        write_png(bad, np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8))
        bad.write_bytes(bad.read_bytes()[:-200])
    code, _, err = run(capsys, "train", *TINY[3:], "dataset=imagefolder", f"data_dir={tmp_path / 'images'}",
                       "data.options.image_size=8", f"output_dir={tmp_path / 'runs'}")
    line = one_clean_line(err)
    assert code == 2 and f"{bad} is not a readable image" in line and "before training" in line
    assert "epoch 1/1" not in err  # nothing was trained


def test_output_dir_that_is_a_file_and_a_full_disk(capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "train", *TINY, f"output_dir={blocker}")
    assert code == 2 and f"{str(blocker)!r} is a file" in one_clean_line(err)

    def full_disk(obj, fh):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    code, _, err = run(capsys, "train", *TINY, f"output_dir={tmp_path / 'runs'}")
    line = one_clean_line(err)
    assert code == 1 and "cannot write the checkpoint" in line and "is the disk full?" in line
    assert not list((tmp_path / "runs").glob("*/.*.tmp"))  # the partial file went away


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_dir(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = run(capsys, "train", *TINY, f"output_dir={locked / 'runs'}")
    assert code == 2 and "is not writable" in one_clean_line(err)


def test_garbage_and_malicious_init_mask_files(capsys, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    malicious = tmp_path / "malicious.pt"
    with open(malicious, "wb") as fh:
        pickle.dump({"0.weight": Boom()}, fh)
    for path in (garbage, malicious):
        code, _, err = run(capsys, "train", *TINY, f"output_dir={tmp_path / 'runs'}", f"sparsity.init_mask={path}")
        assert code == 2 and f"{str(path)!r} is not a masks file that can be loaded safely" in one_clean_line(err)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", ["{not json", "{}", "[]"])
def test_a_damaged_summary_is_reported_not_a_key_error(capsys, tmp_path, content):
    out = tmp_path / "runs"
    assert main(["-q", "train", *TINY, f"output_dir={out}"]) == 0
    summary = next(out.glob("*/summary.json"))
    summary.write_text(content)
    code, _, err = run(capsys, "train", *TINY, f"output_dir={out}")
    line = one_clean_line(err)
    assert code == 2 and "summary.json' is damaged" in line and "Delete it and run the same command again" in line
    summary.unlink()  # as the message says: the run continues from its checkpoint and writes a new summary
    code, out_text, _ = run(capsys, "-q", "train", *TINY, f"output_dir={out}")
    assert code == 0 and json.loads(summary.read_text())["epochs"] == 1


def test_ctrl_c_during_a_checkpoint_write_lands_after_it(tmp_path):
    """SIGINT while torch writes the file: the write completes, then a clean KeyboardInterrupt."""
    target = tmp_path / "checkpoint.pt"
    slow_save = torch.save

    def save(obj, fh):
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        time.sleep(0.3)  # the interrupt arrives in the middle of the write
        slow_save(obj, fh)

    original = checkpoint_module.torch.save
    checkpoint_module.torch.save = save
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoint_module.save_checkpoint(target, {"x": torch.arange(5)})
    finally:
        checkpoint_module.torch.save = original
    assert torch.equal(checkpoint_module.load_checkpoint(target)["x"], torch.arange(5))
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_interrupt_message_names_the_run_directory(capsys, tmp_path, monkeypatch):
    from sparsetime.train import trainer as trainer_module

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", interrupted)
    code, _, err = run(capsys, "train", *TINY, f"output_dir={tmp_path}")
    expected = run_directory(resolve_config(load_config(None, [*TINY, f"output_dir={tmp_path}"])))
    assert code == 130 and f"continue with `sparsetime resume {expected}`" in one_clean_line(err)


def test_a_second_trainer_on_the_same_run_directory_is_refused(capsys, tmp_path):
    args = [*TINY, f"output_dir={tmp_path}"]
    run_dir = run_directory(resolve_config(load_config(None, args)))
    run_dir.mkdir(parents=True)
    leftover = run_dir / ".checkpoint.pt.k3j2.tmp"  # a killed atomic write
    with run_lock(run_dir):
        code, _, err = run(capsys, "train", *args)
        line = one_clean_line(err)
        assert code == 2 and f"is being trained by process {os.getpid()}" in line
        assert not (run_dir / "metrics.jsonl").exists()
    leftover.write_bytes(b"partial")
    code, _, _ = run(capsys, "-q", "train", *args)
    assert code == 0 and not leftover.exists() and (run_dir / "summary.json").is_file()


def test_a_finished_run_is_not_reused_on_other_data(capsys, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_mnist_like(first, np.random.default_rng(4), gz=False, n_train=64, n_test=16, hw=(28, 28))
    write_mnist_like(second, np.random.default_rng(5), gz=False, n_train=64, n_test=16, hw=(28, 28))
    args = [*TINY[3:], "dataset=fashion_mnist", f"output_dir={tmp_path / 'runs'}"]
    assert main(["-q", "train", *args, f"data_dir={first}"]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    recorded = load_config(run_dir / "config.yaml").data_fingerprint
    assert set(recorded) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                             "t10k-labels-idx1-ubyte"}
    code, _, err = run(capsys, "train", *args, f"data_dir={second}")
    line = one_clean_line(err)
    assert code == 2 and "was trained on other fashion_mnist files than those found now" in line
    assert "train-images-idx3-ubyte" in line
    (run_dir / "summary.json").unlink()  # interrupted after its last epoch: resume must refuse too
    code, _, err = run(capsys, "resume", str(run_dir), f"data_dir={second}")
    assert code == 2 and "was trained on other fashion_mnist files" in one_clean_line(err)
    assert main(["-q", "resume", str(run_dir), f"data_dir={first}"]) == 0


def test_log_lines_with_a_progress_bar_are_printed_once(capsys, tmp_path):
    code, _, err = run(capsys, "train", *TINY[:-2], "device=cpu", "progress=bar", f"output_dir={tmp_path}")
    assert code == 0 and err.count("epoch 1/1: train loss") == 1


def test_pruning_at_initialisation_keeps_sparse_aware_init(tmp_path):
    """The weights a prune-at-init method keeps are rescaled per unit, as for a random mask."""
    from sparsetime.models import build_model
    from sparsetime.train.rundir import RunDir
    from sparsetime.train.trainer import Trainer, seed_everything

    config = resolve_config(load_config(None, [*TINY, "sparsity.method=random", "sparsity.density=0.1",
                                               f"output_dir={tmp_path}"]))
    trainer = Trainer(config, RunDir(tmp_path / "run"))
    seed_everything(config.seed)
    reference = build_model("mlp", (1, 8, 8), 4, hidden=[8])  # the same initial weights
    for name, mask in trainer.sparsifier.masks.items():
        w0 = dict(reference.named_parameters())[name].detach()
        fan_in, active = mask.shape[1], mask.sum(1, keepdim=True).clamp(min=1)
        expected = torch.where(mask, w0 * (fan_in / active).sqrt(), torch.zeros(()))
        torch.testing.assert_close(dict(trainer.model.named_parameters())[name].detach(), expected)
