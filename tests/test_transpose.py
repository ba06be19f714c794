"""Transposed convolution: conv_transpose1d/2d/3d and the ConvTranspose layers.

The oracle is written here from the definition (PyTorch's semantics): every
input position scatters its weights into the full result ``stride`` apart,
the full result is extended by ``output_padding`` and cropped by
``padding``. The NumPy backend is checked against it and against hand-worked
numbers and the adjoint identity; every backend is checked against it.
"""

from __future__ import annotations

import contextlib
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clconv
from clconv.testing import assert_close

FUNCS = {1: clconv.conv_transpose1d, 2: clconv.conv_transpose2d, 3: clconv.conv_transpose3d}
CONVS = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}


def scatter_oracle(x, w, bias, stride, padding, output_padding, groups, dilation):
    """float64 transposed convolution of channels-first, batched ``x`` by definition."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    nd = x.ndim - 2
    n, c, *size = x.shape
    cg, fg = c // groups, w.shape[1]
    k = w.shape[2:]
    full = [(s - 1) * st_ + d * (kk - 1) + 1 + op
            for s, st_, d, kk, op in zip(size, stride, dilation, k, output_padding)]
    y = np.zeros((n, fg * groups, *full))
    for g in range(groups):
        for ci in range(cg):
            cin = g * cg + ci
            for pos in itertools.product(*(range(s) for s in size)):
                v = x[(slice(None), cin, *pos)]                       # (N,)
                for tap in itertools.product(*(range(kk) for kk in k)):
                    out = tuple(p * st_ + t * d for p, st_, t, d in
                                zip(pos, stride, tap, dilation))
                    wv = w[(cin, slice(None), *tap)]                  # (Fg,)
                    y[(slice(None), slice(g * fg, (g + 1) * fg), *out)] += v[:, None] * wv
    crop = tuple(slice(b, f - a) for (b, a), f in zip(padding, full))
    y = y[(slice(None), slice(None), *crop)]
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape(-1, *(1,) * nd)
    return y


def pairs(padding, nd):
    if isinstance(padding, int):
        return ((padding, padding),) * nd
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def per_dim(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def test_hand_worked_1d_stride_2():
    """x = [1, 2, 3], w = [1, 10, 100], stride 2: each input writes w, two apart.

        1*[1 10 100]             ->  1  10 100
        2*[1 10 100], shifted 2  ->         2  20 200
        3*[1 10 100], shifted 4  ->                3  30 300
        full (length 7)          ->  1  10 102  20 203  30 300
    padding 1 crops one each side; output_padding 1 keeps one more at the end.
    """
    x = np.array([[[1, 2, 3]]], np.float32)
    w = np.array([[[1, 10, 100]]], np.float32)
    full = [1, 10, 102, 20, 203, 30, 300]
    np.testing.assert_array_equal(clconv.conv_transpose1d(x, w, stride=2, backend="numpy")[0, 0],
                                  full)
    np.testing.assert_array_equal(
        clconv.conv_transpose1d(x, w, stride=2, padding=1, backend="numpy")[0, 0], full[1:-1])
    np.testing.assert_array_equal(
        clconv.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1,
                                backend="numpy")[0, 0], full[1:])   # (full + [0])[1:-1]
    np.testing.assert_array_equal(
        clconv.conv_transpose1d(x, w, stride=2, padding=((0, 2),), output_padding=1,
                                backend="numpy")[0, 0], full[:6])   # (full + [0])[:-2]
    assert scatter_oracle(x, w, None, (2,), ((0, 0),), (0,), 1, (1,))[0, 0].tolist() == full


GRID = [
    # (nd, N, C, F, size, k, stride, padding, output_padding, groups, dilation)
    (1, 2, 3, 4, (7,), (3,), 2, 1, 1, 1, 1),
    (1, 1, 4, 6, (5,), (4,), 3, ((0, 2),), 2, 2, 1),
    (1, 2, 2, 2, (6,), (3,), 1, 0, 0, 2, 2),
    (1, 1, 2, 3, (4,), (2,), 2, 0, 1, 1, 3),           # output_padding 1 >= stride? no: < 3
    (2, 1, 3, 2, (5, 6), (3, 3), 2, 1, 1, 1, 1),
    (2, 2, 4, 4, (4, 5), (4, 4), 2, 1, 0, 1, 1),       # the decoder layer's shape
    (2, 1, 4, 6, (3, 4), (3, 2), (2, 3), (1, (0, 1)), (1, 2), 2, 1),
    (2, 1, 6, 6, (5, 5), (3, 3), 1, 1, 0, 6, 1),       # depthwise
    (2, 1, 2, 3, (4, 4), (3, 3), 2, 2, 1, 1, (2, 1)),
    (2, 1, 2, 2, (3, 3), (2, 2), 1, 0, 2, 1, 3),       # output_padding >= stride (dilation 3)
    (3, 1, 2, 3, (3, 4, 3), (2, 2, 2), 2, 0, 0, 1, 1),
    (3, 2, 2, 2, (3, 3, 3), (3, 3, 3), 2, 1, 1, 2, 1),
    (2, 2, 6, 8, (5, 6), (4, 4), 2, 1, 0, 2, 1),       # equal phases, 2 groups of 4 filters
    (3, 1, 4, 8, (3, 4, 5), (2, 2, 2), 2, 0, 0, 1, 1),  # kernel = stride: 1x1x1 phases
]


def _case(case, dtype, seed=0):
    nd, n, c, f, size, k, stride, padding, op, groups, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, *size)).astype(dtype)
    w = rng.standard_normal((c, f // groups, *k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    kw = dict(stride=stride, padding=padding, output_padding=op, groups=groups,
              dilation=dilation)
    want = scatter_oracle(x, w, b, per_dim(stride, nd), pairs(padding, nd), per_dim(op, nd),
                          groups, per_dim(dilation, nd))
    return x, w, b, kw, want


@pytest.mark.parametrize("case", GRID, ids=[f"{c[0]}d-{i}" for i, c in enumerate(GRID)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_transpose_equals_oracle(backend, case, dtype):
    if dtype == "float64" and backend != "numpy" and not clconv.get_backend(
            backend).dctx.info.fp64:
        with pytest.raises(clconv.BackendUnavailable, match="fp64"):
            FUNCS[case[0]](*_case(case, dtype)[:3], backend=backend)
        return
    x, w, b, kw, want = _case(case, dtype)
    got = FUNCS[case[0]](x, w, b, backend=backend, **kw)
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    reduction = w.shape[0] // kw["groups"] * math.prod(w.shape[2:])
    assert_close(got, want, dtype=dtype, reduction=reduction)


@pytest.mark.parametrize("case", GRID[::3], ids=[f"{c[0]}d-{i}" for i, c in enumerate(GRID[::3])])
def test_channels_last_unbatched_and_device_arrays(backend, case):
    nd = case[0]
    x, w, b, kw, want = _case(case, "float32", seed=1)
    fn = FUNCS[nd]
    last = np.moveaxis(x, 1, -1)
    got = fn(last, w, b, data_format="channels_last", backend=backend, **kw)
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), want, rtol=1e-4, atol=1e-4)
    got = fn(x[0], w, b, backend=backend, **kw)
    assert got.shape == want.shape[1:]
    np.testing.assert_allclose(got, want[0], rtol=1e-4, atol=1e-4)
    strided = np.ascontiguousarray(x[..., ::-1])[..., ::-1]   # a negatively strided view
    np.testing.assert_allclose(fn(strided, w, b, backend=backend, **kw), want, rtol=1e-4,
                               atol=1e-4)
    if backend != "numpy":
        xd = clconv.to_device(x, backend=backend)
        yd = fn(xd, w, b, backend=backend, **kw)
        assert type(yd).__module__.startswith("pyopencl") and yd.events
        np.testing.assert_allclose(yd.get(), want, rtol=1e-4, atol=1e-4)
        wd, bd = (clconv.to_device(a, backend=backend) for a in (w, b))
        np.testing.assert_allclose(fn(xd, wd, bd, backend=backend, **kw).get(), want,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", GRID, ids=[f"{c[0]}d-{i}" for i, c in enumerate(GRID)])
def test_adjoint_identity(case):
    """<conv(y, w), x> == <y, conv_transpose(x, w)> for the same stride, padding, dilation
    and groups (float64, NumPy backend), where y has the transposed output's shape."""
    nd = case[0]
    x, w, _, kw, want = _case(case, "float64", seed=2)
    op = kw.pop("output_padding")
    y = np.random.default_rng(3).standard_normal(want.shape)
    t = FUNCS[nd](x, w, output_padding=op, backend="numpy", **kw)
    conv = CONVS[nd](y, w, stride=kw["stride"], padding=pairs(kw["padding"], nd),
                     dilation=kw["dilation"], groups=kw["groups"], backend="numpy")
    # conv's output can be longer than x where output_padding reaches past a stride.
    conv = conv[(slice(None), slice(None), *(slice(0, s) for s in x.shape[2:]))]
    assert np.isclose(np.vdot(conv, x), np.vdot(y, t), rtol=1e-10)


