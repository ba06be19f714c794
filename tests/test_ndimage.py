"""clconv.ndimage against scipy.ndimage itself, on every backend and device.

Every mode (and grid-* alias), origins, odd and even kernels, kernels larger
than the input, integer dtypes (each separable pass written into the output
dtype, as SciPy does), non-contiguous inputs, ``output=`` arrays and dtypes,
inputs never modified, and bad arguments whose classes are both clconv's and
SciPy's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

import clconv
from clconv import ndimage as cnd

MODES = ["reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant",
         "grid-wrap"]


def check(got, want, kind=None):
    got, want = np.asarray(got.get() if hasattr(got, "get") and not isinstance(
        got, np.ndarray) else got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind in "biu":   # within 1: float32 sums may round across an integer
        assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max(initial=0) <= 1
    else:
        scale = max(1.0, float(np.abs(want).max(initial=0)))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * scale)


@pytest.fixture
def img():
    return np.random.default_rng(0).random((13, 17)).astype(np.float32)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,origin", [((3, 3), 0), ((3, 4), (0, -1)), ((2, 2), -1),
                                          ((5, 1), (2, 0)), ((1, 4), (0, 1))])
def test_correlate_and_convolve_match_scipy(backend, img, mode, shape, origin):
    k = np.random.default_rng(1).random(shape)
    before = img.copy()
    for name in ("correlate", "convolve"):
        try:
            want = getattr(ndi, name)(img, k, mode=mode, cval=0.7, origin=origin)
        except ValueError:
            with pytest.raises(ValueError):
                getattr(cnd, name)(img, k, mode=mode, cval=0.7, origin=origin, backend=backend)
            continue
        check(getattr(cnd, name)(img, k, mode=mode, cval=0.7, origin=origin, backend=backend),
              want)
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest", "mirror", "wrap"])
def test_a_kernel_larger_than_the_input(backend, mode):
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    k = np.random.default_rng(2).random((5, 7))
    check(cnd.correlate(x, k, mode=mode, backend=backend), ndi.correlate(x, k, mode=mode))


@pytest.mark.parametrize("mode", MODES[:5])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_one_dimensional_filters(backend, mode, axis):
    x = np.random.default_rng(3).random((6, 9, 4))
    for weights, origin in (([1, 2, 3], 0), ([1, 2, 3, 4], 1), ([2, -1], -1), ([5], 0)):
        check(cnd.correlate1d(x, weights, axis, mode=mode, origin=origin, cval=2.0,
                              backend=backend),
              ndi.correlate1d(x, weights, axis, mode=mode, origin=origin, cval=2.0))
        check(cnd.convolve1d(x, weights, axis, mode=mode, origin=origin, cval=2.0,
                             backend=backend),
              ndi.convolve1d(x, weights, axis, mode=mode, origin=origin, cval=2.0))


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "int16", "uint16"])
def test_separable_filters_match_scipy(backend, dtype):
    rng = np.random.default_rng(4)
    x = (rng.random((11, 14, 5)) * 200).astype(dtype)
    cases = [
        (lambda m, a: m.gaussian_filter(x, 1.5, **a), {}),
        (lambda m, a: m.gaussian_filter(x, (1, 2, 0), order=(0, 1, 0), **a), {}),
        (lambda m, a: m.gaussian_filter(x, 1.0, order=2, truncate=2.0, **a), {}),
        (lambda m, a: m.gaussian_filter(x, 2.0, radius=3, mode="nearest", **a), {}),
        (lambda m, a: m.uniform_filter(x, (3, 4, 1), mode=["reflect", "wrap", "mirror"], **a),
         {}),
        (lambda m, a: m.uniform_filter(x, 5, origin=1, **a), {}),
        (lambda m, a: m.sobel(x, 0, **a), {}),
        (lambda m, a: m.sobel(x, -1, mode="constant", cval=3, **a), {}),
        (lambda m, a: m.prewitt(x, 1, **a), {}),
        (lambda m, a: m.laplace(x, **a), {}),
    ]
    for call, _ in cases:
        check(call(cnd, {"backend": backend}), call(ndi, {}))


def test_axes_output_dtype_and_output_array(backend, img):
    vol = np.random.default_rng(5).random((4, 6, 8))
    k = np.ones((3, 2))
    check(cnd.correlate(vol, k, axes=(0, 2), backend=backend), ndi.correlate(vol, k,
                                                                             axes=(0, 2)))
    check(cnd.gaussian_filter(vol, 1.0, axes=(1,), backend=backend),
          ndi.gaussian_filter(vol, 1.0, axes=(1,)))
    check(cnd.laplace(vol, axes=(0, 1), backend=backend), ndi.laplace(vol, axes=(0, 1)))
    check(cnd.sobel(img, output=np.float64, backend=backend), ndi.sobel(img, output=np.float64))
    out = np.empty(img.shape, np.int32)
    got = cnd.uniform_filter(img * 100, 3, output=out, backend=backend)
    assert got is out
    check(out, ndi.uniform_filter(img * 100, 3, output=np.int32))


def test_non_contiguous_and_list_inputs(backend):
    base = np.random.default_rng(6).random((20, 30))
    view = base[::-2, 1::3]
    check(cnd.correlate(view, np.ones((3, 3)), backend=backend),
          ndi.correlate(view, np.ones((3, 3))))
    check(cnd.gaussian_filter(view.T, 1.0, backend=backend), ndi.gaussian_filter(view.T, 1.0))
    check(cnd.correlate1d([1.0, 2.0, 4.0, 8.0], [1, 1], backend=backend),
          ndi.correlate1d([1.0, 2.0, 4.0, 8.0], [1, 1]))


def test_device_arrays_give_device_arrays(cl_backend, img):
    xd = clconv.to_device(img, backend=cl_backend)
    for got, want in (
        (cnd.gaussian_filter(xd, 1.2, backend=cl_backend), ndi.gaussian_filter(img, 1.2)),
        (cnd.correlate(xd, np.ones((3, 3)), backend=cl_backend),
         ndi.correlate(img, np.ones((3, 3)))),
        (cnd.sobel(xd, 0, backend=cl_backend), ndi.sobel(img, 0)),
        (cnd.laplace(xd, backend=cl_backend), ndi.laplace(img)),
    ):
        assert type(got).__module__.startswith("pyopencl")
        check(got, want)


def test_separable_passes_chain_on_the_device(cl_backend, img, monkeypatch):
    """A host float input is uploaded once; every pass is a device-array convolution."""
    import clconv.ndimage as module

    seen = []
    real = module.run_conv

    def spy(call, be=None):
        seen.append(type(call.x).__module__.split(".")[0])
        return real(call, be)

    monkeypatch.setattr(module, "run_conv", spy)
    check(cnd.gaussian_filter(img, 1.5, backend=cl_backend), ndi.gaussian_filter(img, 1.5))
    assert seen == ["pyopencl", "pyopencl"]


@pytest.mark.parametrize("shape", [(7, 30), (3, 5, 40)])
def test_every_pass_runs_along_a_long_last_axis(backend, shape, monkeypatch):
    """Each 1-D pass is a convolution whose last spatial axis is the array's long
    trailing extent: along the last axis a 1 x K kernel over the row, along any
    other a K x 1 kernel over the plane (never a width-1 image, which the
    kernels' vectors along the last axis would waste)."""
    import clconv.ndimage as module

    seen = []
    real = module.run_conv

    def spy(call, be=None):
        seen.append((call.spec.in_size, call.spec.kernel_size))
        return real(call, be)

    monkeypatch.setattr(module, "run_conv", spy)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    check(cnd.gaussian_filter(x, 1.0, backend=backend), ndi.gaussian_filter(x, 1.0))
    taps = 9  # radius 4 at sigma 1
    expect = [((shape[0], math.prod(shape[1:])), (taps, 1))]
    if len(shape) == 3:
        expect.append(((shape[1], shape[2]), (taps, 1)))
    expect.append(((1, shape[-1]), (1, taps)))
    assert seen == expect


@pytest.mark.parametrize("call,scipy_class", [
    (lambda m, b: m.correlate(np.ones((4, 4)), np.ones((3, 3)), mode="bogus", **b),
     RuntimeError),
    (lambda m, b: m.correlate(np.ones((4, 4)), np.ones(3), **b), RuntimeError),
    (lambda m, b: m.correlate(np.ones((4, 4)), np.ones((3, 3)), output=np.empty((3, 3)), **b),
     RuntimeError),
    (lambda m, b: m.correlate(np.ones((4, 4)), np.ones((3, 3)), origin=[1, 1, 1], **b),
     RuntimeError),
    (lambda m, b: m.correlate1d(np.ones(5), [1, 1, 1], origin=2, **b), ValueError),
    (lambda m, b: m.uniform_filter(np.ones((4, 4)), (3, 3, 3), **b), RuntimeError),
    (lambda m, b: m.gaussian_filter(np.ones((4, 4)), 1.0, mode=["reflect"], **b),
     RuntimeError),
])
def test_bad_arguments_are_clconv_and_scipy_classes(backend, call, scipy_class):
    with pytest.raises(scipy_class):
        call(ndi, {})
    with pytest.raises(scipy_class) as info:
        call(cnd, {"backend": backend})
    assert isinstance(info.value, clconv.ClconvError) and str(info.value)


def test_deliberate_differences(backend):
    with pytest.raises(clconv.DTypeError, match="complex"):
        cnd.correlate(np.ones((3, 3), complex), np.ones((2, 2)), backend=backend)
    with pytest.raises(clconv.ArgumentError, match="sigma=-1"):
        cnd.gaussian_filter(np.ones((5, 5)), -1, backend=backend)
    half = np.random.default_rng(7).random((8, 9)).astype(np.float16)
    got = cnd.gaussian_filter(half, 1.0, backend=backend)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, ndi.gaussian_filter(half.astype(np.float32), 1.0),
                               rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("mode", ["reflect", "wrap", "nearest", "mirror", "constant"])
def test_dask_arrays_give_lazy_results_equal_to_one_piece(backend, mode):
    import dask.array as da
    x = np.random.default_rng(8).random((20, 30)).astype(np.float32)
    d = da.from_array(x, chunks=(7, 11))
    cases = [
        (lambda m, a: m.gaussian_filter(a, 1.5, mode=mode, **{}), {}),
        (lambda m, a: m.correlate(a, np.ones((3, 4)), mode=mode, origin=(1, -1)), {}),
        (lambda m, a: m.convolve(a, np.arange(6.0).reshape(2, 3), mode=mode), {}),
        (lambda m, a: m.sobel(a, 0, mode=mode), {}),
        (lambda m, a: m.laplace(a, mode=mode), {}),
        (lambda m, a: m.uniform_filter(a, 5, mode=mode, origin=1), {}),
    ]
    for call, _ in cases:
        lazy = call(_Bound(cnd, backend), d)
        assert type(lazy).__module__.startswith("dask")
        check(lazy.compute(), call(ndi, x))
    with pytest.raises(clconv.ArgumentError, match="input is a dask array"):
        cnd.sobel(d, output=np.empty(x.shape), backend=backend)


class _Bound:
    """clconv.ndimage with ``backend=`` filled in (so one lambda serves SciPy too)."""

    def __init__(self, module, backend):
        self.module, self.backend = module, backend

    def __getattr__(self, name):
        fn = getattr(self.module, name)
        return lambda *args, **kwargs: fn(*args, backend=self.backend, **kwargs)
