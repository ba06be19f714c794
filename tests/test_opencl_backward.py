"""OpenCL backward kernels (kernels_cl/conv_backward.cl): what only the device path has.

Device arrays in and out, bit-identical repeated gradients (also for
reductions split into many blocks), padding wider than the input in every
border mode, GPU-sized limits, float16, blockings with tails, and proof that
the host NumPy stop-gap is no longer used. Values are compared with the NumPy
backend in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import clconv
from clconv.backends import numpy_backward
from clconv.testing import assert_close, oracle

CONV = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}
MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]


def operands(rng, shape, wshape, dtype=np.float32, **kw):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    y = CONV[len(wshape) - 2](x, w, backend="numpy", **kw)
    gy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, gy


def assert_grads_close(got, ref, w, gy, dtype=np.float32):
    """The three gradients against the float64 oracle, each with its own reduction size."""
    filters = w.shape[0]
    taps = math.prod(w.shape[1:])
    positions = gy.size // max(filters, 1)
    for name, g, r, reduction in zip(("grad_input", "grad_weight", "grad_bias"), got, ref,
                                     (filters * taps, positions, positions)):
        assert_close(g, r, dtype=dtype, reduction=4 * reduction, where=name)


@pytest.fixture
def forbid_host_backward(monkeypatch):
    """Call it to make every NumPy backward call fail (the OpenCL path must not use it)."""
    from clconv.backends.numpy_ import NumpyBackend

    def fail(*args, **kwargs):
        raise AssertionError("the OpenCL backend called the NumPy backward")

    def forbid() -> None:
        monkeypatch.setattr(NumpyBackend, "conv_backward", fail)
        monkeypatch.setattr(numpy_backward, "backward_host", fail)
        monkeypatch.setattr(numpy_backward, "conv_backward", fail)

    return forbid


def test_stop_gap_is_gone(cl_backend, rng, forbid_host_backward):
    forbid_host_backward()
    x, w, gy = operands(rng, (2, 4, 7, 6), (6, 2, 3, 3), padding=2, padding_mode="reflect",
                        groups=2)
    got = clconv.conv_backward(x, w, gy, padding=2, padding_mode="reflect", groups=2,
                               backend=cl_backend)
    assert all(isinstance(g, np.ndarray) for g in got)
    with pytest.raises(AssertionError, match="NumPy backward"):
        clconv.conv_backward(x, w, gy, padding=2, padding_mode="reflect", groups=2,
                             backend="numpy")


def test_device_arrays_in_and_out(cl_backend, rng, forbid_host_backward):
    kw = dict(padding=1, padding_mode="replicate", stride=(2, 1), flip=True)
    x, w, gy = operands(rng, (3, 5, 9, 8), (7, 5, 3, 2), **kw)
    ref = oracle(clconv.conv_backward, x, w, gy, **kw)
    forbid_host_backward()
    queue = clconv.get_backend(cl_backend).queue
    host_w = clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
    dev = [clconv.to_device(a, backend=cl_backend) for a in (x, w, gy)]
    got = clconv.conv_backward(*dev, backend=cl_backend, **kw)
    for g, h in zip(got, host_w):
        assert hasattr(g, "queue") and g.queue == queue
        # a device weight is packed on the device, a host weight by NumPy: same bits
        assert np.array_equal(g.get(), h)
    assert_grads_close(got, ref, w, gy)


def test_device_views_and_other_dtypes(cl_backend, rng):
    """Strided device views, uint8 input and a float64 weight on the device."""
    import pyopencl.array as cla

    queue = clconv.get_backend(cl_backend).queue
    big = rng.integers(0, 5, (2, 3, 12, 10)).astype(np.uint8)
    w = rng.standard_normal((4, 3, 3, 3))
    x_view = cla.to_device(queue, big)[:, :, 2:11, 1:9]
    x = big[:, :, 2:11, 1:9].astype(np.float32)
    kw = dict(padding=2, padding_mode="symmetric")
    gy = rng.standard_normal(CONV[2](x, w.astype(np.float32), backend="numpy", **kw).shape)
    gy = gy.astype(np.float32)
    got = clconv.conv_backward(x_view, cla.to_device(queue, w),
                               cla.to_device(queue, gy), backend=cl_backend, **kw)
    assert_grads_close(got, oracle(clconv.conv_backward, x, w, gy, **kw), w, gy)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_padding_wider_than_input(cl_backend, rng, mode, ndim):
    size = ((3,), (3, 2), (2, 3, 2))[ndim - 1]
    kernel = ((4,), (3, 2), (2, 2, 3))[ndim - 1]
    pads = (((7, 9),), ((5, 2), (1, 8)), ((4, 1), 3, (0, 6)))[ndim - 1]
    kw = dict(padding=pads, padding_mode=mode, stride=(2, 1, 3)[:ndim],
              dilation=(1, 2, 1)[:ndim])
    x, w, gy = operands(rng, (2, 2, *size), (3, 2, *kernel), **kw)
    got = clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
    assert_grads_close(got, oracle(clconv.conv_backward, x, w, gy, **kw), w, gy)


@pytest.mark.parametrize("case", [
    dict(shape=(2, 3, 20), wshape=(5, 3, 7), padding=3, padding_mode="circular"),
    dict(shape=(2, 6, 9, 11), wshape=(12, 1, 3, 9), groups=6, padding=(1, 4),
         padding_mode="reflect", flip=True),
    dict(shape=(1, 22, 6, 7), wshape=(20, 22, 2, 5), padding="same", dilation=(2, 1)),
    dict(shape=(2, 10, 7), wshape=(10, 1, 3), groups=10, padding=1, data_format="channels_last"),
    dict(shape=(1, 3, 4, 5, 6), wshape=(17, 3, 2, 3, 5), stride=(1, 2, 2), padding=2,
         padding_mode="symmetric", data_format="channels_last", flip=True),
    dict(shape=(2, 6, 9, 11), wshape=(6, 1, 3, 3), groups=6, padding=1, stride=(1, 2)),
], ids=["1d-kw7", "depthwise-x2-kw9-flip", "dense-22ch-20f", "depthwise-1d-cl", "3d-17f-cl",
        "depthwise-m1"])
def test_blockings_with_tails(cl_backend, rng, case):
    """Channel, filter and tap counts that leave partial vector blocks."""
    case = dict(case)
    shape, wshape = case.pop("shape"), case.pop("wshape")
    if case.get("data_format") == "channels_last":
        shape = (shape[0], *shape[2:], shape[1])
    x, w, gy = operands(rng, shape, wshape, **case)
    got = clconv.conv_backward(x, w, gy, backend=cl_backend, **case)
    assert_grads_close(got, oracle(clconv.conv_backward, x, w, gy, **case), w, gy)


def test_float64(cl_backend, rng):
    kw = dict(padding=(2, 3), padding_mode="reflect", groups=2, stride=2)
    x, w, gy = operands(rng, (2, 4, 9, 10), (6, 2, 3, 3), dtype=np.float64, **kw)
    if not clconv.get_backend(cl_backend).dctx.info.fp64:
        with pytest.raises(clconv.BackendUnavailable, match="fp64"):
            clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
        return
    got = clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
    assert_grads_close(got, oracle(clconv.conv_backward, x, w, gy, **kw), w, gy, dtype=np.float64)


def test_float16(cl_backend, rng):
    kw = dict(padding=1, padding_mode="circular")
    x, w, gy = operands(rng, (2, 4, 6, 6), (5, 4, 3, 3), dtype=np.float16, **kw)
    got = clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
    ref = oracle(clconv.conv_backward, x, w, gy, **kw)
    for g, r in zip(got, ref):
        assert g.dtype == np.float16
        np.testing.assert_allclose(g.astype(np.float64), r, rtol=2e-3,
                                   atol=2e-3 * np.abs(r).max())


def test_bit_identical_large_reduction(cl_backend, rng, monkeypatch):
    """Many partial blocks: repeated calls and strict limits give the same bits."""
    kw = dict(padding=1, padding_mode="reflect")
    x, w, gy = operands(rng, (64, 8, 16, 16), (16, 8, 3, 3), **kw)
    first = clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
    for _ in range(2):
        again = clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
        for a, b in zip(first, again):
            assert np.array_equal(a, b)
    monkeypatch.setenv("CLCONV_STRICT_LIMITS", "1")
    strict = clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
    for a, b in zip(first, strict):
        assert np.array_equal(a, b)
    assert_grads_close(first, oracle(clconv.conv_backward, x, w, gy, **kw), w, gy)


def test_strict_limits(cl_backend, rng, monkeypatch):
    from clconv.backends.opencl.paths.backward import backward_config

    monkeypatch.setenv("CLCONV_STRICT_LIMITS", "1")
    cfg = backward_config(clconv._normalize.normalize_conv(
        2, np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3)), None, 1, 1, 1, 1, "zeros",
        "channels_first", False).spec, 16)
    assert cfg.wg <= 16 and cfg.wg_x * cfg.wg_y <= 16
    kw = dict(padding=2, padding_mode="replicate", dilation=2)
    x, w, gy = operands(rng, (3, 6, 10, 9), (4, 6, 3, 3), **kw)
    got = clconv.conv_backward(x, w, gy, backend=cl_backend, **kw)
    assert_grads_close(got, oracle(clconv.conv_backward, x, w, gy, **kw), w, gy)


def test_empty_batch_and_zero_filters(cl_backend):
    queue = clconv.get_backend(cl_backend).queue
    import pyopencl.array as cla

    gx, gw, gb = clconv.conv_backward(np.zeros((0, 2, 5, 5), np.float32),
                                      np.ones((3, 2, 3, 3), np.float32),
                                      np.zeros((0, 3, 3, 3), np.float32), backend=cl_backend)
    assert gx.shape == (0, 2, 5, 5) and gw.shape == (3, 2, 3, 3) and gb.shape == (3,)
    assert not gw.any() and not gb.any()
    x = cla.to_device(queue, np.ones((1, 2, 5, 5), np.float32))
    gx, gw, gb = clconv.conv_backward(x, np.ones((0, 2, 3, 3), np.float32),
                                      np.zeros((1, 0, 3, 3), np.float32), backend=cl_backend)
    assert hasattr(gx, "queue") and gx.shape == (1, 2, 5, 5) and not gx.get().any()
    assert gw.shape == (0, 2, 3, 3) and gb.shape == (0,)


@st.composite
def backward_cases(draw):
    """Random convolutions with channel / filter / tap counts around the vector blocks."""
    ndim = draw(st.integers(1, 3))
    size = tuple(draw(st.integers(1, (12, 7, 4)[ndim - 1])) for _ in range(ndim))
    kernel = tuple(draw(st.integers(1, (6, 4, 3)[ndim - 1])) for _ in range(ndim))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    padding = tuple(draw(st.tuples(st.integers(0, 7), st.integers(0, 7))) for _ in range(ndim))
    return dict(
        ndim=ndim, size=size, kernel=kernel, groups=groups,
        channels=groups * draw(st.integers(1, 10)), filters=groups * draw(st.integers(1, 10)),
        batch=draw(st.integers(1, 3)),
        kw=dict(stride=tuple(draw(st.integers(1, 3)) for _ in range(ndim)),
                dilation=tuple(draw(st.integers(1, 2)) for _ in range(ndim)),
                padding=padding, padding_mode=draw(st.sampled_from(MODES)),
                flip=draw(st.booleans()), groups=groups,
                data_format=draw(st.sampled_from(["channels_first", "channels_last"]))))


@given(case=backward_cases(), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_matches_numpy(cl_backend, case, seed):
    rng = np.random.default_rng(seed)
    kw, c = case["kw"], case["channels"]
    spatial = case["size"]
    shape = ((case["batch"], *spatial, c) if kw["data_format"] == "channels_last"
             else (case["batch"], c, *spatial))
    wshape = (case["filters"], c // case["groups"], *case["kernel"])
    try:
        x, w, gy = operands(rng, shape, wshape, **kw)
    except clconv.ShapeError:
        assume(False)  # the kernel does not fit the padded input
    ref = oracle(clconv.conv_backward, x, w, gy, **kw)
    assert_grads_close(clconv.conv_backward(x, w, gy, backend=cl_backend, **kw), ref, w, gy)
