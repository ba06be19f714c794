"""Shared test fixtures: one suite runs on every backend and every OpenCL device.

``backend`` is parametrised over "numpy" and one ``opencl:P:D`` name per
OpenCL device found. With ``CLCONV_REQUIRE_OPENCL=1`` (set by ``.ci/run``)
the run fails at collection when no OpenCL device is found, instead of
quietly testing NumPy only.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import clconv

settings.register_profile(
    "ci", max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile(
    "long", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Winners a developer stored with `clconv tune` must not change which path the suite
# exercises: the tests see an empty tune cache of their own (tests/test_tune.py sets
# its own files).
os.environ["CLCONV_TUNE_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="clconv-tune-"),
                                               "tune.json")


@pytest.fixture(autouse=True)
def _fresh_launch_plans():
    """Every test plans its OpenCL launches afresh: some patch a path's thresholds
    or helpers, which memoised plans (keyed on the problem) would not notice."""
    from clconv.backends.opencl.launch import forget_plans

    forget_plans()
    yield


def opencl_backend_names() -> list[str]:
    """One backend name per OpenCL device on this machine."""
    names = [d.backend for d in clconv.devices()]
    if not names and os.environ.get("CLCONV_REQUIRE_OPENCL") == "1":
        raise pytest.UsageError(
            "CLCONV_REQUIRE_OPENCL=1 but no OpenCL device was found: install "
            "pocl-binary-distribution or a vendor driver")
    return names


BACKENDS = ["numpy", *opencl_backend_names()]
OPENCL_BACKENDS = BACKENDS[1:]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The name of every backend under test, NumPy included."""
    return request.param


# Without any OpenCL device the list is empty and pytest reports the tests that
# use it as not run; CI sets CLCONV_REQUIRE_OPENCL=1, which fails instead.
@pytest.fixture(params=OPENCL_BACKENDS)
def cl_backend(request) -> str:
    """The name of every OpenCL device under test."""
    return request.param


def tolerance(dtype, reduction: int) -> dict:
    """rtol/atol for comparing against the float64 oracle, scaled by the reduction size."""
    eps = {np.float16: 1e-3, np.float32: 1.2e-7, np.float64: 2.3e-16}[np.dtype(dtype).type]
    scale = max(reduction, 1)
    return {"rtol": 8 * eps * np.sqrt(scale) + eps, "atol": 8 * eps * scale}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
