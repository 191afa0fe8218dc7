"""Fixtures for the sparse-kernel tests: run each product test on both backends."""
import pytest
import torch

from sparsetime.kernels import numba_available


@pytest.fixture(params=["torch", "numba"])
def backend(request):
    if request.param == "numba" and not numba_available():
        pytest.skip("numba not installed")
    return request.param


@pytest.fixture
def one_thread():
    """Tiny layers: a second thread only adds synchronisation cost on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
