"""`sparsity.method=transfer`: a ticket from another run directory, output layer re-initialised."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsetime.cli import EXIT_OK, EXIT_USAGE, main
from sparsetime.core.state import masks_from_state
from sparsetime.train import load_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src"
DATA = ["dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64", "epochs=2", "batch_size=32",
        "progress=none", "device=cpu"]
OUT = "layers.1.weight"


@pytest.fixture(scope="module")
def ticket(tmp_path_factory) -> Path:
    """A finished lottery level 1 (MLP 64-16-4, half the weights kept)."""
    out = tmp_path_factory.mktemp("source")
    assert main(["-q", "lth", *DATA, "model_options.hidden=[16]", "sparsity.options.levels=1",
                 "sparsity.options.fraction=0.5", f"output_dir={out}"]) == EXIT_OK
    (experiment,) = list(out.iterdir())
    return sorted(experiment.iterdir())[1]


def transfer(out: Path, ticket: Path, *extra: str) -> list[str]:
    return ["-q", "train", *DATA, "model_options.hidden=[16]", "data.options.num_classes=3",
            "sparsity.method=transfer", f"sparsity.options.source={ticket}", f"output_dir={out}", *extra]


def only_run(out: Path) -> Path:
    (run,) = list(out.iterdir())
    return run


def test_masks_and_init_come_from_the_ticket_and_the_output_layer_is_fresh_and_dense(tmp_path, ticket):
    assert main(transfer(tmp_path, ticket)) == EXIT_OK
    source = load_checkpoint(ticket / "checkpoint.pt")["sparsifier"]
    target = load_checkpoint(only_run(tmp_path) / "checkpoint.pt")["sparsifier"]
    ours, theirs = masks_from_state(target["dynamic"]), masks_from_state(source["dynamic"])
    assert torch.equal(ours["layers.0.weight"], theirs["layers.0.weight"])
    assert bool(ours[OUT].all()) and ours[OUT].shape == (3, 16)
    start = target["rewind"]  # the transfer run's own start weights
    assert torch.equal(start["layers.0.weight"], source["rewind"]["layers.0.weight"])
    assert torch.equal(start["layers.0.bias"], source["rewind"]["layers.0.bias"])


def test_output_layer_can_be_re_pruned_to_the_source_density(tmp_path, ticket):
    assert main(transfer(tmp_path, ticket, "sparsity.options.output_layer=pruned", "optim.name=adam",
                         "optim.lr=0.01")) == EXIT_OK
    theirs = masks_from_state(load_checkpoint(ticket / "checkpoint.pt")["sparsifier"]["dynamic"])[OUT]
    ours = masks_from_state(load_checkpoint(only_run(tmp_path) / "checkpoint.pt")["sparsifier"]["dynamic"])[OUT]
    assert int(ours.sum()) == round(float(theirs.float().mean()) * ours.numel())


def test_reinit_restart_keeps_the_mask_but_not_the_init(tmp_path, ticket):
    assert main(transfer(tmp_path, ticket, "sparsity.options.restart=reinit")) == EXIT_OK
    start = load_checkpoint(only_run(tmp_path) / "checkpoint.pt")["sparsifier"]["rewind"]
    source = load_checkpoint(ticket / "checkpoint.pt")["sparsifier"]["rewind"]
    assert not torch.equal(start["layers.0.weight"], source["layers.0.weight"])


def test_random_mask_control_keeps_the_ticket_counts_per_layer_at_other_positions(tmp_path, ticket):
    control = ("sparsity.options.mask=random", "sparsity.options.restart=reinit")
    assert main(transfer(tmp_path, ticket, *control)) == EXIT_OK
    theirs = masks_from_state(load_checkpoint(ticket / "checkpoint.pt")["sparsifier"]["dynamic"])
    ours = masks_from_state(load_checkpoint(only_run(tmp_path) / "checkpoint.pt")["sparsifier"]["dynamic"])
    name = "layers.0.weight"
    assert int(ours[name].sum()) == int(theirs[name].sum()) and not torch.equal(ours[name], theirs[name])
    assert bool(ours[OUT].all())  # the output layer stays fresh and dense


def test_a_source_with_other_shapes_is_refused_in_a_subprocess_and_nothing_is_written(tmp_path, ticket):
    out = tmp_path / "runs"
    argv = [a for a in transfer(out, ticket) if not a.startswith("model_options")] + ["model_options.hidden=[8]"]
    proc = subprocess.run([sys.executable, "-m", "sparsetime", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == EXIT_USAGE and len(lines) == 1, proc.stderr
    assert "shapes differ outside the output layer (layers.0.weight is (16, 64) there but (8, 64) here" in lines[0]
    assert "allowed:" in lines[0] and (not out.exists() or not any(out.iterdir()))


@pytest.mark.parametrize("extra, match", [
    (["sparsity.options.source="], "source = None is invalid; allowed: the run directory"),
    (["sparsity.options.output_layer=sparse"], "output_layer = 'sparse' is invalid; allowed: dense, pruned"),
    (["sparsity.options.restart=late"], "restart = 'late' is invalid; allowed: rewind"),
    (["sparsity.options.perturb=noise"], "not options of method 'transfer'"),
    (["sparsity.options.mask=lucky"], "mask = 'lucky' is invalid; allowed: ticket, random"),
])
def test_bad_transfer_options_are_refused(tmp_path, capsys, ticket, extra, match):
    assert main(transfer(tmp_path / "runs", ticket, *extra)) == EXIT_USAGE
    assert match in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_source_that_is_no_finished_run_is_refused(tmp_path, capsys):
    assert main(transfer(tmp_path / "runs", tmp_path / "nowhere")) == EXIT_USAGE
    assert "is not a finished run directory" in capsys.readouterr().err
    assert not any((tmp_path / "runs").iterdir())


def test_source_may_be_the_folder_of_an_experiment_with_the_seed_filled_in(tmp_path, ticket):
    from sparsetime.train.transfer_method import source_directory

    folder = ticket.parent.parent  # output_dir of the `sparsetime lth` run: one experiment in it
    assert source_directory(str(folder), 0) == ticket and source_directory(str(ticket.parent), 0) == ticket
    template = str(tmp_path / "src-seed{seed}")
    folder.rename(tmp_path / "src-seed3")
    moved = tmp_path / "src-seed3" / ticket.parent.name / ticket.name
    assert source_directory(template, 3) == moved
    folder.parent.mkdir(exist_ok=True)
    (tmp_path / "src-seed3").rename(folder)  # leave the module's ticket where it was


def test_interrupted_transfer_with_frozen_pruned_weights_resumes_to_the_same_weights(tmp_path, ticket, monkeypatch):
    from sparsetime.cli import EXIT_INTERRUPTED
    from sparsetime.train import trainer as trainer_module

    extra = ("sparsity.options.pruned=frozen",)
    assert main(transfer(tmp_path / "ref", ticket, *extra)) == EXIT_OK
    original = trainer_module.Trainer._train_epoch

    def interrupt(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", interrupt)
    assert main(transfer(tmp_path / "cut", ticket, *extra)) == EXIT_INTERRUPTED
    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", original)
    assert main(transfer(tmp_path / "cut", ticket, *extra)) == EXIT_OK
    a, b = (load_checkpoint(only_run(tmp_path / d) / "checkpoint.pt")["model"] for d in ("cut", "ref"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = load_checkpoint(only_run(tmp_path / "cut") / "checkpoint.pt")["sparsifier"]
    masks = masks_from_state(start["dynamic"])
    m = masks["layers.0.weight"]
    assert torch.equal(a["layers.0.weight"][~m], start["rewind"]["layers.0.weight"][~m])
