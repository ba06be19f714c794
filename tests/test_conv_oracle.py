"""The cross-backend suite: every backend against the NumPy backend in float64.

Each case runs on the backend under test in float32 (and, for a subset, in
float16, float64 and integer/bool input) and is compared with the NumPy
backend run in float64 on the same (dtype-rounded) operands, with the
tolerance of ``clconv.testing`` scaled by the reduction size. The grid
covers API.md section 1: 1/2/3-D, batched/unbatched, both data formats,
groups (dense, grouped, depthwise, channel multipliers), stride, dilation,
every padding form and mode (also wider than the input), flip, bias and
non-contiguous / negatively strided operands. The NumPy backend itself is
checked against independent references in ``test_numpy_reference.py``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from cases import CONV, Case
from hypothesis import given
from hypothesis import strategies as st

import clconv
from clconv.testing import assert_close, oracle

MODES = ("zeros", "reflect", "replicate", "circular")


def _layout(arr: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``arr`` in a non-standard memory layout."""
    if layout == "contiguous":
        return np.ascontiguousarray(arr)
    if layout == "strided":
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), dtype=arr.dtype)
        big[..., ::2] = arr
        out = big[..., ::2]
    elif layout == "reversed":
        flipped = np.ascontiguousarray(arr[::-1, ..., ::-1])
        out = flipped[::-1, ..., ::-1]
    elif layout == "fortran":
        out = np.asfortranarray(arr)
    else:
        raise AssertionError(layout)
    np.testing.assert_array_equal(out, arr)
    return out


