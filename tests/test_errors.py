"""Bad input, empty input, untouched inputs and NaN/Inf propagation, on every backend.

Each class of mistake raises exactly the class API.md section 6 names for it,
on every backend alike, with a message that names the argument, the value
seen and what was expected.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import clconv
from clconv import ArgumentError, BackendUnavailable, DTypeError, ShapeError

X = np.ones((2, 4, 6, 6), np.float32)
W = np.ones((6, 4, 3, 3), np.float32)


@dataclass
class Mistake:
    """One bad call: how to make it, the exact class, and words the message must contain."""

    name: str
    call: Callable[[str], object]
    cls: type
    words: tuple[str, ...]


def c2(*args, **kw) -> Callable[[str], object]:
    return lambda backend: clconv.conv2d(*args, backend=backend, **kw)


def c1(*args, **kw) -> Callable[[str], object]:
    return lambda backend: clconv.conv1d(*args, backend=backend, **kw)


MISTAKES = [
    # channel / group mismatches
    Mistake("channel-mismatch", c2(X, np.ones((6, 3, 3, 3))), ShapeError,
            ("weight", "(6, 3, 3, 3)", "4 channels", "expected")),
    Mistake("groups-not-dividing-channels", c2(X, np.ones((6, 1, 3, 3)), groups=3), ShapeError,
            ("groups=3", "4 channels", "expected")),
    Mistake("groups-not-dividing-filters", c2(X, np.ones((5, 2, 3, 3)), groups=2), ShapeError,
            ("groups=2", "5 filters", "expected")),
    Mistake("groups-zero", c2(X, W, groups=0), ShapeError, ("groups=0", "expected")),
    Mistake("groups-float", c2(X, W, groups=2.0), ShapeError, ("groups=2.0", "expected")),
    # kernel larger than the padded input == output size below 1
    Mistake("kernel-larger-than-input", c2(X, np.ones((6, 4, 7, 3))), ShapeError,
            ("kernel", "7", "padded input", "6", "expected")),
    Mistake("kernel-larger-than-padded-input", c2(X, np.ones((6, 4, 3, 9)), padding=(0, 1)),
            ShapeError, ("kernel", "9", "8", "expected")),
    Mistake("dilated-kernel-output-below-1", c1(np.ones((1, 1, 5)), np.ones((1, 1, 3)),
                                                dilation=3), ShapeError,
            ("dilation 3", "7", "5", "expected")),
    # stride, dilation and padding values
    Mistake("stride-zero", c2(X, W, stride=0), ShapeError, ("stride=0", ">= 1")),
    Mistake("stride-negative-in-tuple", c2(X, W, stride=(1, -2)), ShapeError,
            ("stride=(1, -2)", ">= 1")),
    Mistake("stride-wrong-length", c2(X, W, stride=(1, 2, 3)), ShapeError,
            ("stride=(1, 2, 3)", "tuple of 2")),
    Mistake("stride-float", c2(X, W, stride=1.5), ShapeError, ("stride=1.5", "int")),
    Mistake("dilation-zero", c2(X, W, dilation=0), ShapeError, ("dilation=0", ">= 1")),
    Mistake("dilation-negative", c1(np.ones((1, 1, 5)), np.ones((1, 1, 2)), dilation=(-1,)),
            ShapeError, ("dilation=(-1,)", ">= 1")),
    Mistake("padding-negative", c2(X, W, padding=-1), ShapeError,
            ("padding=-1", "non-negative")),
    Mistake("padding-negative-pair", c2(X, W, padding=(1, (0, -2))), ShapeError,
            ("padding=(1, (0, -2))", "non-negative")),
    Mistake("padding-pair-for-conv1d", c1(np.ones((1, 1, 5)), np.ones((1, 1, 3)),
                                          padding=(1, 2)), ShapeError,
            ("padding=(1, 2)", "tuple of 1")),
    Mistake("padding-tuple-too-long", c2(X, W, padding=(1, 1, 1)), ShapeError,
            ("padding=(1, 1, 1)", "tuple of 2")),
    Mistake("padding-triple-entry", c2(X, W, padding=(1, (1, 2, 3))), ShapeError,
            ("padding=(1, (1, 2, 3))", "(before, after)")),
    # unknown option strings
    Mistake("padding-unknown-string", c2(X, W, padding="half"), ArgumentError,
            ("padding='half'", "'same'")),
    Mistake("padding-mode-unknown", c2(X, W, padding_mode="mirror"), ArgumentError,
            ("padding_mode='mirror'", "'reflect'", "'circular'")),
    Mistake("padding-mode-not-a-string", c2(X, W, padding_mode=None), ArgumentError,
            ("padding_mode=None", "'zeros'")),
    Mistake("data-format-unknown", c2(X, W, data_format="NHWC"), ArgumentError,
            ("data_format='NHWC'", "channels_last")),
    Mistake("flip-not-bool", c2(X, W, flip="yes"), ArgumentError, ("flip='yes'", "True")),
    # ranks
    Mistake("input-rank-too-low", c2(np.ones((6, 6)), W), ShapeError,
            ("input", "(6, 6)", "4 dims", "conv2d")),
    Mistake("input-rank-too-high", c2(np.ones((1, 1, 4, 6, 6)), W), ShapeError,
            ("input", "(1, 1, 4, 6, 6)", "4 dims")),
    Mistake("weight-rank", c2(X, np.ones((6, 4, 3))), ShapeError,
            ("weight", "(6, 4, 3)", "4 dims")),
    Mistake("conv1d-given-an-image", c1(X, W), ShapeError, ("input", "(2, 4, 6, 6)", "3 dims")),
    # bias
    Mistake("bias-wrong-length", c2(X, W, np.ones(5)), ShapeError, ("bias", "(5,)", "(6,)")),
    Mistake("bias-2d", c2(X, W, np.ones((6, 1))), ShapeError, ("bias", "(6, 1)", "(6,)")),
    # dtypes
    Mistake("complex-input", c2(X.astype(np.complex64), W), DTypeError,
            ("input", "complex64", "real numeric")),
    Mistake("complex-weight", c2(X, W.astype(complex)), DTypeError,
            ("weight", "complex128", "real numeric")),
    Mistake("complex-bias", c2(X, W, np.ones(6, complex)), DTypeError,
            ("bias", "complex128", "real numeric")),
    Mistake("object-input", c2(X.astype(object), W), DTypeError, ("input", "object")),
    Mistake("string-input", c2(np.full((2, 4, 6, 6), "a"), W), DTypeError, ("input", "<U1")),
    Mistake("bytes-weight", c2(X, np.full((6, 4, 3, 3), b"a")), DTypeError, ("weight", "S1")),
    Mistake("datetime-input", c2(np.zeros((2, 4, 6, 6), "datetime64[s]"), W), DTypeError,
            ("input", "datetime64")),
    # empty axes that are errors
    Mistake("zero-channels", c2(np.ones((2, 0, 6, 6)), np.ones((6, 0, 3, 3))), ShapeError,
            ("input", "(2, 0, 6, 6)", "0 channels")),
    Mistake("zero-spatial", c2(np.ones((2, 4, 0, 6)), W), ShapeError,
            ("input", "(2, 4, 0, 6)", "spatial")),
    Mistake("zero-kernel", c2(X, np.ones((6, 4, 0, 3))), ShapeError,
            ("weight", "(6, 4, 0, 3)", "kernel")),
    # wrappers
    Mistake("convolve-mode", lambda b: clconv.convolve([1, 2], [1], "middle", backend=b),
            ArgumentError, ("mode='middle'", "'valid'")),
    Mistake("convolve-2d-input", lambda b: clconv.convolve(np.ones((2, 2)), [1], backend=b),
            ShapeError, ("a", "(2, 2)", "1 dims")),
    Mistake("convolve-empty", lambda b: clconv.convolve([], [1.0], backend=b), ShapeError,
            ("a", "(0,)", "non-empty")),
    Mistake("convolve-object", lambda b: clconv.convolve(np.array([1, None], dtype=object),
                                                          [1.0], backend=b), DTypeError,
            ("a", "object")),
    Mistake("convolve2d-boundary", lambda b: clconv.convolve2d(
        np.ones((3, 3)), np.ones((2, 2)), boundary="reflect", backend=b), ArgumentError,
        ("boundary='reflect'", "'symm'")),
    Mistake("correlate2d-mode", lambda b: clconv.correlate2d(
        np.ones((3, 3)), np.ones((2, 2)), mode="half", backend=b), ArgumentError,
        ("mode='half'", "'same'")),
    Mistake("correlate2d-complex-fill", lambda b: clconv.correlate2d(
        np.ones((3, 3)), np.ones((2, 2)), fillvalue=1j, backend=b), ArgumentError,
        ("fillvalue=1j", "real")),
    Mistake("correlate2d-valid-neither-fits", lambda b: clconv.correlate2d(
        np.ones((3, 5)), np.ones((4, 2)), mode="valid", backend=b), ShapeError,
        ("(3, 5)", "(4, 2)", "valid")),
    Mistake("convolve2d-1d-input", lambda b: clconv.convolve2d(
        np.ones(3), np.ones((2, 2)), backend=b), ShapeError, ("in1", "(3,)", "2 dims")),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_bad_input_raises_documented_class(backend, mistake):
    with pytest.raises(clconv.ClconvError) as info:
        mistake.call(backend)
    assert type(info.value) is mistake.cls, (type(info.value), str(info.value))
    message = str(info.value)
    for word in mistake.words:
        assert word in message, (word, message)


@pytest.mark.parametrize("name,words", [
    ("cuda", ("'cuda'", "unknown", "numpy")),
    ("numpy:fast", ("'numpy:fast'", "option")),
    ("opencl:9:9", ("opencl:9:9",)),
    ("", ("''",)),
])
def test_unknown_backend_name(name, words):
    with pytest.raises(BackendUnavailable) as info:
        clconv.conv2d(X, W, backend=name)
    assert type(info.value) is BackendUnavailable
    for word in words:
        assert word in str(info.value)


def test_error_classes_have_documented_bases():
    assert issubclass(ArgumentError, clconv.ClconvError) and issubclass(ArgumentError, ValueError)
    assert issubclass(ShapeError, ArgumentError)
    assert issubclass(DTypeError, ArgumentError) and issubclass(DTypeError, TypeError)
    assert issubclass(BackendUnavailable, RuntimeError)
    assert issubclass(clconv.KernelBuildError, RuntimeError)
    assert issubclass(clconv.AllocationError, MemoryError)


# ---------------------------------------------------------------- empty results

@pytest.mark.parametrize("dtype,expected", [(np.float32, np.float32), (np.float16, np.float16),
                                            (np.float64, np.float64), (np.uint8, np.float32)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_empty_batch_and_zero_filters(backend, nd, channels_last, dtype, expected):
    conv = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}[nd]
    size = (5, 6, 4)[:nd]
    fmt = "channels_last" if channels_last else "channels_first"

    def layout(n, c, spatial):
        return (n, *spatial, c) if channels_last else (n, c, *spatial)

    out_size = tuple(n - 1 for n in size)  # kernel 2, stride 1, no padding
    w = np.ones((4, 3, *(2,) * nd), np.float32)
    y = conv(np.ones(layout(0, 3, size), dtype), w, np.zeros(4), data_format=fmt,
             backend=backend)
    assert y.shape == layout(0, 4, out_size) and y.dtype == expected
    y = conv(np.ones(layout(2, 3, size), dtype), w[:0], np.zeros(0), data_format=fmt,
             backend=backend)
    assert y.shape == layout(2, 0, out_size) and y.dtype == expected
    # unbatched, zero filters, with stride and 'same' padding
    x = np.ones(layout(2, 3, size), dtype)[0]
    y = conv(x, w[:0], stride=2, padding="same", data_format=fmt, backend=backend)
    half = tuple(-(-n // 2) for n in size)
    assert y.shape == layout(1, 0, half)[1:] and y.dtype == expected


# ---------------------------------------------------------------- inputs never modified

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int16])
@pytest.mark.parametrize("layout", ["contiguous", "reversed", "readonly", "channels_last"])
def test_inputs_never_modified(backend, dtype, layout):
    rng = np.random.default_rng(7)
    base = (rng.standard_normal((2, 4, 7, 6)) * 4).astype(dtype)
    fmt = "channels_first"
    if layout == "reversed":
        x = base[:, ::-1, ::-1, ::2]
    elif layout == "readonly":
        x = base.copy()
        x.flags.writeable = False
    elif layout == "channels_last":
        x = np.moveaxis(base, 1, -1)
        fmt = "channels_last"
    else:
        x = base
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)[:, :, ::-1]
    b = rng.standard_normal(4)
    copies = [a.copy() for a in (x, w, b)]
    flags = [(a.flags.writeable, a.flags.c_contiguous, a.strides) for a in (x, w, b)]
    for mode in ("zeros", "reflect", "replicate", "circular"):
        y = clconv.conv2d(x, w, b, padding=2, groups=2, padding_mode=mode, flip=True,
                          data_format=fmt, backend=backend)
        assert np.all(np.isfinite(y))
    for a, copy, flag in zip((x, w, b), copies, flags):
        np.testing.assert_array_equal(a, copy)
        assert (a.flags.writeable, a.flags.c_contiguous, a.strides) == flag
    # the result never aliases an input
    assert not np.shares_memory(y, x) and not np.shares_memory(y, w)


def test_signal_wrappers_do_not_modify_inputs(backend):
    a = np.arange(12.0).reshape(3, 4)
    k = np.array([[1.0, -2.0], [0.5, 3.0]])
    ca, ck = a.copy(), k.copy()
    for boundary in ("fill", "wrap", "symm"):
        clconv.convolve2d(a, k, "same", boundary, backend=backend)
        clconv.correlate2d(a, k, "full", boundary, backend=backend)
    clconv.convolve(a[0], k[0], backend=backend)
    np.testing.assert_array_equal(a, ca)
    np.testing.assert_array_equal(k, ck)


# ---------------------------------------------------------------- NaN / Inf

NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
           "circular": "wrap"}


def _touched(mask: np.ndarray, kernel, stride, dilation, pads, mode) -> np.ndarray:
    """Which outputs have a receptive field containing a True of ``mask`` (H, W)."""
    padded = np.pad(mask, pads, mode=NP_MODE[mode]) if mode != "zeros" else np.pad(mask, pads)
    out = [(padded.shape[i] - dilation * (kernel[i] - 1) - 1) // stride + 1 for i in range(2)]
    hit = np.zeros(out, dtype=bool)
    for i, j in itertools.product(range(out[0]), range(out[1])):
        field = padded[i * stride:i * stride + dilation * (kernel[0] - 1) + 1:dilation,
                       j * stride:j * stride + dilation * (kernel[1] - 1) + 1:dilation]
        hit[i, j] = field.any()
    return hit


@pytest.mark.parametrize("mode", list(NP_MODE))
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_nan_and_inf_propagate_exactly(backend, mode, stride, dilation, dtype):
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (1, 2, 9, 8)).astype(dtype)
    nan_at, inf_at = (0, 0, 0, 2), (0, 1, 5, 7)  # a border pixel and an inner one
    x[nan_at] = np.nan
    x[inf_at] = np.inf
    # every weight positive, so a single +inf in a field gives exactly +inf
    w = rng.uniform(0.25, 1.0, (3, 1, 3, 2)).astype(np.float32)
    pads = ((2, 1), (1, 3))
    # channel 0 carries the NaN, channel 1 the Inf; groups=2 keeps them apart
    w2 = np.concatenate([w, w], axis=0)  # 6 filters, 3 per group
    y = clconv.conv2d(x, w2, stride=stride, dilation=dilation, padding=pads,
                      padding_mode=mode, groups=2, backend=backend)[0]
    nan_mask = np.zeros((9, 8), bool)
    nan_mask[nan_at[2:]] = True
    inf_mask = np.zeros((9, 8), bool)
    inf_mask[inf_at[2:]] = True
    nan_hit = _touched(nan_mask, (3, 2), stride, dilation, pads, mode)
    inf_hit = _touched(inf_mask, (3, 2), stride, dilation, pads, mode)
    assert nan_hit.any() and (~nan_hit).any() and inf_hit.any() and (~inf_hit).any()
    for f in range(3):
        np.testing.assert_array_equal(np.isnan(y[f]), nan_hit)
        assert np.all(np.isfinite(y[f][~nan_hit]))
        np.testing.assert_array_equal(np.isposinf(y[3 + f]), inf_hit)
        assert np.all(np.isfinite(y[3 + f][~inf_hit]))


def test_nan_in_weight_and_bias(backend):
    x = np.ones((1, 2, 5), np.float32)
    w = np.ones((3, 2, 2), np.float32)
    w[1, 0, 1] = np.nan
    b = np.array([0.0, 0.0, np.inf], np.float32)
    y = clconv.conv1d(x, w, b, backend=backend)[0]
    np.testing.assert_array_equal(y[0], 4.0)
    assert np.all(np.isnan(y[1]))
    assert np.all(np.isposinf(y[2]))


# ---------------------------------------------------------------- huge but valid values

@pytest.mark.parametrize("kw", [
    dict(stride=2**31), dict(stride=(2**40, 1)), dict(stride=2**70),
    dict(dilation=(2**31, 1), kernel=(1, 3)), dict(dilation=2**40, stride=2**40, kernel=(1, 1)),
], ids=["stride-2^31", "stride-2^40-one-axis", "stride-2^70", "dilation-2^31-k1",
        "dilation-and-stride-2^40-k1"])
def test_huge_stride_and_dilation_are_valid_on_every_backend(backend, kw):
    """A stride beyond the padded input leaves one output; a dilation of a size-1 kernel
    axis changes nothing. Both are valid values (>= 1) and must give the same numbers
    on every backend, not an integer overflow inside one of them."""
    kw = dict(kw)
    kernel = kw.pop("kernel", (3, 3))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, *kernel)).astype(np.float32)
    y = clconv.conv2d(x, w, padding=1, backend=backend, **kw)
    stride = kw.get("stride", 1)
    stride = stride if isinstance(stride, tuple) else (stride, stride)
    dil = kw.get("dilation", 1)
    dil = dil if isinstance(dil, tuple) else (dil, dil)
    # same numbers as the equivalent small arguments
    small_stride = tuple(min(s, 99) for s in stride)
    small_dil = tuple(1 if k == 1 else d for k, d in zip(kernel, dil))
    want = clconv.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1,
                         stride=small_stride, dilation=small_dil, backend="numpy")
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
