"""Hypothesis properties of the convolution on the NumPy reference backend (1-3 D).

Shapes and arguments are drawn at random among valid ones; each property is
an identity that any correct convolution satisfies.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from cases import Case
from hypothesis import given
from hypothesis import strategies as st

NB = "numpy"
NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
TOL = {"rtol": 1e-10, "atol": 1e-10}


@st.composite
def conv_args(draw, max_groups: int = 3) -> Case:
    nd = draw(st.integers(1, 3))
    hi = {1: 12, 2: 7, 3: 4}[nd]
    size = tuple(draw(st.lists(st.integers(1, hi), min_size=nd, max_size=nd)))
    kernel = tuple(draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd)))
    stride = tuple(draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd)))
    dilation = tuple(draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd)))
    groups = draw(st.integers(1, max_groups))
    pad = st.tuples(st.integers(0, 4), st.integers(0, 4))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "full"]),
                             st.lists(pad, min_size=nd, max_size=nd).map(tuple)))
    args = Case(ndim=nd, batch=draw(st.integers(1, 2)),
                channels=groups * draw(st.integers(1, 2)),
                filters=groups * draw(st.integers(1, 2)), groups=groups, size=size,
                kernel=kernel, stride=stride, dilation=dilation, padding=padding,
                padding_mode=draw(st.sampled_from(list(NP_MODE))))
    if not args.valid():
        args = replace(args, padding="full")
    return args


def operands(args: Case, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((args.batch, args.channels, *args.size))
    w = rng.standard_normal((args.filters, args.channels // args.groups, *args.kernel))
    return x, w


def conv(args: Case, x, w, b=None, **changes):
    return args.call(x, w, b, NB, **changes)


seeds = st.integers(0, 2**31 - 1)


@given(args=conv_args(), seed=seeds)
def test_output_shape_formula(args, seed):
    x, w = operands(args, seed)
    y = conv(args, x, w)
    out = tuple((n + b + a - d * (k - 1) - 1) // s + 1 for n, k, s, d, (b, a) in
                zip(args.size, args.kernel, args.stride, args.dilation, args.pads()))
    assert y.shape == (args.batch, args.filters, *out)
    if args.padding == "same":
        assert out == tuple(math.ceil(n / s) for n, s in zip(args.size, args.stride))


@given(args=conv_args(), seed=seeds, a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_linearity(args, seed, a, b):
    x1, w1 = operands(args, seed)
    x2, w2 = operands(args, seed + 1)
    lhs = conv(args, a * x1 + b * x2, w1)
    np.testing.assert_allclose(lhs, a * conv(args, x1, w1) + b * conv(args, x2, w1),
                               rtol=1e-9, atol=1e-9)
    lhs = conv(args, x1, a * w1 + b * w2)
    np.testing.assert_allclose(lhs, a * conv(args, x1, w1) + b * conv(args, x1, w2),
                               rtol=1e-9, atol=1e-9)


@given(args=conv_args(), seed=seeds)
def test_flip_is_correlation_with_flipped_kernel(args, seed):
    x, w = operands(args, seed)
    flipped = w[(Ellipsis, *[slice(None, None, -1)] * args.ndim)]
    np.testing.assert_allclose(conv(args, x, w, flip=True), conv(args, x, flipped), **TOL)


@given(args=conv_args(max_groups=1), seed=seeds, data=st.data())
def test_delta_kernel_returns_padded_cropped_input(args, seed, data):
    """A depthwise kernel with a single 1 at tap t picks padded[t*d + s*i]."""
    x, _ = operands(args, seed)
    tap = tuple(data.draw(st.integers(0, k - 1)) for k in args.kernel)
    c = args.channels
    w = np.zeros((c, 1, *args.kernel))
    w[(slice(None), 0, *tap)] = 1.0
    y = conv(args, x, w, groups=c)
    padded = np.pad(x, [(0, 0), (0, 0), *args.pads()], mode=NP_MODE[args.padding_mode])
    picks = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, s, o in
                  zip(tap, args.dilation, args.stride, y.shape[2:]))
    np.testing.assert_array_equal(y, padded[(slice(None), slice(None), *picks)])


@given(args=conv_args(), seed=seeds)
def test_groups_equal_split_and_concatenate(args, seed):
    x, w = operands(args, seed)
    b = np.random.default_rng(seed).standard_normal(args.filters)
    g, cg, fg = args.groups, args.channels // args.groups, args.filters // args.groups
    parts = [conv(args, x[:, i * cg:(i + 1) * cg], w[i * fg:(i + 1) * fg],
                  b[i * fg:(i + 1) * fg], groups=1) for i in range(g)]
    np.testing.assert_allclose(conv(args, x, w, b), np.concatenate(parts, axis=1), **TOL)


@given(args=conv_args(), seed=seeds, unbatched=st.booleans())
def test_channels_last_equals_transposed_channels_first(args, seed, unbatched):
    x, w = operands(args, seed)
    if unbatched:
        x = x[0]
    first = conv(args, x, w)
    last = conv(args, np.moveaxis(x, -args.ndim - 1, -1), w, data_format="channels_last")
    np.testing.assert_allclose(last, np.moveaxis(first, -args.ndim - 1, -1), **TOL)


@given(args=conv_args(), seed=seeds)
def test_stride_equals_subsampled_stride_1(args, seed):
    x, w = operands(args, seed)
    pads = args.pads()  # 'same' depends on the stride: compare with explicit pads
    strided = conv(args, x, w, padding=tuple(pads))
    dense = conv(args, x, w, padding=tuple(pads), stride=1)
    sub = dense[(slice(None), slice(None), *(slice(None, None, s) for s in args.stride))]
    np.testing.assert_allclose(strided, sub, **TOL)


@given(args=conv_args(), seed=seeds)
def test_unbatched_equals_batch_of_one(args, seed):
    x, w = operands(args, seed)
    np.testing.assert_array_equal(conv(args, x[0], w), conv(args, x[:1], w)[0])
