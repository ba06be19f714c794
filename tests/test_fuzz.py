"""A fuzzer over the whole argument space of conv1d/2d/3d, on every backend.

Hypothesis draws every argument from a mix of valid values, edge values
(zeros, ones, huge and negative ints) and plain mistakes (wrong types, wrong
dtypes, wrong lengths, strings, None, floats for ints, bools, channels-last
data described as channels-first). For each draw the only allowed outcomes:

* a result with the documented dtype and shape whose numbers equal the
  float64 NumPy oracle exactly (operands are small integers or halves, so
  every backend's sums are exact in every result dtype); or
* a documented :class:`clconv.ClconvError` subclass.

Any other exception type fails the test; a crash kills the run and a hang
trips the timeout. The inputs are compared byte for byte before and after
the call. ``CLCONV_MAX_HOST_BYTES`` is set to 256 MiB so that huge paddings
are refused (``AllocationError``) the same way on every machine instead of
allocating gigabytes.

CI runs the ``ci`` profile (conftest); ``HYPOTHESIS_PROFILE=long`` runs the
long one: ``HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

import clconv
from clconv.testing import oracle

CONVS = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}
# Draws per backend: five times the profile's count (the ci profile: 200).
EXAMPLES = settings().max_examples * 5
HOST_LIMIT = 256 * 2**20
# About 25 ms a draw on PoCL; generous so that only a real hang trips it.
TIMEOUT = max(300, EXAMPLES // 5)

NUMERIC = ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint16", "bool"]
NON_NUMERIC = ["complex64", "complex128", "object", "U3", "S2", "datetime64[s]", "timedelta64[s]"]
HUGE = [2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, 2**64, 10**30]

small_ints = st.integers(min_value=0, max_value=4)
edge_ints = st.sampled_from([-(2**63), -(2**31), -2, -1, 0, 1, 2, 3, *HUGE])
int_like = st.one_of(
    small_ints, edge_ints,
    st.sampled_from([np.int64(2), np.int32(1), np.uint8(3), 1.0, 2.5, True, False, "1", None,
                     float("nan"), b"x", object()]))


def per_dim(ndim: int, item: st.SearchStrategy) -> st.SearchStrategy:
    """One value, a tuple/list of about ``ndim`` values, or a nested mistake."""
    length = st.sampled_from([ndim, ndim, ndim, 0, ndim - 1, ndim + 1])
    return st.one_of(
        item,
        length.flatmap(lambda n: st.lists(item, min_size=max(n, 0), max_size=max(n, 0))),
        length.flatmap(lambda n: st.tuples(*[item] * max(n, 0))),
        st.just([[1, 2, 3]]), st.just({"stride": 1}), st.just(np.array([1] * ndim)))


def padding_for(ndim: int) -> st.SearchStrategy:
    pair = st.one_of(st.tuples(small_ints, small_ints), st.tuples(int_like, int_like),
                     st.lists(small_ints, min_size=1, max_size=3))
    entry = st.one_of(small_ints, pair, int_like)
    return st.one_of(
        small_ints, int_like,
        st.sampled_from(["valid", "same", "full", "SAME", "Full", "", "bogus", "same "]),
        per_dim(ndim, entry))


def values(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """Small integers (halves for floats) of ``dtype``: sums stay exact everywhere."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.startswith("uint"):
        return rng.integers(0, 4, shape).astype(dtype)
    if dtype.startswith("int"):
        return rng.integers(-3, 4, shape).astype(dtype)
    if dtype.startswith("float"):
        return (rng.integers(-4, 5, shape) / 2).astype(dtype)
    if dtype.startswith("complex"):
        return (rng.integers(-2, 3, shape) + 1j).astype(dtype)
    if dtype == "object":
        return np.full(shape, 1, dtype=object)
    return np.zeros(shape, dtype=dtype)


@st.composite
def operand(draw: Any, shape: tuple[int, ...], wild: bool) -> Any:
    """An array of ``shape`` with a numeric dtype, or (``wild``) anything at all."""
    kinds = ["array", "array", "view", "list"] + (["junk"] * 3 if wild else [])
    kind = draw(st.sampled_from(kinds))
    dtype = draw(st.sampled_from(NUMERIC + (NON_NUMERIC if wild else [])))
    seed = draw(st.integers(0, 2**16))
    if kind == "junk":
        return draw(st.sampled_from([None, "abc", 3.5, 7, [[1, 2], [3]], {"a": 1}, b"xy",
                                     [None, None], object()]))
    arr = values(shape, dtype, seed)
    if kind == "list":
        return arr.tolist()
    if kind == "view" and arr.ndim and arr.size:
        # A non-contiguous, negatively strided view of a bigger array.
        return np.repeat(arr, 2, axis=-1)[..., ::-2][..., ::-1]
    return arr


