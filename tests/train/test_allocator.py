"""retain_freed_memory: freed tensors are reused without page faults; SPARSETIME_ALLOCATOR switches it off."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from sparsetime.cli import main
from sparsetime.train import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
PAGES = 48 * 2**20 // 4096  # a 48 MiB tensor: above glibc's largest dynamic mmap threshold (32 MiB)

# allocate, touch and free a 48 MiB tensor 8 times; print the minor page faults of the last 5 (the heap
# settles in the first ones)
_PROBE = """
import resource, torch
from sparsetime.train import retain_freed_memory
print(retain_freed_memory())
def once():
    t = torch.empty(12 * 2**20)
    t.fill_(1.0)
    del t
for _ in range(3):
    once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    once()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(choice: str) -> tuple[str, int]:
    env = {**os.environ, allocator.ENV_VAR: choice}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True,
                         timeout=120).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_freed_blocks_are_reused_without_page_faults():
    applied, faults = _probe("retain")
    assert applied == "True"
    assert faults < PAGES // 10  # 5 * 12288 pages were touched; almost none faulted again
    applied, faults = _probe("system")
    assert applied == "False"
    assert faults >= 5 * PAGES * 9 // 10  # every use of a fresh mmap faults its pages in


def test_allocator_choice_names_a_bad_value(monkeypatch):
    monkeypatch.setenv(allocator.ENV_VAR, "jemalloc")
    with pytest.raises(ValueError, match=r"SPARSETIME_ALLOCATOR='jemalloc' is not one of retain, system"):
        allocator.allocator_choice()
    monkeypatch.setenv(allocator.ENV_VAR, " System ")
    assert allocator.allocator_choice() == "system"
    monkeypatch.delenv(allocator.ENV_VAR)
    assert allocator.allocator_choice() == "retain"


def test_cli_refuses_a_bad_allocator_before_writing_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(allocator.ENV_VAR, "tcmalloc")
    monkeypatch.setattr(allocator, "_applied", None)  # as in a fresh process
    args = ["train", "dataset=synthetic", "data.options.train_size=64", "data.options.test_size=32", "epochs=1",
            "model_options.hidden=[8]", f"output_dir={tmp_path}", "progress=none", "device=cpu"]
    assert main(args) == 2
    assert "SPARSETIME_ALLOCATOR='tcmalloc' is not one of retain, system" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
