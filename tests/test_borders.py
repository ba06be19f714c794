"""clconv._borders against numpy.pad, which defines the border rules.

Exhaustive on small axes: every mode, axis lengths 1..7, padding 0..20 on
each side (pads up to about twenty times the axis, where a rule that reflects
only once goes wrong), for both the forward map and its CSR inverse.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from clconv._borders import MODES, padded_source, preimage, source_index

SIZES = range(1, 8)
PADS = range(0, 21)


def numpy_map(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """numpy.pad of arange(n): the source of every padded position, -1 for the fill."""
    extra = {"constant_values": -1} if mode == "constant" else {}
    return np.pad(np.arange(n), (before, after), mode=mode, **extra)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", SIZES)
def test_source_index_is_numpy_pad(mode, n):
    for before, after in itertools.product(PADS, PADS):
        want = numpy_map(n, before, after, mode)
        got = source_index(np.arange(-before, n + after), n, mode)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want, err_msg=f"{mode} n={n} pad=({before}, {after})")
        np.testing.assert_array_equal(padded_source(n, before, after, mode), want)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", SIZES)
def test_preimage_inverts_numpy_pad(mode, n):
    for before, after in itertools.product(PADS, PADS):
        where = f"{mode} n={n} pad=({before}, {after})"
        source = numpy_map(n, before, after, mode)
        offsets, positions = preimage(n, before, after, mode)
        assert offsets.dtype == positions.dtype == np.int32, where
        assert offsets.shape == (n + 1,) and offsets[0] == 0, where
        assert np.all(np.diff(offsets) >= 1), where   # every input index is copied at least once
        assert offsets[-1] == positions.size == np.count_nonzero(source >= 0), where
        for s in range(n):
            mine = positions[offsets[s]:offsets[s + 1]]
            np.testing.assert_array_equal(mine, np.flatnonzero(source == s), err_msg=where)
            assert before + s in mine, where   # the input's own copy


def test_source_index_keeps_the_shape_of_its_argument():
    index = np.array([[-3, 0], [5, 9]])
    got = source_index(index, 4, "symmetric")
    np.testing.assert_array_equal(got, [[2, 0], [2, 1]])
    assert source_index(-7, 3, "wrap").shape == ()
    assert int(source_index(-7, 3, "wrap")) == 2


def test_far_coordinates_follow_the_period():
    """Coordinates millions of periods away, as a huge padding would give."""
    far = np.array([-10**12 - 1, 10**12 + 3])
    np.testing.assert_array_equal(source_index(far, 5, "wrap"), np.mod(far, 5))
    np.testing.assert_array_equal(source_index(far, 5, "edge"), [0, 4])
    np.testing.assert_array_equal(source_index(far, 5, "constant"), [-1, -1])
    for mode in ("reflect", "symmetric"):
        period = 8 if mode == "reflect" else 10
        small = np.mod(far, period) - period   # same phase, within numpy.pad's reach
        np.testing.assert_array_equal(source_index(far, 5, mode),
                                      numpy_map(5, 2 * period, 0, mode)[small + 2 * period])


def test_empty_axis_pads_with_constants_only():
    np.testing.assert_array_equal(padded_source(0, 2, 3, "constant"), [-1] * 5)
    offsets, positions = preimage(0, 2, 3, "constant")
    assert offsets.tolist() == [0] and positions.size == 0
    for mode in MODES[1:]:
        with pytest.raises(ValueError):
            np.pad(np.arange(0), (1, 0), mode=mode)
        with pytest.raises(ValueError, match="empty axis"):
            padded_source(0, 1, 0, mode)
        assert padded_source(0, 0, 0, mode).size == 0   # nothing to pad is fine, as in numpy


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown border mode"):
        source_index(np.arange(3), 3, "mirror")
    with pytest.raises(ValueError, match="negative"):
        padded_source(3, -1, 0, "edge")