@dataclass
class Call:
    """One fuzzed call: its (possibly malformed) operands and keyword arguments.

    Unlike ``cases.Case``, which describes valid convolutions by shape, this
    holds the drawn values themselves, junk included.
    """

    ndim: int
    x: Any
    w: Any
    b: Any
    kwargs: dict = field(default_factory=dict)
    on_device: frozenset = frozenset()  # operands uploaded first on OpenCL backends


WILD_FIELDS = ["x", "w", "b", "x_shape", "w_shape", "stride", "dilation", "padding", "groups",
               "padding_mode", "data_format", "flip"]


@st.composite
def cases(draw: Any) -> Call:
    """Half the draws are well-formed calls; the others get one to three wild arguments."""
    wild = draw(st.one_of(st.just(frozenset()),
                          st.frozensets(st.sampled_from(WILD_FIELDS), min_size=1, max_size=3)))
    ndim = draw(st.sampled_from([1, 2, 3]))
    batch = draw(st.sampled_from([None, 0, 1, 1, 2, 3]))  # None: unbatched
    last = draw(st.booleans())
    groups: Any = draw(st.sampled_from([1, 1, 1, 2, 3]))
    channels = groups * draw(st.sampled_from([1, 1, 2, 3]))
    filters = groups * draw(st.sampled_from([0, 1, 1, 2, 3]))
    spatial = tuple(draw(st.sampled_from([1, 2, 3, 4, 5, 7])) for _ in range(ndim))
    kernel = tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in range(ndim))
    if "x_shape" in wild:
        channels = draw(st.sampled_from([0, channels + 1, channels]))
        spatial = tuple(draw(st.sampled_from([0, n])) for n in spatial)
    x_shape = (*spatial, channels) if last else (channels, *spatial)
    if batch is not None:
        x_shape = (batch, *x_shape)
    if "x_shape" in wild:
        x_shape = draw(st.sampled_from([x_shape, x_shape[1:], (*x_shape, 1), (1, 1, *x_shape)]))
    w_shape = (filters, channels // groups, *kernel)
    if "w_shape" in wild:
        w_shape = draw(st.sampled_from([
            (filters, channels // groups + 1, *kernel), (filters, channels, *kernel),
            (filters + 1, channels // groups, *kernel), (filters, channels // groups),
            (1, *w_shape), (filters, channels // groups, *(0,) * ndim)]))
    x = draw(operand(x_shape, "x" in wild))
    w = draw(operand(w_shape, "w" in wild))
    b = None
    if "b" in wild:
        b = draw(st.one_of(operand((filters + 1,), True), operand((filters,), True),
                           operand((1, filters), False)))
    elif draw(st.booleans()):
        b = draw(operand((filters,), False))

    valid: dict[str, st.SearchStrategy] = {
        "stride": st.one_of(st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * ndim)),
        "dilation": st.one_of(st.integers(1, 2), st.lists(st.integers(1, 2), min_size=ndim,
                                                          max_size=ndim)),
        "padding": st.one_of(
            st.integers(0, 3), st.sampled_from(["valid", "same", "full", "SAME", "Full"]),
            st.tuples(*[st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3),
                                                               st.integers(0, 3)))] * ndim)),
        "groups": st.just(groups),
        "padding_mode": st.sampled_from(["zeros", "reflect", "replicate", "circular",
                                         "Circular"]),
        "data_format": st.just("channels_last" if last else "channels_first"),
        "flip": st.sampled_from([False, True, np.bool_(True)]),
    }
    invalid: dict[str, st.SearchStrategy] = {
        "stride": per_dim(ndim, int_like),
        "dilation": per_dim(ndim, int_like),
        "padding": padding_for(ndim),
        "groups": int_like,
        "padding_mode": st.sampled_from(["mirror", "", None, 0, "zero", "edge", "symmetric"]),
        "data_format": st.sampled_from(["channels_first", "channels_last", "NCHW", None, 1,
                                        "CHANNELS_LAST"]),
        "flip": st.sampled_from([0, 1, "yes", None, 1.0]),
    }
    kwargs: dict[str, Any] = {}
    for name in valid:
        if name in wild:
            kwargs[name] = draw(invalid[name])
        elif name in ("groups", "data_format") or draw(st.booleans()):
            kwargs[name] = draw(valid[name])
    on_device = draw(st.one_of(st.just(frozenset()), st.frozensets(st.sampled_from("xwb"))))
    return Call(ndim, x, w, b, kwargs, on_device)


def snapshot(obj: Any) -> Any:
    """Something that equals itself only while ``obj`` is unchanged."""
    if isinstance(obj, np.ndarray):
        return (obj.dtype.str, obj.shape, obj.strides, obj.tobytes() if obj.dtype != object
                else repr(obj.tolist()))
    return repr(obj)


def upload(case: Call, backend: str) -> tuple[Any, Any, Any]:
    """The operands, with those named in ``case.on_device`` uploaded on OpenCL backends."""
    operands = [case.x, case.w, case.b]
    if backend.startswith("opencl"):
        for i, name in enumerate("xwb"):
            value = operands[i]
            if (name in case.on_device and isinstance(value, np.ndarray) and value.size
                    and value.dtype.kind in "biuf"):
                operands[i] = clconv.to_device(value, backend=backend)
    return tuple(operands)


def check_case(case: Call, backend: str) -> str:
    """Run one case; return ``"ok"`` or the ClconvError class name. Fails on anything else."""
    conv = CONVS[case.ndim]
    before = [snapshot(v) for v in (case.x, case.w, case.b)]
    note(f"conv{case.ndim}d x={getattr(case.x, 'shape', case.x)!r} "
         f"x.dtype={getattr(case.x, 'dtype', None)} w={getattr(case.w, 'shape', case.w)!r} "
         f"w.dtype={getattr(case.w, 'dtype', None)} b={getattr(case.b, 'shape', case.b)!r} "
         f"kwargs={case.kwargs!r} on_device={sorted(case.on_device)}")
    x, w, b = upload(case, backend)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning is an unexpected outcome too
            y = conv(x, w, b, backend=backend, **case.kwargs)
    except clconv.ClconvError as exc:
        outcome = type(exc).__name__
        assert str(exc), "a clconv error must say what was wrong"
    else:
        outcome = "ok"
        if hasattr(y, "queue"):
            assert hasattr(x, "queue"), "a host input must give a host result"
            y = y.get()
        ref = oracle(conv, case.x, case.w, case.b, **case.kwargs)
        want_dtype = clconv._normalize.result_dtype(np.asarray(case.x).dtype)
        assert y.dtype == want_dtype, (y.dtype, want_dtype)
        assert y.shape == ref.shape
        np.testing.assert_array_equal(np.asarray(y, dtype=np.float64), ref)
    for value, device_value in zip((case.x, case.w, case.b), (x, w, b)):
        if device_value is not value:  # the device copy is unchanged too
            np.testing.assert_array_equal(device_value.get(), value)
    assert [snapshot(v) for v in (case.x, case.w, case.b)] == before, "an input was modified"
    return outcome


@pytest.fixture
def bounded_host(monkeypatch):
    monkeypatch.setenv("CLCONV_MAX_HOST_BYTES", str(HOST_LIMIT))


@pytest.mark.timeout(TIMEOUT)
@settings(max_examples=EXAMPLES)
@given(case=cases())
def test_fuzz_any_arguments(backend, bounded_host, case):
    """Every draw gives the oracle's numbers or a documented clconv error."""
    check_case(case, backend)


def expected_single_pixel(ndim: int, channels: int, k: int, pad: int, stride: int,
                          dilation: int) -> np.ndarray:
    """conv of a one-pixel all-ones input with an all-ones kernel, by index arithmetic."""
    out = (2 * pad + 1 - (k - 1) * dilation - 1) // stride + 1
    o = np.arange(out, dtype=object)
    hits = sum((o * stride + t * dilation == pad).astype(np.int64) for t in range(k))
    y = np.full((), float(channels))
    for _ in range(ndim):
        y = np.multiply.outer(y, hits)
    return y


@pytest.mark.timeout(120)
@settings(max_examples=max(EXAMPLES // 2, 20))
@given(ndim=st.sampled_from([1, 2, 3]), pad=st.sampled_from([0, 1, 2**30, *HUGE]),
       stride=st.sampled_from([1, 2, 2**30, *HUGE]), dilation=st.sampled_from([1, 2, *HUGE]),
       k=st.sampled_from([1, 2]), channels=st.sampled_from([1, 8]))
def test_fuzz_huge_padding_stride_dilation(backend, bounded_host, ndim, pad, stride, dilation, k,
                                           channels):
    """Padding, stride and dilation near and beyond 2**31: a ShapeError or AllocationError
    before any allocation, or the exact result; never OverflowError, a crash or a hang."""
    x = np.ones((1, channels, *(1,) * ndim), np.float32)
    w = np.ones((1, channels, *(k,) * ndim), np.float32)
    try:
        y = CONVS[ndim](x, w, padding=pad, stride=stride, dilation=dilation, backend=backend)
    except (clconv.AllocationError, clconv.ShapeError) as exc:
        assert "expected" in str(exc)
    else:  # only reachable when everything fits the 256 MiB budget
        assert y.size * 4 <= HOST_LIMIT
        want = expected_single_pixel(ndim, channels, k, pad, stride, dilation)
        np.testing.assert_array_equal(y[0, 0], want)


JUNK = [None, "abc", 3.5, 7, [[1, 2], [3]], {"a": 1}, b"xy", object(), True, np.float32(2),
        -1, 0, 2**40, float("nan"), "same", "FULL", "wrap", (1, 2)]


@st.composite
def any_array(draw: Any) -> Any:
    """A 0- to 3-D array of any dtype (small values), or junk."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(JUNK))
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 5]), min_size=0, max_size=3)))
    return values(shape, draw(st.sampled_from(NUMERIC * 2 + NON_NUMERIC)), draw(st.integers(0, 99)))


def wild(valid: list) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(valid), st.sampled_from(JUNK))


@pytest.mark.timeout(TIMEOUT)
@settings(max_examples=EXAMPLES)
@given(which=st.sampled_from(["convolve", "convolve2d", "correlate2d", "filter2d", "backward"]),
       a=any_array(), b=any_array(), mode=wild(["full", "same", "valid"]),
       boundary=wild(["fill", "wrap", "symm"]), fill=st.one_of(st.floats(-4, 4), st.just(1)),
       stride=wild([1, 2, 3]), padding=wild(["same", "valid", 0, 1]),
       padding_mode=wild(["reflect", "zeros", "replicate", "circular"]))
# Found by CI's run: 0 * (2**40 as float16, inf) is nan, not numpy.convolve's 0.
@example(which="convolve", a=np.float16(0.0), b=2**40, mode="full", boundary="fill", fill=1,
         stride=1, padding="same", padding_mode="reflect")
# Found by the long profile: 2**40 * 2**40 wraps to NumPy's int64 0, without a warning.
@example(which="convolve", a=2**40, b=2**40, mode="full", boundary="fill", fill=1,
         stride=1, padding="same", padding_mode="reflect")
def test_fuzz_wrappers_filters_and_backward(backend, bounded_host, which, a, b, mode, boundary,
                                            fill, stride, padding, padding_mode):
    """convolve / convolve2d / correlate2d / filter2d / conv_backward with any arguments: a
    result (the wrappers: NumPy's result dtype; the others: the layers' float rule) or a
    ClconvError; inputs unchanged."""
    before = [snapshot(v) for v in (a, b)]
    calls = {
        "convolve": lambda: clconv.convolve(a, b, mode, backend=backend),
        "convolve2d": lambda: clconv.convolve2d(a, b, mode, boundary, fill, backend=backend),
        "correlate2d": lambda: clconv.correlate2d(a, b, mode, boundary, fill, backend=backend),
        "filter2d": lambda: clconv.filter2d(a, b, stride=stride, padding=padding,
                                            padding_mode=padding_mode, backend=backend),
        "backward": lambda: clconv.conv_backward(a, b, a, stride=stride, padding=padding,
                                                 padding_mode=padding_mode, backend=backend),
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # NumPy's own warning when a huge weight is cast to float16 (it becomes inf, as
            # documented); any other warning is unexpected.
            warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
            out = calls[which]()
    except clconv.ClconvError as exc:
        assert str(exc)
    else:
        wrapper = which in ("convolve", "convolve2d", "correlate2d")
        for y in out if isinstance(out, tuple) else (out,):
            if wrapper:  # NumPy's and SciPy's rule
                assert np.asarray(y).dtype == np.result_type(np.asarray(a), np.asarray(b))
            else:        # the layers' rule
                assert y is None or np.asarray(y).dtype.kind == "f"
        if which == "convolve":  # small integers / halves: exact against NumPy
            # Both operands converted to the result dtype (a huge `b` next to a float16
            # `a` is inf, and 0 * inf is nan), then numpy.convolve in float64 (exact for
            # these values; complex128 for complex ones), rounded to that dtype.
            # Integers and bools: numpy.convolve itself, in that dtype (it wraps around).
            res = np.asarray(out).dtype
            wide = res if res.kind in "biu" else (
                np.complex128 if res.kind == "c" else np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                a64, b64 = (np.asarray(v).astype(res).astype(wide) for v in (a, b))
                want = np.convolve(a64, b64, mode.lower())  # clconv's modes: any case
                want = want.astype(res)
            np.testing.assert_array_equal(np.asarray(out), want)
    assert [snapshot(v) for v in (a, b)] == before, "an input was modified"


def test_fuzz_profiles_are_registered():
    """The ci profile bounds CI; the long profile (HYPOTHESIS_PROFILE=long) goes further."""
    assert settings.get_profile("ci").max_examples < settings.get_profile("long").max_examples