def make_operands(case: Case, seed: int):
    """Random operands in the case's dtype (x, weight, bias)."""
    rng = np.random.default_rng(seed)
    if case.channels_last:
        shape = (*case.size, case.channels)
    else:
        shape = (case.channels, *case.size)
    if case.batch is not None:
        shape = (case.batch, *shape)
    if case.dtype == "int32":
        x = rng.integers(-4, 5, size=shape).astype(np.int32)
    elif case.dtype == "uint8":
        x = rng.integers(0, 256, size=shape).astype(np.uint8)
    elif case.dtype == "bool":
        x = rng.random(shape) < 0.5
    else:
        x = rng.uniform(-1, 1, size=shape).astype(case.dtype)
    wdtype = case.dtype if case.dtype in ("float16", "float64") else "float32"
    w = rng.uniform(-1, 1, size=(case.filters, case.channels // case.groups, *case.kernel))
    w = w.astype(wdtype)
    b = rng.uniform(-1, 1, size=case.filters).astype(wdtype) if case.bias else None
    return _layout(x, case.layout), w, b


def result_dtype(dtype: str) -> np.dtype:
    return np.dtype(dtype if dtype in ("float16", "float64") else "float32")


def check_against_oracle(case: Case, backend: str, seed: int = 0) -> None:
    """Run ``case`` on ``backend`` and compare with the float64 NumPy oracle."""
    x, w, b = make_operands(case, seed)
    x_before = x.copy()
    rdt = result_dtype(case.dtype)
    got = case.call(x, w, b, backend)
    np.testing.assert_array_equal(x, x_before)  # inputs are never modified

    # The oracle sees exactly the values the backend was asked to use.
    want = oracle(CONV[case.ndim], x, w, b, round_to=rdt, **case.kwargs())
    assert want.dtype == np.float64
    assert isinstance(got, np.ndarray)
    scale = (float(np.max(np.abs(x.astype(rdt)), initial=1.0)) if case.dtype == "uint8"
             else 1.0)
    assert_close(got, want, dtype=rdt, reduction=case.reduction, scale=scale,
                 where=case.ident())


# ---------------------------------------------------------------- the grid

BASE = {
    1: Case(ndim=1, size=(9,), kernel=(3,)),
    2: Case(ndim=2, size=(6, 7), kernel=(3, 2)),
    3: Case(ndim=3, size=(4, 5, 3), kernel=(2, 3, 2)),
}


def _paddings(nd: int, size: tuple[int, ...]) -> list:
    """Every padding form of the contract for ``nd`` spatial dims."""
    per_dim = tuple(1 + i % 2 for i in range(nd))
    pairs = tuple((0, 2) if i % 2 == 0 else (1, 0) for i in range(nd))
    mixed = tuple((2, 0) if i == nd - 1 else 1 for i in range(nd))
    wide = tuple(n + 2 for n in size)
    return [0, 2, per_dim, pairs, mixed, "valid", "same", "full", "SAME", wide]


def _one_factor_cases(nd: int) -> list[Case]:
    base = BASE[nd]
    cases = [base]
    v = lambda **kw: replace(base, **kw)  # noqa: E731
    cases += [
        v(batch=None), v(batch=1), v(channels_last=True), v(batch=None, channels_last=True),
        v(groups=2), v(groups=2, filters=2), v(groups=4, filters=4), v(groups=4, filters=8),
        v(groups=4, filters=12, bias=False), v(channels=1, filters=1, groups=1),
        v(channels=1, filters=3), v(channels=3, filters=1),
        v(stride=2), v(stride=3), v(stride=tuple(1 + i % 2 for i in range(nd))),
        v(dilation=2), v(dilation=tuple(2 - i % 2 for i in range(nd)), padding=2),
        v(flip=True), v(bias=False), v(flip=True, groups=2, channels_last=True),
        v(layout="strided"), v(layout="reversed"), v(layout="fortran"),
        v(layout="reversed", channels_last=True),
    ]
    cases += [v(padding=p) for p in _paddings(nd, base.size)]
    cases += [v(padding="same", stride=s) for s in (2, 3)]
    cases += [v(padding="same", dilation=2), v(padding="full", dilation=2, stride=2)]
    for mode in MODES[1:]:
        cases += [v(padding_mode=mode), v(padding_mode=mode, padding="same", stride=2),
                  v(padding_mode=mode, padding=_paddings(nd, base.size)[-1]),
                  v(padding_mode=mode, padding=_paddings(nd, base.size)[3], flip=True),
                  v(padding_mode=mode, padding="full", dilation=2)]
    cases += [v(padding=_paddings(nd, base.size)[-1], padding_mode="zeros")]
    for dtype in ("float16", "float64", "int32", "uint8", "bool"):
        cases += [v(dtype=dtype), v(dtype=dtype, groups=4, filters=4, padding_mode="reflect")]
    return cases


def _random_cases(nd: int, count: int, seed: int) -> list[Case]:
    """Seeded random combinations of every option (only valid ones kept)."""
    rng = np.random.default_rng(seed)
    base = BASE[nd]
    cases: list[Case] = []
    while len(cases) < count:
        size = tuple(int(n) for n in rng.integers(1, 8 if nd < 3 else 6, size=nd))
        kernel = tuple(int(k) for k in rng.integers(1, 4, size=nd))
        channels = int(rng.choice([1, 2, 3, 4, 6]))
        divisors = [g for g in (1, 2, 3, 6) if channels % g == 0]
        groups = int(rng.choice(divisors))
        filters = groups * int(rng.integers(1, 4))
        choice = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
        case = replace(
            base, size=size, kernel=kernel, channels=channels, groups=groups, filters=filters,
            batch=choice([None, 1, 2, 3]),
            stride=choice([1, 1, 2, 3, tuple(int(s) for s in rng.integers(1, 3, size=nd))]),
            dilation=choice([1, 1, 2, tuple(int(d) for d in rng.integers(1, 3, size=nd))]),
            padding=choice([0, 1, 3, "valid", "same", "full",
                            tuple((int(a), int(b)) for a, b in rng.integers(0, 4, size=(nd, 2)))]),
            padding_mode=choice(MODES), channels_last=bool(rng.integers(2)),
            flip=bool(rng.integers(2)), bias=bool(rng.integers(2)),
            layout=choice(["contiguous", "contiguous", "strided", "reversed", "fortran"]),
            dtype=choice(["float32"] * 5 + ["float16", "float64", "int32", "uint8", "bool"]),
        )
        if case.valid():
            cases.append(case)
    return cases


GRID: list[Case] = []
for _nd in (1, 2, 3):
    GRID += _one_factor_cases(_nd)
    GRID += _random_cases(_nd, 30, seed=100 + _nd)
_seen: set[str] = set()
GRID = [c for c in GRID if c.valid() and not (c.ident() in _seen or _seen.add(c.ident()))]


def test_grid_covers_the_contract():
    """The grid really contains every feature it claims to (guards against edits)."""
    assert len(GRID) > 200
    assert {c.ndim for c in GRID} == {1, 2, 3}
    assert {c.padding_mode for c in GRID} == set(MODES)
    assert {c.dtype for c in GRID} == {"float16", "float32", "float64", "int32", "uint8", "bool"}
    assert {c.layout for c in GRID} == {"contiguous", "strided", "reversed", "fortran"}
    assert any(c.groups == c.channels == c.filters > 1 for c in GRID)  # depthwise
    assert any(c.groups == c.channels and c.filters > c.channels for c in GRID)  # multiplier
    assert any(c.batch is None for c in GRID) and any(c.channels_last for c in GRID)
    wide = [c for c in GRID if not isinstance(c.padding, str)
            and any(p[0] > n for p, n in zip(c.pads(), c.size))]
    assert {c.padding_mode for c in wide} == set(MODES)


@pytest.mark.parametrize("case", GRID, ids=[c.ident() for c in GRID])
def test_conv_grid(backend, case):
    check_against_oracle(case, backend)


# ---------------------------------------------------------------- hypothesis

@st.composite
def conv_cases(draw) -> Case:
    nd = draw(st.integers(1, 3))
    size = tuple(draw(st.lists(st.integers(1, 9 if nd < 3 else 5), min_size=nd, max_size=nd)))
    kernel = tuple(draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd)))
    groups = draw(st.integers(1, 3))
    channels = groups * draw(st.integers(1, 3))
    filters = groups * draw(st.integers(1, 3))
    pad_pairs = st.tuples(st.integers(0, 5), st.integers(0, 5))
    padding = draw(st.one_of(
        st.integers(0, 4), st.sampled_from(["valid", "same", "full"]),
        st.lists(st.one_of(st.integers(0, 4), pad_pairs), min_size=nd, max_size=nd).map(tuple)))
    case = Case(
        ndim=nd, size=size, kernel=kernel, channels=channels, filters=filters, groups=groups,
        batch=draw(st.sampled_from([None, 1, 2])),
        stride=draw(st.integers(1, 3)), dilation=draw(st.integers(1, 2)), padding=padding,
        padding_mode=draw(st.sampled_from(MODES)), channels_last=draw(st.booleans()),
        flip=draw(st.booleans()), bias=draw(st.booleans()),
        layout=draw(st.sampled_from(["contiguous", "strided", "reversed"])),
        dtype=draw(st.sampled_from(["float32", "float32", "float16", "float64"])))
    if not case.valid():
        case = replace(case, padding="full")
    return case


