"""Shared test fixtures: one suite runs on every backend and every OpenCL device.

``backend`` is parametrised over "numpy" and one ``opencl:P:D`` name per
working OpenCL device (every runtime present; ``CLCONV_TEST_DEVICES=default``
keeps only the device that ``"opencl"`` selects). Devices that do not work
are named, with the reason, in the run's header. With
``CLCONV_REQUIRE_OPENCL=1`` (set by ``.ci/run``) the run fails at collection
when no OpenCL device works, instead of quietly testing NumPy only.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import clconv
from clconv import testing

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
_TUNE_DIR = tempfile.mkdtemp(prefix="clconv-tune-")
atexit.register(shutil.rmtree, _TUNE_DIR, ignore_errors=True)
os.environ["CLCONV_TUNE_CACHE"] = os.path.join(_TUNE_DIR, "tune.json")


def opencl_backend_names() -> list[str]:
    """One backend name per working OpenCL device on this machine."""
    names = [d.backend for d in clconv.devices() if d.works]
    if names and os.environ.get("CLCONV_TEST_DEVICES") == "default":
        names = [clconv.get_backend("opencl").dctx.info.backend]
    if not names and os.environ.get("CLCONV_REQUIRE_OPENCL") == "1":
        found = "; ".join(f"{d.backend} {d.name!r} ({d.platform}): {d.problem}"
                          for d in clconv.devices()) or "none"
        raise pytest.UsageError(
            "CLCONV_REQUIRE_OPENCL=1 but no OpenCL device works (devices found: "
            f"{found}); reinstall with `pip install -e .[dev]` (PoCL and Intel's CPU "
            "runtime) or install a vendor driver")
    return names


def device_report() -> list[str]:
    """Which OpenCL devices the suite runs on, and why the others are left out."""
    lines = []
    for d in clconv.devices():
        status = ("tested" if d.backend in OPENCL_BACKENDS else "not tested" if d.works
                  else f"NOT TESTED, does not work: {d.problem}")
        lines.append(f"clconv OpenCL {d.backend}: {d.name} ({d.platform}, driver "
                     f"{d.driver_version}): {status}")
    return lines or ["clconv OpenCL: no device found"]


def pytest_report_header(config) -> list[str]:
    return device_report()


def pytest_terminal_summary(terminalreporter) -> None:
    """The device report again at the end (``-q`` runs show no header)."""
    terminalreporter.write_sep("-", "OpenCL devices")
    for line in device_report():
        terminalreporter.write_line(line)


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
    """clconv.testing.tolerance as keywords for ``np.testing.assert_allclose(**...)``.

    New tests call ``clconv.testing.assert_close``, whose failure message names
    the worst element; this form serves the files that still spread it.
    """
    rtol, atol = testing.tolerance(dtype, reduction)
    return {"rtol": rtol, "atol": atol}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
