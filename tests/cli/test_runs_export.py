"""``sparsetime runs``, ``sparsetime export``, ``--version`` and ``train --help``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from importlib import metadata

import pytest
import torch

import sparsetime
from sparsetime.cli import main
from sparsetime.models import available_models, build_model
from sparsetime.train import available_methods, load_checkpoint, load_config, resolve_config, run_directory
from sparsetime.train import valid_keys

pytest.importorskip("safetensors")


def tiny(out, *extra: str) -> list[str]:
    return ["dataset=synthetic", "data.options.train_size=128", "data.options.test_size=64",
            "model_options.hidden=[16]", "epochs=2", "batch_size=32", "sparsity.density=0.3",
            "sparsity.update_interval=3", f"output_dir={out}", "progress=none", "device=cpu", *extra]


def trained(out, *extra: str):
    assert main(["-q", "train", *tiny(out, *extra)]) == 0
    return run_directory(resolve_config(load_config(None, tiny(out, *extra))))


def model_of(run):
    config = load_config(run / "config.yaml")
    return build_model(config.model, (1, 8, 8), 4, **config.model_options)


def csr_dense(state, prefix, shape):
    """The dense weight of a sparse module's entries, through torch's own CSR tensor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        csr = torch.sparse_csr_tensor(state[prefix + "row_ptr"].long(), state[prefix + "col_idx"].long(),
                                      state[prefix + "weight_values"], (shape[0], shape[1]), check_invariants=True)
        return csr.to_dense()


@pytest.mark.parametrize("method", ["set", "gmp"])
def test_export_of_a_masked_run(tmp_path, method, capsys):
    from sparsetime.nn import load_sparse

    run = trained(tmp_path, f"sparsity.method={method}")
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    capsys.readouterr()
    assert main(["export", str(run), "--format", "dense"]) == 0
    assert f"wrote {run / 'model.pt'} (dense" in capsys.readouterr().out
    dense = torch.load(run / "model.pt", weights_only=True)
    assert list(dense) == list(checkpoint["model"])
    assert all(torch.equal(dense[k], v) for k, v in checkpoint["model"].items())

    out = tmp_path / "exported" / "m.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (sparse, {out.stat().st_size} bytes") and "2 sparse layers" in printed
    model = load_sparse(out, model_of(run))
    reference = model_of(run)
    reference.load_state_dict(dense)
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(model(x), reference(x))


def test_export_of_a_sparse_run_matches_torchs_csr(tmp_path):
    from sparsetime.nn import SparseLinear, load_sparse

    run = trained(tmp_path, "sparsity.execution=sparse")
    state = load_checkpoint(run / "checkpoint.pt")["model"]
    assert "layers.0.weight_values" in state
    assert main(["-q", "export", str(run), "--format", "dense"]) == 0
    assert main(["-q", "export", str(run), "--format", "sparse"]) == 0
    dense = torch.load(run / "model.pt", weights_only=True)
    expected = {"layers.0.weight": csr_dense(state, "layers.0.", (16, 64)),
                "layers.1.weight": csr_dense(state, "layers.1.", (4, 16))}
    for name, weight in expected.items():
        assert torch.equal(dense[name], weight)
    read = load_sparse(run / "model.safetensors")
    assert set(read) == set(dense) and all(torch.equal(read[k], dense[k]) for k in dense)
    sparse = load_sparse(run / "model.safetensors", model_of(run), sparse=True)
    assert isinstance(sparse.layers[0], SparseLinear)
    assert torch.equal(sparse.layers[0].col_idx, state["layers.0.col_idx"])


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("sparsetime: error: ")
    run = trained(tmp_path)
    (run / "checkpoint.pt").unlink()
    assert main(["export", str(run)]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(run), "--format", "onnx"])
    assert "invalid choice: 'onnx'" in capsys.readouterr().err


def test_runs_lists_every_run_directory(tmp_path, capsys):
    finished = trained(tmp_path / "out")
    stopped = finished.with_name("stopped-run")
    shutil.copytree(finished, stopped)
    (stopped / "summary.json").unlink()
    first = (stopped / "metrics.jsonl").read_text().splitlines()[0]
    (stopped / "metrics.jsonl").write_text(first + "\n")
    fresh = tmp_path / "out" / "sweeps" / "grid" / "new-run"
    fresh.mkdir(parents=True)
    shutil.copy(finished / "config.yaml", fresh / "config.yaml")
    broken = finished.with_name("broken-run")
    shutil.copytree(finished, broken)
    (broken / "summary.json").write_text("{}")
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "method", "dataset", "model", "density", "status", "test", "acc", "Rs",
                                "epochs"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert len(rows) == 4
    summary = json.loads((finished / "summary.json").read_text())
    assert rows[finished.name] == [finished.name, "set", "synthetic", "mlp", f"{summary['density']:.4f}", "finished",
                                   f"{100 * summary['test_accuracy']:.2f}", f"{summary['itop_rate']:.4f}", "2/2"]
    record = json.loads(first)
    assert rows["stopped-run"][5:] == ["stopped", f"{100 * record['test_accuracy']:.2f}", f"{record['itop_rate']:.4f}",
                                       "1/2"]
    assert rows["sweeps/grid/new-run"][4:] == ["0.3000", "new", "-", "-", "0/2"]
    assert rows["broken-run"][5:7] == ["unreadable", "summary.json"]
    assert main(["runs", str(tmp_path / "nothing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_version_and_train_help_in_a_subprocess():
    version = subprocess.run([sys.executable, "-m", "sparsetime", "--version"], capture_output=True, text=True,
                             timeout=120)
    assert version.returncode == 0
    assert version.stdout.startswith(f"sparsetime {sparsetime.__version__} (torch {torch.__version__}")
    assert metadata.version("sparsetime") == sparsetime.__version__
    helped = subprocess.run([sys.executable, "-m", "sparsetime", "train", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0
    listed = {line.split()[0] for line in helped.stdout.splitlines() if line.startswith("  ") and " = " in line}
    assert listed == set(valid_keys())
    assert "  sparsity.density           = 0.02" in helped.stdout
    for method in available_methods():
        assert f"\n  {method} " in helped.stdout
    assert f"models (model): {', '.join(available_models())}" in helped.stdout
