"""Fixtures for the sparse-kernel tests: run each product test on both backends."""
import pytest

from sparsetime.kernels import numba_available


@pytest.fixture(params=["torch", "numba"])
def backend(request):
    if request.param == "numba" and not numba_available():
        pytest.skip("numba not installed")
    return request.param
