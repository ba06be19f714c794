"""The cache of validated calls: a repeated call reuses its spec, and nothing that
validation would reject or decide differently slips through it."""

from __future__ import annotations

import numpy as np
import pytest

import clconv
from clconv import _normalize
from clconv.errors import AllocationError, ArgumentError


def _args(**kw):
    args = dict(stride=1, padding=1, dilation=1, groups=1, padding_mode="zeros",
                data_format="channels_first", flip=False)
    args.update(kw)
    return args


def _call(x, w, b=None, **kw):
    a = _args(**kw)
    return _normalize.normalize_conv(2, x, w, b, a["stride"], a["padding"], a["dilation"],
                                     a["groups"], a["padding_mode"], a["data_format"],
                                     a["flip"])


def test_a_repeated_call_reuses_its_spec(rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    first = _call(x, w)
    again = _call(x + 1, w)
    assert again.spec is first.spec
    assert again.x is not first.x and np.array_equal(again.x, x + 1)
    other = _call(x[:, :, :8], w)  # another shape: a spec of its own
    assert other.spec.in_size == (8, 8) and other.spec is not first.spec


def test_unbatched_and_cast_operands_on_a_hit(rng):
    x = rng.integers(0, 5, (3, 7, 6)).astype(np.int16)  # unbatched, cast to float32
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    for _ in range(2):
        call = _call(x, w)
        assert call.unbatched and call.x.shape == (1, 3, 7, 6)
        assert call.x.dtype == np.float32 and np.array_equal(call.x[0], x)
    y = clconv.conv2d(x, w, padding=1, backend="numpy")
    assert y.shape == (2, 7, 6)


def test_a_hit_passes_ready_operands_on_and_converts_the_others(rng):
    x = rng.standard_normal((1, 3, 7, 6)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    for _ in range(2):  # the spec's native dtype already: the caller's arrays, as they are
        call = _call(x, w, b)
        assert call.x is x and call.weight is w and call.bias is b
    w64, xbig = w.astype(np.float64), x.astype(">f4")
    for _ in range(2):  # a float64 weight is cast to the spec's float32, on every hit
        call = _call(x, w64, b)
        assert call.spec.dtype == "float32" and call.weight.dtype == np.float32
        assert np.array_equal(call.weight, w64.astype(np.float32))
    for _ in range(2):  # big-endian input: converted to native order on every hit
        call = _call(xbig, w, b)
        assert call.x.dtype == np.float32 and call.x.dtype.isnative
        assert np.array_equal(call.x, x)
    ref = clconv.conv2d(x, w, b, padding=1, backend="numpy")
    for _ in range(2):
        np.testing.assert_array_equal(clconv.conv2d(xbig, w, b, padding=1, backend="numpy"), ref)


@pytest.mark.parametrize("bad, match", [
    ({"flip": 1}, "flip=1"),            # equal to True, but not a bool
    ({"groups": True}, "groups"),       # equal to 1, but not an int
    ({"stride": 1.0}, "stride"),        # equal to 1, but not an int
    ({"padding": (1, 1, 1)}, "padding"),
])
def test_values_equal_to_valid_ones_are_still_checked(rng, bad, match):
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    _call(x, w)
    with pytest.raises(ArgumentError, match=match):
        _call(x, w, **bad)


def test_the_memory_limit_is_read_again(rng, monkeypatch):
    x = rng.standard_normal((1, 2, 64, 64)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    _call(x, w)
    monkeypatch.setenv(_normalize.HOST_MEMORY_ENV, "1000")
    with pytest.raises(AllocationError, match="host memory"):
        _call(x, w)


def test_the_cache_is_bounded(rng, monkeypatch):
    monkeypatch.setattr(_normalize, "MAX_CALLS", 4)
    monkeypatch.setattr(_normalize, "_CALLS", {})
    w = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    for n in range(5, 15):
        _call(np.zeros((1, 1, n, n), np.float32), w)
    assert len(_normalize._CALLS) == 4
    assert _call(np.zeros((1, 1, 5, 5), np.float32), w).spec.in_size == (5, 5)


def _tcall(x, w, b=None, stride=2, padding=1, output_padding=0, groups=1, dilation=1,
           data_format="channels_first"):
    return _normalize.normalize_conv_transpose(2, x, w, b, stride, padding, output_padding,
                                               groups, dilation, data_format)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_a_repeated_transposed_call_reuses_its_spec(rng, data_format):
    """Transposed calls are cached too; a hit still extends the input where
    output_padding reaches past the last stride (dilation 3, output_padding 2),
    and casts and unbatches it."""
    last = data_format == "channels_last"
    x = rng.integers(0, 5, (5, 6, 3) if last else (3, 5, 6)).astype(np.int16)  # unbatched
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    kw = dict(stride=1, padding=0, output_padding=2, dilation=3, data_format=data_format)
    first = _tcall(x, w, **kw)
    again = _tcall(x + 1, w, **kw)
    assert again.spec is first.spec and again.unbatched and again.in_size == (5, 6)
    assert first.x.shape == ((1, 7, 8, 3) if last else (1, 3, 7, 8))  # extended by 2
    assert again.x.dtype == np.float32
    np.testing.assert_array_equal(again.x, _extended(x + 1, first.x.shape))
    y = clconv.conv_transpose2d(x + 1, w, **kw, backend="numpy")
    want = clconv.conv_transpose2d((x + 1).astype(np.float32), w, **kw, backend="numpy")
    np.testing.assert_array_equal(y, want)
    # Another output_padding is another spec; a bad one is still refused.
    assert _tcall(x, w, **{**kw, "output_padding": 1}).spec is not first.spec
    with pytest.raises(clconv.ShapeError, match="output_padding"):
        _tcall(x, w, **{**kw, "output_padding": 3})


def _extended(x, shape):
    """``x`` batched and zero-extended at the end of its spatial axes to ``shape``."""
    out = np.zeros(shape, np.float32)
    xb = x[None].astype(np.float32)
    out[tuple(slice(0, n) for n in xb.shape)] = xb
    return out


def test_cache_keys_hash_once_and_pickle_without_their_hash(rng):
    """Specs, device limits and path choices key the plan caches: equal ones hash
    alike, each computes its hash once, and a pickled copy leaves the
    process-salted hash behind and equals the original."""
    import dataclasses
    import pickle

    from clconv.backends.opencl.context import Limits
    from clconv.backends.opencl.paths import PATHS, Choice

    spec = _call(rng.standard_normal((1, 3, 6, 6)).astype(np.float32),
                 rng.standard_normal((2, 3, 3, 3)).astype(np.float32)).spec
    limits = Limits(1 << 20, 1 << 22, 256, 32768, False)
    choice = Choice(PATHS["direct"], PATHS["direct"].config(spec, limits))
    for key in (spec, limits, choice):
        twin = dataclasses.replace(key)
        assert twin == key and hash(twin) == hash(key) and twin is not key
        assert key.__dict__["_hash"] == hash(key)
    for key in (spec, limits):
        copy = pickle.loads(pickle.dumps(key))
        assert "_hash" not in copy.__dict__ and copy == key and hash(copy) == hash(key)
    other = dataclasses.replace(limits, strict=True)
    assert other != limits and {limits: 1}.get(other) is None
