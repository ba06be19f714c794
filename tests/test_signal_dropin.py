"""The NumPy / SciPy wrappers as drop-ins: SciPy's own test cases and NumPy's dtypes.

``TestConvolve2d`` and ``TestCorrelate2d`` re-express every case of the
classes of the same names in SciPy's ``scipy/signal/tests/test_signaltools.py``
(SciPy 1.17), with ``scipy.signal.convolve2d`` / ``correlate2d`` replaced by
clconv's, on every backend. Like SciPy's ``xp_assert_equal``, the checks
compare dtypes as well as values. SciPy's ``test_large_array`` (a 2**31-element
index, 2 GiB of int64) runs at a size that fits CI; the overflow it guards
against is a C-index problem SciPy had, not one of these code paths.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy import signal

import clconv

convolve2d = clconv.convolve2d
correlate2d = clconv.correlate2d


def assert_equal_typed(got, want) -> None:
    """Values and dtype equal (SciPy's xp_assert_equal)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_array_equal(got, want)


def assert_close_typed(got, want, rtol=None) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    eps = np.finfo(want.dtype).eps if want.dtype.kind in "fc" else 2.2e-16
    np.testing.assert_allclose(got, want, rtol=rtol or 64 * eps, atol=64 * eps)


class TestConvolve2d:
    def test_2d_arrays(self, backend):
        a = np.asarray([[1, 2, 3], [3, 4, 5]])
        b = np.asarray([[2, 3, 4], [4, 5, 6]])
        d = np.asarray([[2, 7, 16, 17, 12], [10, 30, 62, 58, 38], [12, 31, 58, 49, 30]])
        assert_equal_typed(convolve2d(a, b, backend=backend), d)

    def test_valid_mode(self, backend):
        e = np.asarray([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
        f = np.asarray([[1, 2, 3], [3, 4, 5]])
        h = np.asarray([[62, 80, 98, 116, 134]])
        assert_equal_typed(convolve2d(e, f, "valid", backend=backend), h)
        assert_equal_typed(convolve2d(f, e, "valid", backend=backend), h)  # gh-5897

    def test_valid_mode_complx(self, backend):
        e = np.asarray([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
        f = np.asarray([[1, 2, 3], [3, 4, 5]], dtype=np.complex128) + 1j
        h = np.asarray([[62. + 24.j, 80. + 30.j, 98. + 36.j, 116. + 42.j, 134. + 48.j]])
        assert_close_typed(convolve2d(e, f, "valid", backend=backend), h)
        assert_equal_typed(convolve2d(f, e, "valid", backend=backend), h)

    def test_fillvalue(self, backend):
        a = np.asarray([[1, 2, 3], [3, 4, 5]])
        b = np.asarray([[2, 3, 4], [4, 5, 6]])
        d = np.asarray([[24, 26, 31, 34, 32], [28, 40, 62, 64, 52], [32, 46, 67, 62, 48]])
        assert_equal_typed(convolve2d(a, b, "full", "fill", 1, backend=backend), d)

    @pytest.mark.filterwarnings("ignore:Casting complex values")
    def test_fillvalue_errors(self, backend):
        with pytest.raises(ValueError, match="could not cast `fillvalue` directly to the "
                                             "output "):
            convolve2d([[1]], [[1, 2]], fillvalue=1j, backend=backend)
        with pytest.raises(ValueError, match="`fillvalue` must be scalar or an array with "):
            convolve2d([[1]], [[1, 2]], fillvalue=[1, 2], backend=backend)

    def test_fillvalue_empty(self, backend):
        with pytest.raises(ValueError):
            convolve2d([[1]], [[1, 2]], fillvalue=[], backend=backend)

    def test_wrap_boundary(self, backend):
        a = np.asarray([[1, 2, 3], [3, 4, 5]])
        b = np.asarray([[2, 3, 4], [4, 5, 6]])
        d = np.asarray([[80, 80, 74, 80, 80], [68, 68, 62, 68, 68], [80, 80, 74, 80, 80]])
        assert_equal_typed(convolve2d(a, b, "full", "wrap", backend=backend), d)

    def test_sym_boundary(self, backend):
        a = np.asarray([[1, 2, 3], [3, 4, 5]])
        b = np.asarray([[2, 3, 4], [4, 5, 6]])
        d = np.asarray([[34, 30, 44, 62, 66], [52, 48, 62, 80, 84], [82, 78, 92, 110, 114]])
        assert_equal_typed(convolve2d(a, b, "full", "symm", backend=backend), d)

    @pytest.mark.parametrize("func", [convolve2d, correlate2d])
    @pytest.mark.parametrize("boundary, expected", [("symm", [[37.0, 42.0, 44.0, 45.0]]),
                                                    ("wrap", [[43.0, 44.0, 42.0, 39.0]])])
    def test_same_with_boundary(self, backend, func, boundary, expected):
        image = np.asarray([[2.0, -1.0, 3.0, 4.0]])
        kernel = np.ones((1, 21))
        result = func(image, kernel, mode="same", boundary=boundary, backend=backend)
        assert_equal_typed(result, np.asarray(expected))

    def test_boundary_extension_same(self, backend):
        a = np.arange(1, 10 * 3 + 1, dtype=np.float64).reshape(10, 3)
        b = np.arange(1, 10 * 10 + 1, dtype=np.float64).reshape(10, 10)
        c = convolve2d(a, b, mode="same", boundary="wrap", backend=backend)
        assert_equal_typed(c, ndi.convolve(a, b, mode="wrap", origin=(-1, -1)))

    def test_boundary_extension_full(self, backend):
        a = np.arange(1, 3 * 3 + 1, dtype=np.float64).reshape(3, 3)
        b = np.arange(1, 6 * 6 + 1, dtype=np.float64).reshape(6, 6)
        c = convolve2d(a, b, mode="full", boundary="wrap", backend=backend)
        apad = np.pad(a, ((3, 3), (3, 3)), "wrap")
        assert_equal_typed(c, ndi.convolve(apad, b, mode="wrap")[:-1, :-1])

    def test_invalid_shapes(self, backend):
        a = np.arange(1, 7).reshape((2, 3))
        b = np.arange(-6, 0).reshape((3, 2))
        with pytest.raises(ValueError):
            convolve2d(a, b, mode="valid", backend=backend)
        with pytest.raises(ValueError):
            convolve2d(b, a, mode="valid", backend=backend)

    def test_same_mode(self, backend):
        e = np.asarray([[1, 2, 3], [3, 4, 5]])
        f = np.asarray([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
        h = np.asarray([[22, 28, 34], [80, 98, 116]])
        assert_equal_typed(convolve2d(e, f, "same", backend=backend), h)

    def test_valid_mode2(self, backend):
        e = np.asarray([[1, 2, 3], [3, 4, 5]])
        f = np.asarray([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
        expected = np.asarray([[62, 80, 98, 116, 134]])
        assert_equal_typed(convolve2d(e, f, "valid", backend=backend), expected)
        assert_equal_typed(convolve2d(f, e, "valid", backend=backend), expected)
        e = np.asarray([[1 + 1j, 2 - 3j], [3 + 1j, 4 + 0j]])
        f = np.asarray([[2 - 1j, 3 + 2j, 4 + 0j], [4 - 0j, 5 + 1j, 6 - 3j]])
        expected = np.asarray([[27 - 1j, 46. + 2j]])
        assert_equal_typed(convolve2d(e, f, "valid", backend=backend), expected)
        assert_equal_typed(convolve2d(f, e, "valid", backend=backend), expected)

    def test_consistency_convolve_funcs(self, backend):
        a = np.arange(5)
        b = np.asarray([3.2, 1.4, 3])
        for mode in ["full", "valid", "same"]:
            assert_close_typed(clconv.convolve(a, b, mode=mode, backend=backend),
                               signal.convolve(a, b, mode=mode))
            assert_close_typed(np.squeeze(convolve2d(a[None, :], b[None, :], mode=mode,
                                                     backend=backend), axis=0),
                               signal.convolve(a, b, mode=mode))

    def test_invalid_dims(self, backend):
        for args in ((3, 4), ([3], [4]), ([[[3]]], [[[4]]])):
            with pytest.raises(ValueError):
                convolve2d(*args, backend=backend)

    def test_large_array(self, backend):
        n = 2**12  # SciPy: 2**31 // 8000 rows; the chequered pattern and check are the same
        a = np.zeros(1001 * n, dtype=np.int64)
        a[::2] = 1
        a = np.lib.stride_tricks.as_strided(a, shape=(n, 1000), strides=(8008, 8))
        count = convolve2d(a, [[1, 1]], backend=backend)
        assert count.dtype == np.int64
        assert np.where(count > 1)[0].size == 0


class TestCorrelate2d:
    def test_consistency_correlate_funcs(self, backend):
        a = np.arange(5)
        b = np.array([3.2, 1.4, 3])
        for mode in ["full", "valid", "same"]:
            np.testing.assert_almost_equal(
                np.squeeze(correlate2d([a], [b], mode=mode, backend=backend)),
                np.correlate(a, b, mode=mode))
            if mode == "valid":  # gh-5897
                np.testing.assert_almost_equal(
                    np.squeeze(correlate2d([b], [a], mode=mode, backend=backend)),
                    np.correlate(b, a, mode=mode))

    def test_consistency_correlate_funcs_2(self, backend):
        a = np.arange(5)
        b = np.array([3.2, 1.4, 3])
        for mode in ["full", "valid", "same"]:
            np.testing.assert_almost_equal(
                np.squeeze(correlate2d([a], [b], mode=mode, backend=backend)),
                signal.correlate(a, b, mode=mode))
            if mode == "valid":
                np.testing.assert_almost_equal(
                    np.squeeze(correlate2d([b], [a], mode=mode, backend=backend)),
                    signal.correlate(b, a, mode=mode))

    def test_invalid_shapes(self, backend):
        a = np.arange(1, 7).reshape((2, 3))
        b = np.arange(-6, 0).reshape((3, 2))
        with pytest.raises(ValueError):
            correlate2d(a, b, mode="valid", backend=backend)
        with pytest.raises(ValueError):
            correlate2d(b, a, mode="valid", backend=backend)

    def test_complex_input(self, backend):
        np.testing.assert_array_equal(correlate2d([[1]], [[2j]], backend=backend).ravel(),
                                      [-2j])
        np.testing.assert_array_equal(correlate2d([[2j]], [[3j]], backend=backend).ravel(),
                                      [6 + 0j])
        np.testing.assert_array_equal(correlate2d([[3j]], [[4]], backend=backend).ravel(),
                                      [12j])


# ---------------------------------------------------------------- every dtype pair

DTYPES = ["bool", "uint8", "int32", "int64", "float32", "float64", "complex64", "complex128"]


def sample(dtype: str, n: int, seed: int) -> np.ndarray:
    """Values that exercise the dtype: 0/1 bools, uint8 up to 255 (sums wrap around
    as NumPy's do), signed integers of both signs, and fractional floats."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.integers(0, 2, n).astype(bool)
    if dtype == "uint8":
        return rng.integers(0, 256, n).astype(np.uint8)
    if dtype.startswith("int"):
        return rng.integers(-1000, 1000, n).astype(dtype)
    values = rng.uniform(-4, 4, n)
    if dtype.startswith("complex"):
        values = values + 1j * rng.uniform(-4, 4, n)
    return values.astype(dtype)


@pytest.mark.parametrize("pair", list(itertools.product(DTYPES, DTYPES)),
                         ids=[f"{a}-{b}" for a, b in itertools.product(DTYPES, DTYPES)])
def test_convolve_dtype_pairs_match_numpy(backend, pair):
    a, v = sample(pair[0], 37, 1), sample(pair[1], 9, 2)
    got = clconv.convolve(a, v, backend=backend)
    want = np.convolve(a, v)
    assert got.dtype == want.dtype
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
    else:
        eps = np.finfo(want.dtype).eps
        np.testing.assert_allclose(got, want, rtol=16 * eps, atol=16 * eps * 9 * 16)


def test_an_int_with_a_float64_kernel_is_float64_precise(backend):
    """SciPy's rule, not 'the first argument decides': 15.2, not 15.200001."""
    a, k = np.array([[1, 2], [3, 4]]), np.array([[3.2, 1.0]])
    got = clconv.correlate2d(a, k, "valid", backend=backend)
    assert_close_typed(got, signal.correlate2d(a, k, "valid"), rtol=1e-15)
    assert abs(got[1, 0] - 13.6) < 1e-14


def test_integer_results_are_exact_up_to_2_53(backend):
    a = np.array([2**40, 3, -(2**41), 7], np.int64)
    v = np.array([1023, -1], np.int64)
    assert (clconv.convolve(a, v, backend=backend) == np.convolve(a, v)).all()
    small = np.arange(-50, 50, dtype=np.int16)
    assert_equal_typed(clconv.convolve(small, small[:7], backend=backend),
                       np.convolve(small, small[:7]))


def test_complex_is_computed_in_one_backend_call_per_fill(backend, monkeypatch):
    import clconv.signal as sig

    calls = []
    real_run_conv = sig.run_conv

    def counting(call, be=None):
        calls.append(call.spec)
        return real_run_conv(call, be)

    monkeypatch.setattr(sig, "run_conv", counting)
    a = sample("complex128", 20, 3).reshape(4, 5)
    k = sample("complex128", 6, 4).reshape(2, 3)
    assert_close_typed(clconv.convolve2d(a, k, backend=backend), signal.convolve2d(a, k))
    assert len(calls) == 1 and calls[0].batch == 2 and calls[0].out_channels == 2
    calls.clear()
    assert_close_typed(clconv.convolve2d(a, k, fillvalue=1 + 2j, backend=backend),
                       signal.convolve2d(a, k, fillvalue=1 + 2j))
    assert len(calls) == 2


@pytest.mark.filterwarnings("ignore:Casting complex values", "ignore:invalid value encountered")
@pytest.mark.parametrize("fillvalue,dtype,ok", [
    (1.5, np.int64, True), (300, np.uint8, False), (-1, np.uint8, False),
    (np.nan, np.int64, False), (np.nan, np.float32, True), (1j, np.float64, False),
    (2 + 0j, np.float32, False), (1j, np.complex64, True), (True, np.int64, True)])
def test_fillvalue_casting_follows_scipy(backend, fillvalue, dtype, ok):
    a = np.ones((2, 2), dtype)
    k = np.ones((1, 2), dtype)
    if ok:
        want = signal.convolve2d(a, k, fillvalue=fillvalue)
        got = clconv.convolve2d(a, k, fillvalue=fillvalue, backend=backend)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    else:
        with pytest.raises(ValueError, match="could not cast `fillvalue`"):
            signal.convolve2d(a, k, fillvalue=fillvalue)
        with pytest.raises(clconv.ArgumentError, match="could not cast `fillvalue`"):
            clconv.convolve2d(a, k, fillvalue=fillvalue, backend=backend)


def test_sums_beyond_2_53_wrap_as_numpys_integer_arithmetic(backend):
    """Past float64's exact range the wrappers use 64-bit integer arithmetic (found by the
    long fuzz profile: 2**40 * 2**40 must wrap to NumPy's 0, with no warning)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_equal_typed(clconv.convolve(2**40, 2**40, backend=backend),
                           np.convolve(2**40, 2**40))
        a = np.array([2**62, 3, -(2**61)], np.int64)
        assert_equal_typed(clconv.convolve(a, np.array([4, -1]), backend=backend),
                           np.convolve(a, np.array([4, -1])))
        u = np.array([2**63 - 1, 5], np.uint64)
        assert_equal_typed(clconv.convolve(u, np.array([3, 2], np.uint64), backend=backend),
                           np.convolve(u, np.array([3, 2], np.uint64)))
        img = np.full((3, 4), 2**40, np.int64)
        k = np.full((2, 2), 2**20, np.int64)
        for boundary in ("fill", "wrap", "symm"):
            assert_equal_typed(convolve2d(img, k, "same", boundary, backend=backend),
                               signal.convolve2d(img, k, "same", boundary))
            assert_equal_typed(correlate2d(img, k, "full", boundary, 7, backend=backend),
                               signal.correlate2d(img, k, "full", boundary, 7))
