"""conv_backward: gradients against finite differences, the adjoint identities,
grad_bias, dtypes, errors, and every backend against the NumPy reference.

The loss is ``L = <conv(x, w, b), gy>``. It is bilinear in ``(x, w)``, so a
central difference along a random direction is exact up to rounding: the
finite-difference checks are tight (float64, rtol 1e-7), not loose.

The ``backend`` comparisons also run on every OpenCL device.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import clconv
from clconv import ArgumentError, DTypeError, ShapeError
from clconv.testing import assert_close

CONV = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}
MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]


# ---------------------------------------------------------------- helpers

def make_case(rng, ndim=2, size=(5, 4), batch=2, channels=4, filters=6, kernel=(3, 2),
              groups=1, data_format="channels_first", unbatched=False, dtype=np.float64,
              **kwargs):
    """Operands and forward keyword arguments of one convolution."""
    size, kernel = tuple(size)[:ndim], tuple(kernel)[:ndim]
    spatial_first = (channels, *size) if data_format == "channels_first" else (*size, channels)
    shape = spatial_first if unbatched else (batch, *spatial_first)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((filters, channels // groups, *kernel)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    kwargs = dict(kwargs, groups=groups, data_format=data_format)
    return x, w, b, kwargs


def forward(x, w, b, kwargs, backend="numpy"):
    return CONV[w.ndim - 2](x, w, b, backend=backend, **kwargs)


def backward(x, w, gy, kwargs, backend="numpy"):
    return clconv.conv_backward(x, w, gy, backend=backend, **kwargs)


def bias_sum(gy, kwargs, batched):
    """grad_bias oracle: gy summed over every axis but the channel axis."""
    if kwargs.get("data_format") == "channels_last":
        axis = gy.ndim - 1
    else:
        axis = 1 if batched else 0
    return gy.sum(axis=tuple(i for i in range(gy.ndim) if i != axis))


def check_gradients(rng, x, w, b, kwargs, rtol=1e-7):
    """Directional central differences and the adjoint identities, float64."""
    y = forward(x, w, b, kwargs)
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = backward(x, w, gy, kwargs)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    assert gx.dtype == gw.dtype == gb.dtype == np.float64

    def loss(xx, ww, bb):
        return float(np.vdot(forward(xx, ww, bb, kwargs), gy))

    for _ in range(2):
        dx, dw, db = (rng.standard_normal(a.shape) for a in (x, w, b))
        eps = 1e-3  # L is quadratic in the step: the central difference is exact
        numeric = (loss(x + eps * dx, w + eps * dw, b + eps * db)
                   - loss(x - eps * dx, w - eps * dw, b - eps * db)) / (2 * eps)
        analytic = np.vdot(gx, dx) + np.vdot(gw, dw) + np.vdot(gb, db)
        scale = np.abs(gx).sum() + np.abs(gw).sum() + np.abs(gb).sum()
        assert abs(numeric - analytic) <= rtol * scale + 1e-12

    # <conv(x), gy> == <x, grad_input(gy)> and <conv_w(w), gy> == <w, grad_weight(gy)>
    no_bias = np.zeros_like(b)
    assert np.isclose(np.vdot(forward(x, w, no_bias, kwargs), gy), np.vdot(x, gx),
                      rtol=1e-10, atol=1e-10 * scale)
    assert np.isclose(np.vdot(forward(x, w, no_bias, kwargs), gy), np.vdot(w, gw),
                      rtol=1e-10, atol=1e-10 * scale)
    np.testing.assert_allclose(gb, bias_sum(gy, kwargs, batched=gy.ndim == w.ndim),
                               rtol=1e-12, atol=1e-12)
    return gx, gw, gb


# ---------------------------------------------------------------- finite differences, grid

PADDINGS = [0, 2, "same", "full", "valid", "wide", "asym"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("ndim", [1, 2])
def test_fd_padding_modes(rng, mode, padding, ndim):
    size = (4, 3)[:ndim]
    if padding == "wide":  # wider than the input: several reflections / wraps
        padding = 9
    elif padding == "asym":
        padding = ((0, 5), (3, 1))[:ndim]
    x, w, b, kw = make_case(rng, ndim=ndim, size=size, channels=2, filters=3, kernel=(3, 2),
                            padding=padding, padding_mode=mode, stride=(2, 1)[:ndim])
    check_gradients(rng, x, w, b, kw)


FEATURES = {
    "stride": dict(stride=(2, 3), padding=1),
    "dilation": dict(dilation=(2, 1), padding=(2, (0, 1)), padding_mode="reflect"),
    "stride-dilation-same": dict(stride=2, dilation=2, padding="same", padding_mode="circular"),
    "groups": dict(groups=2, padding=1, padding_mode="replicate"),
    "depthwise": dict(groups=4, filters=8, padding=2, padding_mode="reflect"),
    "one-channel-many-filters": dict(groups=2, channels=2, filters=12, padding=1,
                                     padding_mode="reflect"),
    "depthwise-multiplier1": dict(groups=4, filters=4, padding="same", padding_mode="symmetric"),
    "flip": dict(flip=True, padding=(1, 2), padding_mode="reflect"),
    "flip-groups-stride": dict(flip=True, groups=2, stride=2, padding="full"),
    "channels-last": dict(data_format="channels_last", padding=3, padding_mode="circular"),
    "channels-last-groups-flip": dict(data_format="channels_last", groups=2, flip=True,
                                      padding=1, padding_mode="reflect"),
    "unbatched": dict(unbatched=True, padding=2, padding_mode="replicate"),
    "unbatched-channels-last": dict(unbatched=True, data_format="channels_last", padding=1),
    "kernel-equals-padded": dict(kernel=(5, 4), padding=0),
    "one-pixel-reflect-wide": dict(size=(1, 1), kernel=(3, 3), padding=3,
                                   padding_mode="reflect"),
    "batch1-1x1": dict(batch=1, kernel=(1, 1), stride=2, padding=(1, 0),
                       padding_mode="circular"),
}


@pytest.mark.parametrize("feature", FEATURES)
def test_fd_features_2d(rng, feature):
    x, w, b, kw = make_case(rng, **FEATURES[feature])
    check_gradients(rng, x, w, b, kw)


@pytest.mark.parametrize("kwargs", [
    dict(padding=1),
    dict(padding=((1, 2), 0, (2, 0)), padding_mode="reflect", stride=(1, 2, 1)),
    dict(padding=5, padding_mode="circular", dilation=(1, 2, 1), groups=2, flip=True),
    dict(padding="same", padding_mode="replicate", data_format="channels_last"),
    dict(padding=2, padding_mode="symmetric", unbatched=True),
], ids=["zeros", "reflect-asym-stride", "circular-wide-dil-groups-flip", "same-cl", "unbatched"])
def test_fd_3d(rng, kwargs):
    x, w, b, kw = make_case(rng, ndim=3, size=(3, 4, 2), kernel=(2, 3, 2), channels=2,
                            filters=4, batch=1, **kwargs)
    check_gradients(rng, x, w, b, kw)


@pytest.mark.parametrize("mode", MODES)
def test_fd_elementwise_wide_padding(rng, mode):
    """Per-element central differences of dL/dx: padding wider than the input."""
    x, w, b, kw = make_case(rng, ndim=2, size=(3, 2), batch=1, channels=2, filters=2,
                            kernel=(2, 3), padding=((4, 1), (2, 5)), padding_mode=mode,
                            stride=(1, 2))
    gy = rng.standard_normal(forward(x, w, b, kw).shape)
    gx, _, _ = backward(x, w, gy, kw)
    numeric = np.empty_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = 1e-3
        numeric[i] = (np.vdot(forward(x + d, w, b, kw), gy)
                      - np.vdot(forward(x - d, w, b, kw), gy)) / 2e-3
    np.testing.assert_allclose(gx, numeric, rtol=1e-9, atol=1e-9)


def test_chunked_im2col_matches_one_chunk(rng, monkeypatch):
    """Tiny im2col chunks (over batch and output rows) give the same gradients."""
    from clconv.backends import numpy_backward

    x, w, b, kw = make_case(rng, size=(9, 7), batch=3, padding=2, padding_mode="reflect",
                            stride=(2, 1), groups=2)
    gy = rng.standard_normal(forward(x, w, b, kw).shape)
    whole = backward(x, w, gy, kw)
    monkeypatch.setattr(numpy_backward, "IM2COL_CHUNK_BYTES", 64)
    chunked = backward(x, w, gy, kw)
    for a, c in zip(whole, chunked):
        np.testing.assert_allclose(c, a, rtol=1e-13, atol=1e-13)


def test_padding_gradient_matches_numpy_pad_adjoint(rng):
    """A 1x1 identity kernel with padding: grad_input is exactly numpy.pad's adjoint."""
    x = rng.standard_normal((1, 1, 3))
    w = np.ones((1, 1, 1))
    gy = rng.standard_normal((1, 1, 3 + 7 + 4))
    for mode, pad_mode in [("reflect", "reflect"), ("replicate", "edge"),
                           ("circular", "wrap"), ("symmetric", "symmetric")]:
        gx, _, _ = clconv.conv_backward(x, w, gy, padding=((7, 4),), padding_mode=mode,
                                        backend="numpy")
        source = np.pad(np.arange(3), (7, 4), mode=pad_mode)
        expected = np.bincount(source, weights=gy[0, 0], minlength=3)
        np.testing.assert_allclose(gx[0, 0], expected, rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------- hypothesis

@st.composite
def conv_cases(draw):
    ndim = draw(st.integers(1, 3))
    top = {1: 9, 2: 6, 3: 4}[ndim]
    size = tuple(draw(st.integers(1, top)) for _ in range(ndim))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    groups = draw(st.integers(1, 2))
    kw = dict(
        stride=tuple(draw(st.integers(1, 3)) for _ in range(ndim)),
        dilation=tuple(draw(st.integers(1, 2)) for _ in range(ndim)),
        padding=draw(st.one_of(
            st.integers(0, 6),
            st.sampled_from(["same", "full", "valid"]),
            st.tuples(*[st.one_of(st.integers(0, 6), st.tuples(st.integers(0, 6),
                                                                 st.integers(0, 6)))
                        for _ in range(ndim)]))),
        padding_mode=draw(st.sampled_from(MODES)),
        flip=draw(st.booleans()),
    )
    return dict(ndim=ndim, size=size, kernel=kernel, groups=groups,
                channels=groups * draw(st.integers(1, 2)),
                filters=groups * draw(st.integers(1, 2)),
                batch=draw(st.integers(1, 2)),
                data_format=draw(st.sampled_from(["channels_first", "channels_last"])),
                unbatched=draw(st.booleans()), **kw)


@given(case=conv_cases(), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_gradients(case, seed):
    rng = np.random.default_rng(seed)
    x, w, b, kw = make_case(rng, **case)
    try:
        forward(x, w, b, kw)
    except ShapeError:
        assume(False)  # the kernel does not fit the padded input
    check_gradients(rng, x, w, b, kw)


# ---------------------------------------------------------------- dtypes and forms

def test_float32_close_to_float64(rng):
    x, w, b, kw = make_case(rng, padding=2, padding_mode="reflect", groups=2, stride=2)
    gy = rng.standard_normal(forward(x, w, b, kw).shape)
    ref = backward(x, w, gy, kw)
    got = backward(x.astype(np.float32), w.astype(np.float32), gy.astype(np.float32), kw)
    for r, g, reduction in zip(ref, got, (6 * 6, 2 * 3 * 3, 2 * 3 * 3)):
        assert g.dtype == np.float32
        assert_close(g, r, dtype=np.float32, reduction=reduction * 4)


def test_float16_accumulates_in_float32(rng):
    x, w, b, kw = make_case(rng, padding=1, dtype=np.float16)
    gy = rng.standard_normal(forward(x, w, b, kw).shape).astype(np.float16)
    got = backward(x, w, gy, kw)
    ref = backward(x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64), kw)
    for g, r in zip(got, ref):
        assert g.dtype == np.float16
        np.testing.assert_allclose(g.astype(np.float64), r, rtol=2e-3, atol=2e-3 * np.abs(r).max())


def test_integer_input_gives_float32(rng):
    x = rng.integers(0, 255, (1, 2, 5, 5)).astype(np.uint8)
    w = rng.standard_normal((3, 2, 3, 3))
    gx, gw, gb = clconv.conv_backward(x, w, np.ones((1, 3, 3, 3)), backend="numpy")
    assert gx.dtype == gw.dtype == gb.dtype == np.float32


def test_unbatched_equals_batched(rng):
    x, w, b, kw = make_case(rng, padding=1, padding_mode="circular", unbatched=True)
    gy = rng.standard_normal(forward(x, w, b, kw).shape)
    single = backward(x, w, gy, kw)
    batched = backward(x[None], w, gy[None], kw)
    assert single[0].shape == x.shape
    np.testing.assert_array_equal(single[0], batched[0][0])
    np.testing.assert_array_equal(single[1], batched[1])
    np.testing.assert_array_equal(single[2], batched[2])


def test_channels_last_equals_channels_first(rng):
    x, w, b, kw = make_case(rng, padding=2, padding_mode="reflect", groups=2)
    gy = rng.standard_normal(forward(x, w, b, kw).shape)
    first = backward(x, w, gy, kw)
    kw_last = dict(kw, data_format="channels_last")
    last = backward(np.moveaxis(x, 1, -1), w, np.moveaxis(gy, 1, -1), kw_last)
    np.testing.assert_allclose(np.moveaxis(last[0], -1, 1), first[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(last[1], first[1], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(last[2], first[2], rtol=1e-13, atol=1e-13)


def test_non_contiguous_and_unmodified(rng):
    x, w, b, kw = make_case(rng, size=(10, 8), padding=1, padding_mode="reflect")
    xs, ws = x[:, :, ::-2, ::2], w[:, :, ::-1]
    gy = rng.standard_normal(forward(xs, ws, b, kw).shape)[..., ::-1]
    copies = [a.copy() for a in (xs, ws, gy)]
    got = backward(xs, ws, gy, kw)
    ref = backward(np.ascontiguousarray(xs), np.ascontiguousarray(ws),
                   np.ascontiguousarray(gy), kw)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-13)
    for a, c in zip((xs, ws, gy), copies):
        np.testing.assert_array_equal(a, c)


def test_empty_batch_and_zero_filters(rng):
    gx, gw, gb = clconv.conv_backward(np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)),
                                      np.zeros((0, 3, 3, 3)), backend="numpy")
    assert gx.shape == (0, 2, 5, 5) and gw.shape == (3, 2, 3, 3) and gb.shape == (3,)
    assert not gw.any() and not gb.any()
    gx, gw, gb = clconv.conv_backward(np.ones((1, 2, 5, 5)), np.ones((0, 2, 3, 3)),
                                      np.zeros((1, 0, 3, 3)), backend="numpy")
    assert gx.shape == (1, 2, 5, 5) and not gx.any()
    assert gw.shape == (0, 2, 3, 3) and gb.shape == (0,)


def test_known_values_1d():
    gx, gw, gb = clconv.conv_backward(np.arange(4.0)[None, None], np.array([[[1.0, 2.0]]]),
                                      np.array([[[1.0, 10.0, 100.0]]]), backend="numpy")
    np.testing.assert_array_equal(gx, [[[1.0, 12.0, 120.0, 200.0]]])
    np.testing.assert_array_equal(gw, [[[0 + 10 + 200.0, 1 + 20 + 300.0]]])
    np.testing.assert_array_equal(gb, [111.0])


# ---------------------------------------------------------------- errors

def test_grad_output_shape_error_names_it(rng):
    x, w = np.ones((2, 3, 6, 6)), np.ones((4, 3, 3, 3))
    with pytest.raises(ShapeError, match=r"grad_output has shape \(2, 4, 5, 5\).*\(2, 4, 4, 4\)"):
        clconv.conv_backward(x, w, np.ones((2, 4, 5, 5)), backend="numpy")
    with pytest.raises(ShapeError, match="grad_output"):
        clconv.conv_backward(x[0], w, np.ones((1, 4, 4, 4)), backend="numpy")


@pytest.mark.parametrize("args, kwargs, error", [
    ((np.ones((1, 2, 5)), np.ones((2, 2)), np.ones((1, 2, 3))), {}, ShapeError),
    ((np.ones((1, 2, 5)), np.ones((2, 2, 3)), np.ones((1, 2, 3))), {"padding_mode": "mirror"},
     ArgumentError),
    ((np.ones((1, 2, 5)), np.ones((2, 2, 3)), np.ones((1, 2, 3))), {"padding": (1, 2)},
     ShapeError),
    ((np.ones((1, 3, 5)), np.ones((2, 2, 3)), np.ones((1, 2, 3))), {}, ShapeError),
    ((np.ones((1, 2, 5)), np.ones((2, 2, 3)), np.ones((1, 2, 3), dtype=complex)), {},
     DTypeError),
    ((np.ones((1, 2, 5)), np.ones((2, 2, 3)), np.ones((1, 2, 3))), {"stride": 0}, ShapeError),
    ((np.ones((1, 2, 5)), np.ones((2, 2, 3)), np.ones((1, 2, 3))), {"flip": "yes"},
     ArgumentError),
])
def test_argument_errors(args, kwargs, error):
    with pytest.raises(error):
        clconv.conv_backward(*args, backend="numpy", **kwargs)


# ---------------------------------------------------------------- every backend vs NumPy

BACKEND_CASES = {
    "plain": dict(padding=1),
    "reflect-wide-stride": dict(size=(4, 3), padding=6, padding_mode="reflect", stride=2),
    "circular-dilation-groups": dict(padding=(3, (1, 4)), padding_mode="circular",
                                     dilation=(2, 1), groups=2),
    "replicate-same-flip": dict(padding="same", padding_mode="replicate", flip=True, stride=2),
    "depthwise-cl": dict(groups=4, filters=4, padding=1, data_format="channels_last"),
    "unbatched-symmetric": dict(unbatched=True, padding=2, padding_mode="symmetric"),
    "conv1d": dict(ndim=1, size=(9,), kernel=(4,), padding="full", padding_mode="reflect"),
    "conv3d": dict(ndim=3, size=(3, 4, 4), kernel=(2, 3, 3), channels=2, filters=3,
                   padding=(1, 2, 0), padding_mode="replicate", stride=(1, 2, 1)),
}


@pytest.mark.parametrize("case", BACKEND_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_backend_matches_numpy(backend, rng, case, dtype):
    x, w, b, kw = make_case(rng, dtype=dtype, **BACKEND_CASES[case])
    gy = rng.standard_normal(forward(x, w, b, kw).shape).astype(dtype)
    ref = backward(x, w, gy, kw, backend="numpy")
    got = backward(x, w, gy, kw, backend=backend)
    taps = math.prod(w.shape[1:])
    positions = gy.size // w.shape[0]
    for g, r, reduction in zip(got, ref, (w.shape[0] * taps, positions, positions)):
        g = np.asarray(g.get() if hasattr(g, "get") else g)
        assert g.shape == r.shape and g.dtype == r.dtype
        assert_close(g, r, dtype=dtype, reduction=reduction * 4)


def test_backend_deterministic(backend, rng):
    x, w, b, kw = make_case(rng, dtype=np.float32, size=(12, 11), channels=8, filters=8,
                            batch=4, padding=2, padding_mode="reflect")
    gy = rng.standard_normal(forward(x, w, b, kw).shape).astype(np.float32)
    first = backward(x, w, gy, kw, backend=backend)
    for _ in range(2):
        again = backward(x, w, gy, kw, backend=backend)
        for a, c in zip(first, again):
            np.testing.assert_array_equal(np.asarray(a.get() if hasattr(a, "get") else a),
                                          np.asarray(c.get() if hasattr(c, "get") else c))