def test_empty_batch_and_nan_propagation(backend):
    w = np.ones((2, 3, 3, 3), np.float32)
    out = clconv.conv_transpose2d(np.ones((0, 2, 4, 4), np.float32), w, stride=2,
                                  backend=backend)
    assert out.shape == (0, 3, 9, 9)
    x = np.zeros((1, 2, 4, 4), np.float32)
    x[0, 1, 2, 2] = np.nan
    y = clconv.conv_transpose2d(x, w, stride=2, backend=backend)
    nan = np.isnan(y[0, 0])
    assert nan[4:7, 4:7].all() and nan.sum() == 9


@pytest.mark.parametrize("call,error,needle", [
    (lambda b: clconv.conv_transpose2d(np.ones((1, 2, 4, 4)), np.ones((2, 1, 3, 3)), stride=2,
                                       output_padding=2, backend=b),
     clconv.ShapeError, "output_padding=2: 2 on spatial axis 0; expected less than max"),
    (lambda b: clconv.conv_transpose2d(np.ones((1, 3, 4, 4)), np.ones((2, 1, 3, 3)),
                                       backend=b),
     clconv.ShapeError, "expected weight.shape[0] == 3"),
    (lambda b: clconv.conv_transpose2d(np.ones((1, 3, 4, 4)), np.ones((3, 1, 3, 3)),
                                       groups=2, backend=b),
     clconv.ShapeError, "groups=2 does not divide the input's 3 channels"),
    (lambda b: clconv.conv_transpose1d(np.ones((1, 1, 2)), np.ones((1, 1, 2)), padding=3,
                                       backend=b),
     clconv.ShapeError, "output size on spatial axis 0 is -3"),
    (lambda b: clconv.conv_transpose1d(np.ones((1, 1, 2)), np.ones((1, 1, 2)),
                                       padding="same", backend=b),
     clconv.ArgumentError, "takes no string padding"),
    (lambda b: clconv.conv_transpose1d(np.ones((1, 0, 2)), np.ones((0, 1, 2)), backend=b),
     clconv.ShapeError, "0 channels"),
    (lambda b: clconv.conv_transpose1d(np.ones((1, 1, 2)), np.ones((1, 1, 2)), stride=0,
                                       backend=b),
     clconv.ShapeError, "stride=0"),
    (lambda b: clconv.conv_transpose1d(np.ones((1, 1, 2), complex), np.ones((1, 1, 2)),
                                       backend=b),
     clconv.DTypeError, "complex"),
    (lambda b: clconv.conv_transpose1d(np.ones((1, 2, 2)), np.ones((2, 2, 2)), np.ones(3),
                                       backend=b),
     clconv.ShapeError, "bias has shape (3,); expected (2,)"),
])
def test_bad_arguments_name_the_argument(backend, call, error, needle):
    with pytest.raises(error) as info:
        call(backend)
    assert needle in str(info.value)