@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_conv_hypothesis(backend, case, seed):
    check_against_oracle(case, backend, seed)


# ---------------------------------------------------------------- wrappers

SIGNAL_1D = [(10, 5), (5, 10), (7, 7), (1, 4), (6, 1), (8, 2), (3, 9)]


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("lengths", SIGNAL_1D, ids=[f"{a}-{v}" for a, v in SIGNAL_1D])
def test_convolve(backend, lengths, mode):
    rng = np.random.default_rng(sum(lengths))
    a = rng.uniform(-1, 1, lengths[0]).astype(np.float32)
    v = rng.uniform(-1, 1, lengths[1]).astype(np.float32)
    got = clconv.convolve(a, v, mode, backend=backend)
    want = oracle(clconv.convolve, a, v, mode)
    assert_close(got, want, dtype=np.float32, reduction=min(lengths))


SIGNAL_2D = [((6, 7), (3, 3)), ((6, 7), (2, 4)), ((5, 5), (4, 1)), ((3, 4), (5, 6)),
             ((4, 3), (6, 2)), ((2, 2), (7, 7))]


@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("shapes", SIGNAL_2D, ids=[f"{a}-{k}" for a, k in SIGNAL_2D])
@pytest.mark.parametrize("func", ["convolve2d", "correlate2d"])
def test_signal_2d(backend, func, shapes, mode, boundary):
    in_shape, k_shape = shapes
    fits = all(n >= k for n, k in zip(in_shape, k_shape))
    swappable = all(k >= n for n, k in zip(in_shape, k_shape))
    if mode == "valid" and not (fits or swappable):
        with pytest.raises(clconv.ShapeError):
            getattr(clconv, func)(np.ones(in_shape), np.ones(k_shape), mode, boundary,
                                  backend=backend)
        return
    rng = np.random.default_rng(len(in_shape) * 31 + k_shape[0])
    a = rng.uniform(-1, 1, in_shape).astype(np.float32)
    k = rng.uniform(-1, 1, k_shape).astype(np.float32)
    fn = getattr(clconv, func)
    got = fn(a, k, mode, boundary, 0.5, backend=backend)
    want = oracle(fn, a, k, mode, boundary, 0.5)
    assert_close(got, want, dtype=np.float32, reduction=math.prod(k_shape))
