"""`sparsity.method=supermask`: a mask trained on frozen random weights, through the runner."""
from __future__ import annotations

import json

import pytest
import torch

from sparsetime.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from sparsetime.train import RunDir, Trainer, load_checkpoint, load_config, resolve_config
from sparsetime.train import trainer as trainer_module

TINY = ["dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64", "model_options.hidden=[16]",
        "epochs=2", "batch_size=32", "sparsity.method=supermask", "sparsity.density=0.5", "progress=none", "device=cpu"]


@pytest.mark.parametrize("algorithm", ["edge_popup", "bernoulli"])
def test_weights_are_unchanged_bit_for_bit_and_the_scores_train(tmp_path, algorithm):
    config = resolve_config(load_config(None, [*TINY, f"sparsity.options.algorithm={algorithm}",
                                               f"output_dir={tmp_path}"]))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    trainer = Trainer(config, run)
    state = trainer.model.state_dict()
    originals = {k: v.clone() for k, v in state.items() if not k.endswith("scores")}
    scores = {k: v.clone() for k, v in state.items() if k.endswith("scores")}
    summary = trainer.fit()
    after = trainer.model.state_dict()
    assert len(scores) == 2 and all(torch.equal(after[k], v) for k, v in originals.items())
    assert any(not torch.equal(after[k], v) for k, v in scores.items())
    assert summary["density"] == 0.5 and summary["inference_flops"] == pytest.approx(0.5 * summary[
        "dense_inference_flops"])
    f_s, f_d = summary["inference_flops"], summary["dense_inference_flops"]
    assert summary["train_flops"] == pytest.approx((2 * f_s + f_d) * 128 * 2)


def test_interrupted_supermask_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    assert main(["-q", "train", *TINY, f"output_dir={tmp_path / 'ref'}"]) == EXIT_OK
    original = trainer_module.Trainer._train_epoch

    def interrupt(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", interrupt)
    out = tmp_path / "cut"
    assert main(["-q", "train", *TINY, f"output_dir={out}"]) == EXIT_INTERRUPTED
    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", original)
    assert main(["-q", "train", *TINY, f"output_dir={out}"]) == EXIT_OK
    (a,), (b,) = list(out.iterdir()), list((tmp_path / "ref").iterdir())
    assert json.loads((a / "summary.json").read_text())["test_accuracy"] == \
        json.loads((b / "summary.json").read_text())["test_accuracy"]
    ma, mb = load_checkpoint(a / "checkpoint.pt")["model"], load_checkpoint(b / "checkpoint.pt")["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_unknown_algorithm_and_option_are_refused(tmp_path, capsys):
    assert main(["-q", "train", *TINY, "sparsity.options.algorithm=popup", f"output_dir={tmp_path}"]) == EXIT_USAGE
    assert "sparsity.options.algorithm = 'popup' is invalid; allowed: edge_popup, bernoulli" in capsys.readouterr().err
    assert main(["-q", "train", *TINY, "sparsity.options.rate=1", f"output_dir={tmp_path}"]) == EXIT_USAGE
    assert "allowed: algorithm" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
