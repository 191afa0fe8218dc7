"""Shared test settings: deterministic, few threads (CI machines have 2 cores), and fixtures."""
import os
import sys

import pytest
import torch

from sparsetime.kernels import numba_available

torch.set_num_threads(2)
sys.path.insert(0, os.path.dirname(__file__))  # tests/data_files.py: dataset files in the real formats


@pytest.fixture
def one_thread():
    """Tiny layers: a second thread only adds synchronisation cost on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["torch", "numba"])
def backend(request):
    """Run a sparse-kernel test on both backends (numba skipped when it is not installed)."""
    if request.param == "numba" and not numba_available():
        pytest.skip("numba not installed")
    return request.param
