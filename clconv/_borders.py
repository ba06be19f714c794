"""The one host-side border index map, and its inverse.

Border modes carry ``numpy.pad``'s names, which have one meaning each. Along
one axis of length ``n`` a padded coordinate ``i`` (in unpadded coordinates,
so ``-before <= i < n + after``) reads the input index below, or ``-1`` for
the fill value (constant mode only)::

    input        a b c d            (n = 4)
    constant   f f|a b c d|f f      f = fill value
    edge       a a|a b c d|d d
    wrap       c d|a b c d|a b      period n
    reflect    c b|a b c d|c b      period 2(n-1), edge not repeated; n == 1 -> a
    symmetric  b a|a b c d|d c      period 2n, edge repeated

The rule is periodic, so it holds for padding of any width, also many times
wider than the axis (it does not reflect once and stop). It is the same map as
``map_border`` in ``kernels_cl/common.h``, which the OpenCL kernels use, and as
``numpy.pad`` applied to ``arange(n)``, which ``tests/test_borders.py``
checks exhaustively on small axes.

:func:`source_index` is the forward map (gathering a padded window, as the
dask path and the tiler do); :func:`preimage` is its inverse, the padded
positions that copy each input index, which the adjoint of padding (the
gradient with respect to the input) sums over.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MODES", "padded_source", "preimage", "source_index"]

MODES = ("constant", "edge", "wrap", "reflect", "symmetric")

_INT32_MAX = np.iinfo(np.int32).max


def source_index(index: Any, n: int, mode: str) -> np.ndarray:
    """The input index that each padded coordinate in ``index`` reads along an axis of length ``n``.

    ``index`` holds coordinates in the unpadded frame (negative before the
    input, ``>= n`` after it), of any shape. The result is an int64 array of
    the same shape: an index in ``[0, n)``, or ``-1`` where constant mode
    uses the fill value. An empty axis (``n == 0``) can only be padded with
    constants, as in ``numpy.pad``; other modes raise ``ValueError`` when
    asked for any coordinate of it.
    """
    i = np.asarray(index, dtype=np.int64)
    n = int(n)
    if mode not in MODES:
        raise ValueError(f"unknown border mode {mode!r}; expected one of {', '.join(MODES)}")
    if n < 0:
        raise ValueError(f"axis length {n} is negative")
    inside = (i >= 0) & (i < n)
    if mode == "constant":
        return np.where(inside, i, -1)
    if n == 0:
        if i.size:
            raise ValueError(f"an empty axis cannot be padded in {mode!r} mode, only "
                             "'constant' (as in numpy.pad)")
        return i.copy()
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    if mode == "reflect":
        if n == 1:   # a period of 2(n-1) = 0: numpy.pad repeats the single value
            return np.zeros_like(i)
        period = 2 * (n - 1)
        m = np.mod(i, period)
        return np.where(m >= n, period - m, m)
    period = 2 * n   # symmetric
    m = np.mod(i, period)
    return np.where(m >= n, period - 1 - m, m)


def padded_source(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """:func:`source_index` of every position of the padded axis, in order.

    Equal to ``numpy.pad(arange(n), (before, after), mode)`` (with ``-1`` as
    the constant), an int64 array of length ``before + n + after``.
    """
    if before < 0 or after < 0:
        raise ValueError(f"padding ({before}, {after}) is negative")
    return source_index(np.arange(-int(before), int(n) + int(after)), n, mode)


def preimage(n: int, before: int, after: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """For each input index, the positions of the padded axis that copy it (CSR lists).

    Returns ``(offsets, positions)``, both int32: the padded positions
    (0-based in the padded axis, so the input's own copy of index ``s`` is
    ``before + s``) that read input index ``s`` are
    ``positions[offsets[s]:offsets[s + 1]]``, in ascending order. ``offsets``
    has ``n + 1`` entries; constant-fill positions copy nothing and appear in
    no list, so ``positions`` has ``before + n + after`` entries except in
    constant mode, where it has ``n``.
    """
    total = int(before) + int(n) + int(after)
    if total > _INT32_MAX:
        raise OverflowError(f"a padded axis of {total} positions does not fit int32 lists")
    source = padded_source(n, before, after, mode)
    copies = np.flatnonzero(source >= 0)
    source = source[copies]
    # A stable sort by source keeps each list's positions ascending.
    order = np.argsort(source, kind="stable")
    offsets = np.zeros(int(n) + 1, dtype=np.int32)
    np.cumsum(np.bincount(source, minlength=int(n)), out=offsets[1:])
    return offsets, copies[order].astype(np.int32)