@given(nd=st.integers(1, 3), n=st.integers(1, 2), groups=st.integers(1, 2),
       cg=st.integers(1, 3), fg=st.integers(1, 3), data=st.data())
def test_transpose_hypothesis(backend, nd, n, groups, cg, fg, data):
    size = tuple(data.draw(st.lists(st.integers(1, 5), min_size=nd, max_size=nd)))
    k = tuple(data.draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd)))
    stride = tuple(data.draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd)))
    dilation = tuple(data.draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd)))
    op = tuple(data.draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    full = [(s - 1) * st_ + d * (kk - 1) + 1 + o
            for s, st_, d, kk, o in zip(size, stride, dilation, k, op)]
    pads = tuple((data.draw(st.integers(0, f // 2)), data.draw(st.integers(0, (f - 1) // 2)))
                 for f in full)
    case = (nd, n, cg * groups, fg * groups, size, k, stride, pads, op, groups, dilation)
    x, w, b, kw, want = _case(case, "float32", seed=data.draw(st.integers(0, 99)))
    got = FUNCS[nd](x, w, b, backend=backend, **kw)
    assert got.shape == want.shape
    assert_close(got, want, dtype=np.float32, reduction=cg * math.prod(k))


@settings(max_examples=20)
@given(nd=st.integers(1, 3), groups=st.integers(1, 2), data=st.data())
def test_interleaved_phases_hypothesis(cl_backend, nd, groups, data):
    """Gemm-sized transposed convolutions whose kernel is as long as the stride, or
    one longer, along the last axis (interleaved filter phases, some with a zero
    tap), with padding and output padding there; other axes and tails random."""
    s_last = data.draw(st.integers(2, 4))
    stride = (*data.draw(st.lists(st.integers(1, 3), min_size=nd - 1, max_size=nd - 1)),
              s_last)
    k = (*(data.draw(st.integers(1, 3)) for _ in range(nd - 1)),
         s_last + data.draw(st.integers(0, 1)))
    pad = (*(0,) * (nd - 1), data.draw(st.integers(0, (k[-1] - 1) // 2)))
    out_pad = (*(0,) * (nd - 1), data.draw(st.integers(0, s_last - 1)))
    size = tuple(data.draw(st.lists(st.integers(3, 40 if nd == 1 else 9), min_size=nd,
                                    max_size=nd)))
    cg, fg = data.draw(st.integers(4, 24)), data.draw(st.integers(4, 24))
    n, with_bias = data.draw(st.integers(1, 2)), data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    x = rng.standard_normal((n, cg * groups, *size)).astype(np.float32)
    w = rng.standard_normal((cg * groups, fg, *k)).astype(np.float32)
    b = rng.standard_normal(fg * groups).astype(np.float32) if with_bias else None
    want = scatter_oracle(x, w, b, stride, tuple((p, p) for p in pad), out_pad, groups,
                          (1,) * nd)
    got = FUNCS[nd](x, w, b, stride=stride, padding=pad, output_padding=out_pad,
                    groups=groups, backend=cl_backend)
    assert_close(got, want, dtype=np.float32, reduction=cg * math.prod(k))


# ---------------------------------------------------------------- layers

LAYERS = {1: clconv.ConvTranspose1d, 2: clconv.ConvTranspose2d, 3: clconv.ConvTranspose3d}
CONV_LAYERS = {1: clconv.Conv1d, 2: clconv.Conv2d, 3: clconv.Conv3d}
LAYER_CASES = [
    # nd, C, F, size, k, stride, padding, output_padding, groups, dilation
    (1, 3, 4, (6,), 3, 2, 1, 1, 1, 1),
    (2, 4, 2, (4, 5), 4, 2, 1, 0, 2, 1),
    (2, 2, 3, (3, 3), 3, 1, 0, 1, 1, 2),
    (3, 2, 2, (2, 3, 2), 2, 2, 0, 1, 1, 1),
]


def _layer(case, backend, dtype="float64", bias=True):
    nd, c, f, size, k, s, p, op, g, d = case
    layer = LAYERS[nd](c, f, k, stride=s, padding=p, output_padding=op, groups=g, bias=bias,
                       dilation=d, seed=5, dtype=dtype, backend=backend)
    x = np.random.default_rng(6).standard_normal((2, c, *size)).astype(dtype)
    return layer, x


def _fp64(backend):
    return backend == "numpy" or clconv.get_backend(backend).dctx.info.fp64


@pytest.mark.parametrize("case", LAYER_CASES, ids=[f"{c[0]}d-{i}" for i, c in
                                                   enumerate(LAYER_CASES)])
def test_layer_gradients_match_finite_differences(backend, case):
    dtype = "float64" if _fp64(backend) else "float32"
    layer, x = _layer(case, backend, dtype)
    y = layer(x)
    g = np.random.default_rng(7).standard_normal(y.shape).astype(dtype)
    gx = layer.backward(g)
    rng = np.random.default_rng(8)
    eps = 1e-6 if dtype == "float64" else 1e-2
    rtol = 1e-6 if dtype == "float64" else 2e-2

    def loss() -> float:
        return float(np.vdot(layer(x), g))

    for array, grad in ((x, gx), (layer.weight, layer.grad_weight), (layer.bias, layer.grad_bias)):
        for flat in rng.choice(array.size, size=min(4, array.size), replace=False):
            index = np.unravel_index(flat, array.shape)
            keep = array[index]
            array[index] = keep + eps
            up = loss()
            array[index] = keep - eps
            down = loss()
            array[index] = keep
            np.testing.assert_allclose(grad[index], (up - down) / (2 * eps), rtol=rtol,
                                       atol=rtol)


@pytest.mark.parametrize("case", LAYER_CASES, ids=[f"{c[0]}d-{i}" for i, c in
                                                   enumerate(LAYER_CASES)])
def test_layer_backward_is_the_forward_layer_by_the_adjoint_identity(backend, case):
    """ConvTranspose's dL/dx is Conv's forward of dL/dy, and its dL/dw is Conv's dL/dw
    with the roles of input and output gradient exchanged (same weight array)."""
    nd, c, f, size, k, s, p, op, g, d = case
    layer, x = _layer(case, backend, "float32", bias=False)
    y = layer(x)
    gy = np.random.default_rng(9).standard_normal(y.shape).astype(np.float32)
    gx = layer.backward(gy)
    conv = CONV_LAYERS[nd](f, c, k, stride=s, padding=p, groups=g, dilation=d, bias=False,
                           backend=backend)
    conv.weight = layer.weight
    forward = conv(gy)
    crop = (slice(None), slice(None), *(slice(0, n) for n in size))
    np.testing.assert_allclose(gx, forward[crop], rtol=1e-4, atol=1e-4)
    padded = np.zeros(forward.shape, np.float32)
    padded[crop] = x
    conv.backward(padded)
    np.testing.assert_allclose(layer.grad_weight, conv.grad_weight, rtol=1e-4, atol=1e-3)


def test_layer_defaults_and_bad_arguments():
    layer = clconv.ConvTranspose2d(8, 6, (3, 5), groups=2, seed=0)
    bound = 1 / math.sqrt(6 // 2 * 15)
    assert layer.weight.shape == (8, 3, 3, 5) and layer.bias.shape == (6,)
    assert np.abs(layer.weight).max() <= bound and np.abs(layer.weight).max() > 0.9 * bound
    assert clconv.ConvTranspose1d(2, 2, 3, bias=False, backend="numpy").bias is None
    with pytest.raises(clconv.ShapeError, match="output_padding=2: 2 on spatial axis 0"):
        clconv.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(clconv.ArgumentError, match="takes no string padding"):
        clconv.ConvTranspose2d(2, 2, 3, padding="same")
    with pytest.raises(clconv.ShapeError, match="groups=3 must divide"):
        clconv.ConvTranspose2d(4, 6, 3, groups=3)
    with pytest.raises(clconv.ArgumentError, match="before any forward"):
        clconv.ConvTranspose1d(1, 1, 2).backward(np.ones((1, 1, 3)))
    unbatched = clconv.ConvTranspose1d(2, 3, 2, stride=2, backend="numpy")
    y = unbatched(np.ones((2, 4), np.float32))
    assert y.shape == (3, 8) and unbatched.backward(np.ones((3, 8))).shape == (2, 4)
    with pytest.raises(clconv.ShapeError, match=r"grad_output has shape \(3, 7\)"):
        unbatched.backward(np.ones((3, 7)))


@pytest.mark.parametrize("case", GRID, ids=[f"{c[0]}d-{i}" for i, c in enumerate(GRID)])
def test_phase_split_and_input_gradient_primitive_agree(backend, case):
    """Host inputs with dilation 1 run as one forward convolution of the stride phases;
    the backend's conv_transpose primitive (device inputs, dilation) must agree."""
    from clconv._normalize import normalize_conv_transpose
    from clconv.transpose import _phase_plan, run_transpose

    x, w, b, kw, want = _case(case, "float32", seed=4)
    call = normalize_conv_transpose(case[0], x, w, b, kw["stride"], kw["padding"],
                                    kw["output_padding"], kw["groups"], kw["dilation"],
                                    "channels_first")
    direct = clconv.get_backend(backend).conv_transpose(call.x, call.weight, call.bias,
                                                        call.spec)
    np.testing.assert_allclose(np.asarray(direct), want, rtol=1e-4, atol=1e-4)
    assert (_phase_plan(call) is not None) == all(d == 1 for d in per_dim(kw["dilation"],
                                                                          case[0]))
    np.testing.assert_allclose(run_transpose(call, backend), direct, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("case", [
    # (nd, N, C, F, size, k, stride, padding, groups, launches); every phase is above
    # the tiny path's size, so the gemm path runs it
    (2, 2, 16, 16, (9, 10), (4, 4), 2, 1, 2, 1),      # 4 phases of 2x2 taps: one launch
    (3, 1, 16, 16, (6, 7, 8), (2, 2, 2), 2, 0, 1, 1),  # 8 phases of one tap: one launch
    (2, 1, 16, 16, (20, 21), (3, 3), 2, 1, 1, 4),     # 2x2, 2x1, 1x2, 1x1 taps: four
])
def test_equal_phases_share_one_launch(cl_backend, monkeypatch, case, data_format):
    """Stride phases of one shape run as the groups of one gemm launch (a group table
    places each one's window and output), and give the oracle's numbers."""
    import pyopencl as cl

    nd, n, c, f, size, k, stride, padding, groups, launches = case
    rng = np.random.default_rng(12)
    x = rng.standard_normal((n, c, *size)).astype(np.float32)
    w = rng.standard_normal((c, f // groups, *k)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    want = scatter_oracle(x, w, b, (stride,) * nd, ((padding, padding),) * nd, (0,) * nd,
                          groups, (1,) * nd)
    last = data_format == "channels_last"
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if last else x
    kernels = []
    real = cl.enqueue_nd_range_kernel

    def spy(queue, kernel, *args, **kwargs):
        kernels.append(kernel.function_name)
        return real(queue, kernel, *args, **kwargs)

    monkeypatch.setattr(cl, "enqueue_nd_range_kernel", spy)
    got = FUNCS[nd](xin, w, b, stride=stride, padding=padding, groups=groups,
                    data_format=data_format, backend=cl_backend)
    assert kernels == ["conv_gemm"] * launches
    np.testing.assert_allclose(np.moveaxis(got, -1, 1) if last else got, want, rtol=1e-4,
                               atol=1e-4)
    assert (xin == (np.moveaxis(x, 1, -1) if last else x)).all()  # the input is untouched


def _filter_phases_seen(monkeypatch) -> list[int]:
    """The filter-phase count of every OpenCL plan made from now on, in order."""
    from clconv.backends.opencl.backend import OpenCLBackend

    seen: list[int] = []
    real = OpenCLBackend.plan

    def spy(self, choice, spec, layout, limits):
        seen.append(layout.filter_phases)
        return real(self, choice, spec, layout, limits)

    monkeypatch.setattr(OpenCLBackend, "plan", spy)
    return seen


@pytest.mark.parametrize("case", [
    # (nd, N, C, F, size, k, stride, padding, output_padding, groups, bias,
    #  phases along the last axis)
    (3, 1, 32, 16, (6, 7, 9), (2, 2, 2), 2, 0, 0, 1, True, 2),  # U-Net 3-D upsampling
    (2, 2, 16, 16, (9, 13), (2, 2), 2, 0, 0, 1, False, 2),      # row tails of 13 columns
    (2, 1, 16, 32, (12, 16), (2, 2), 2, 0, 0, 2, True, 2),      # two groups
    (1, 2, 16, 16, (301,), (4,), 4, 0, 0, 1, True, 4),          # four phases per run
    (2, 1, 16, 16, (7, 9), (3, 2), 2, 0, 0, 1, True, 2),        # rows of 2 and 1 taps
    (2, 1, 16, 16, (7, 9), (3, 3), 3, 0, 0, 1, True, 1),        # 3 phases: blocks of 16 split
    # 1 and 2 taps along W (k=3, s=2), the 1-tap phase padded with a zero tap
    (2, 1, 16, 16, (12, 20), (3, 3), 2, 1, 1, 1, True, 2),
    # 2 taps each, windows one apart (k=4, s=2, p=1): a third of the products would
    # be zeros, so the phases stay apart
    (2, 1, 16, 16, (12, 20), (4, 4), 2, 1, 0, 1, True, 1),
])
def test_interleaved_phases_store_whole_runs(cl_backend, monkeypatch, case):
    """Where the phases along the last axis read (nearly) one window, they run as one
    convolution whose filters interleave the phases (the gemm path's filter phases)
    over the union of their windows, and give the oracle's numbers."""
    nd, n, c, f, size, k, stride, pad, out_pad, groups, with_bias, phases = case
    rng = np.random.default_rng(14)
    x = rng.standard_normal((n, c, *size)).astype(np.float32)
    w = rng.standard_normal((c, f // groups, *k)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32) if with_bias else None
    want = scatter_oracle(x, w, b, (stride,) * nd, ((pad, pad),) * nd, (out_pad,) * nd,
                          groups, (1,) * nd)
    seen = _filter_phases_seen(monkeypatch)
    got = FUNCS[nd](x, w, b, stride=stride, padding=pad, output_padding=out_pad,
                    groups=groups, backend=cl_backend)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert max(seen) == phases


@pytest.mark.parametrize("how", ["override", "env"])
def test_interleaved_phases_follow_a_forced_path(cl_backend, monkeypatch, how):
    """A forced path (``override`` or ``CLCONV_OPENCL_PATH``) that cannot interleave
    the phases after a call that did: the phases run apart, with the oracle's numbers."""
    from clconv.backends.opencl.paths import override

    rng = np.random.default_rng(16)
    x = rng.standard_normal((1, 32, 6, 7, 9)).astype(np.float32)
    w = rng.standard_normal((32, 16, 2, 2, 2)).astype(np.float32)
    want = scatter_oracle(x, w, None, (2,) * 3, ((0, 0),) * 3, (0,) * 3, 1, (1,) * 3)
    np.testing.assert_allclose(clconv.conv_transpose3d(x, w, stride=2, backend=cl_backend),
                               want, rtol=1e-4, atol=1e-4)
    if how == "env":
        monkeypatch.setenv("CLCONV_OPENCL_PATH", "direct")
        got = clconv.conv_transpose3d(x, w, stride=2, backend=cl_backend)
    else:
        with override("direct"):
            got = clconv.conv_transpose3d(x, w, stride=2, backend=cl_backend)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# Half inputs are widened by the pad pre-pass, so their phases (like their group
# table) are not read in place and run one by one.
@pytest.mark.parametrize("dtype, phases", [("float16", 1), ("float64", 2)])
def test_interleaved_phases_in_other_dtypes(cl_backend, monkeypatch, dtype, phases):
    """Filter phases of doubles (blocks of 8 filters) agree with the oracle, and so
    do half inputs, which run without them."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((1, 32, 20, 24)).astype(dtype)
    w = rng.standard_normal((32, 16, 2, 2)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    want = scatter_oracle(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                          (2, 2), ((0, 0),) * 2, (0, 0), 1, (1, 1))
    seen = _filter_phases_seen(monkeypatch)
    got = clconv.conv_transpose2d(x, w, b, stride=2, backend=cl_backend)
    assert got.dtype == np.dtype(dtype) and max(seen) == phases
    assert_close(got, want, dtype=dtype, reduction=32)


def test_group_table_uploaded_once(cl_backend, monkeypatch):
    """The group table of merged phases is a constant of the memoised plan: the first
    call copies it to the device, repeated calls reuse that buffer, and a problem of
    another size gets its own table (its numbers stay right)."""
    import pyopencl as cl

    rng = np.random.default_rng(13)
    w = rng.standard_normal((16, 16, 4, 4)).astype(np.float32)
    tables = []
    real = cl.Buffer

    def spy(*args, **kwargs):
        host = kwargs.get("hostbuf")
        if isinstance(host, np.ndarray) and host.dtype == np.int64:
            tables.append(host.copy())
        return real(*args, **kwargs)

    monkeypatch.setattr(cl, "Buffer", spy)
    counts = []
    for size in ((9, 10), (9, 10), (9, 10), (11, 7), (9, 10)):
        x = rng.standard_normal((1, 16, *size)).astype(np.float32)
        got = clconv.conv_transpose2d(x, w, stride=2, padding=1, backend=cl_backend)
        want = scatter_oracle(x, w, None, (2, 2), ((1, 1),) * 2, (0, 0), 1, (1, 1))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        counts.append(len(tables))
    assert counts[0] >= 1 and counts[2] == counts[0]  # repeats upload nothing
    assert counts[3] > counts[2] and counts[4] == counts[3]
    assert not np.array_equal(tables[0], tables[counts[2]])


@pytest.mark.parametrize("c, f, k", [(8, 6, 4), (32, 16, 2)])  # 2: interleaved phases
def test_host_inputs_larger_than_the_device_buffer_are_tiled(cl_backend, monkeypatch, c, f, k):
    """Host inputs run as one forward convolution of the stride phases, which the
    forward path splits into pieces that fit the device (lowered here to 64 KiB)."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, c, 40, 50)).astype(np.float32)
    w = rng.standard_normal((c, f, k, k)).astype(np.float32)
    pad = (k - 2) // 2
    want = clconv.conv_transpose2d(x, w, stride=2, padding=pad, backend="numpy")
    # The interleaved case joins its phases while everything fits.
    seen = _filter_phases_seen(monkeypatch)
    np.testing.assert_allclose(clconv.conv_transpose2d(x, w, stride=2, padding=pad,
                                                       backend=cl_backend),
                               want, rtol=1e-4, atol=1e-4)
    assert max(seen) == (2 if k == 2 else 1)
    monkeypatch.setenv("CLCONV_MAX_ALLOC", str(64 * 1024))
    got = clconv.conv_transpose2d(x, w, stride=2, padding=pad, backend=cl_backend)
    assert got.nbytes > 4 * 64 * 1024
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_concurrent_calls_of_one_shape(backend):
    """Threads running transposed convolutions of one shape at once (one memoised
    plan, one kernel object) each get their own, right result."""
    import concurrent.futures

    rng = np.random.default_rng(22)
    w = rng.standard_normal((4, 3, 4, 4)).astype(np.float32)
    xs = [rng.standard_normal((2, 4, 9, 11)).astype(np.float32) for _ in range(8)]
    wants = [scatter_oracle(x, w, None, (2, 2), ((1, 1),) * 2, (0, 0), 1, (1, 1)) for x in xs]

    def one(x):
        return [clconv.conv_transpose2d(x, w, stride=2, padding=1, backend=backend)
                for _ in range(5)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, xs))
    for got, want in zip(results, wants):
        for y in got:
            np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def test_launches_are_planned_once_per_call_shape(cl_backend, monkeypatch):
    """conv_forward_into plans which phases join and how they launch once per call
    shape: repeats reuse it (with new weights, results still right), another shape
    or a forced path plans afresh."""
    from clconv.backends.opencl import backend as backend_module
    from clconv.backends.opencl import paths

    planned = []
    real = backend_module.joining

    def spy(*args, **kwargs):
        planned.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(backend_module, "joining", spy)
    rng = np.random.default_rng(23)
    clconv.get_backend(cl_backend).dctx.forget()  # plans of earlier tests
    counts = []
    for size, forced in [((9, 10), False), ((9, 10), False), ((9, 10), False),
                         ((11, 7), False), ((9, 10), True)]:
        x = rng.standard_normal((1, 6, *size)).astype(np.float32)
        w = rng.standard_normal((6, 5, 4, 4)).astype(np.float32)
        with paths.override("gemm", ob=4) if forced else contextlib.nullcontext():
            got = clconv.conv_transpose2d(x, w, stride=2, padding=1, backend=cl_backend)
        want = scatter_oracle(x, w, None, (2, 2), ((1, 1),) * 2, (0, 0), 1, (1, 1))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        counts.append(len(planned))
    assert counts == [1, 1, 1, 2, 3]


@pytest.mark.parametrize("rank1", [True, False])
def test_phases_on_a_path_that_may_decline_the_weights(cl_backend, rank1):
    """A forced weight-dependent path (separable) runs the phases of a depthwise
    transposed convolution: rank-1 phase kernels take it, others fall back; the
    forced path not supporting the joined phases is no error."""
    from clconv.backends.opencl import paths

    rng = np.random.default_rng(24)
    x = rng.standard_normal((1, 4, 40, 44)).astype(np.float32)
    if rank1:
        w = (rng.standard_normal((4, 1, 6, 1)) * rng.standard_normal((4, 1, 1, 6)))
    else:
        w = rng.standard_normal((4, 1, 6, 6))
    w = w.astype(np.float32)
    with paths.override("separable"):
        got = clconv.conv_transpose2d(x, w, stride=2, padding=2, groups=4, backend=cl_backend)
    want = scatter_oracle(x, w, None, (2, 2), ((2, 2),) * 2, (0, 0), 4, (1, 1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
