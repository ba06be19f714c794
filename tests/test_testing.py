"""clconv.testing: the one tolerance rule, its failure messages and the float64 oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

import clconv
from clconv._normalize import normalize_conv
from clconv.testing import (
    EPS,
    assert_close,
    compare,
    conv_reduction,
    host_array,
    oracle,
    tolerance,
)


@pytest.mark.parametrize(("dtype", "eps"), [(np.float16, 1e-3), ("float32", 1.2e-7),
                                            (np.dtype(np.float64), 2.3e-16)])
@pytest.mark.parametrize("reduction", [0, 1, 27, 4096])
def test_tolerance_formula(dtype, eps, reduction):
    k = max(reduction, 1)
    rtol, atol = tolerance(dtype, reduction)
    assert rtol == pytest.approx(8 * eps * math.sqrt(k) + eps, rel=1e-15)
    assert atol == pytest.approx(8 * eps * k, rel=1e-15)
    assert EPS[np.dtype(dtype).name] == eps


def test_tolerance_refuses_non_float_results():
    with pytest.raises(ValueError, match="int32"):
        tolerance(np.int32, 9)


def test_close_results_pass_and_report_their_error():
    want = np.linspace(-3, 3, 24).reshape(2, 3, 4)
    got = (want + 1e-7).astype(np.float32)
    err = assert_close(got, want, dtype=np.float32, reduction=27)
    assert err == pytest.approx(np.abs(got.astype(np.float64) - want).max())


def test_failure_says_where_and_by_how_much():
    want = np.zeros((2, 3))
    got = np.zeros((2, 3), np.float32)
    got[1, 2] = 0.5
    got[0, 1] = 1e-3
    with pytest.raises(AssertionError) as info:
        assert_close(got, want, dtype=np.float32, reduction=9, where="conv2d-case-7")
    message = str(info.value)
    assert message.startswith("conv2d-case-7: 2 of 6 values beyond tolerance")
    assert "worst at (1, 2)" in message and "got 0.5, want 0.0" in message
    assert "|error| 0.5 > allowed" in message and "K=9" in message


def test_the_bound_is_tight():
    """Just inside passes, just outside fails: the rule is the documented one."""
    rtol, atol = tolerance(np.float64, 100)
    want = np.array([1.0, -2.0, 0.0])
    inside = want + 0.99 * (atol + rtol * np.abs(want))
    outside = want + 1.01 * (atol + rtol * np.abs(want))
    assert compare(inside, want, dtype=np.float64, reduction=100).ok
    found = compare(outside, want, dtype=np.float64, reduction=100)
    assert not found.ok and found.bad == 3 and found.size == 3


def test_scale_multiplies_atol():
    want = np.array([0.0])
    got = np.array([1e-4], np.float32)
    assert not compare(got, want, dtype=np.float32, reduction=9).ok
    assert compare(got, want, dtype=np.float32, reduction=9, scale=255.0).ok


def test_shape_dtype_nan_and_inf():
    want = np.array([1.0, np.nan, np.inf])
    assert compare(want.astype(np.float32), want, dtype=np.float32, reduction=1).ok
    assert "shape (2,), expected (3,)" in compare(want[:2], want, dtype=np.float64,
                                                  reduction=1).problem
    assert "dtype float64, expected float32" in compare(want, want, dtype=np.float32,
                                                        reduction=1).problem
    assert compare(want, want, dtype=np.float32, reduction=1, check_dtype=False).ok
    moved = np.array([np.nan, 1.0, np.inf])
    assert "NaN positions differ" in compare(moved, want, dtype=np.float64,
                                             reduction=1).problem
    # An infinity is never "close" to a finite value, however large the allowance.
    finite = np.array([1.0, np.nan, 1e300])
    found = compare(finite, want, dtype=np.float64, reduction=1)
    assert found.bad == 1 and "worst at (2,)" in found.problem
    assert not compare(-want, want, dtype=np.float64, reduction=1).ok


def test_host_array_reads_device_style_arrays():
    class Device:
        shape = (3,)

        def get(self):
            return np.arange(3)

    np.testing.assert_array_equal(host_array(Device()), [0, 1, 2])
    assert host_array([1, 2]).tolist() == [1, 2]
    assert host_array({"get": 1}).dtype == object   # a mapping is not a device array


def test_host_array_reads_opencl_arrays(cl_backend):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(host_array(clconv.to_device(x, backend=cl_backend)), x)


def test_oracle_is_the_numpy_backend_in_float64(rng):
    x = rng.standard_normal((1, 2, 6, 5)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    want = oracle(clconv.conv2d, x, w, None, padding=1, padding_mode="reflect")
    assert want.dtype == np.float64
    direct = clconv.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1,
                           padding_mode="reflect", backend="numpy")
    np.testing.assert_array_equal(want, direct)
    # round_to: the reference sees the values the backend under test computed with.
    x32 = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    rounded = oracle(clconv.conv2d, x32, w, round_to=np.float16)
    half = [a.astype(np.float16).astype(np.float64) for a in (x32, w)]
    np.testing.assert_array_equal(rounded, clconv.conv2d(*half, backend="numpy"))
    assert not np.array_equal(rounded, oracle(clconv.conv2d, x32, w))


def test_conv_reduction_of_a_spec():
    x = np.zeros((1, 6, 8, 8), np.float32)
    w = np.zeros((6, 2, 3, 5), np.float32)
    spec = normalize_conv(2, x, w, None, 1, 0, 1, 3, "zeros", "channels_first", False).spec
    assert conv_reduction(spec) == 2 * 3 * 5
