"""Splitting a host-input convolution into pieces that fit the device.

Batch slices come first; when one sample is still too large, the output is
cut into tiles along the first spatial axis. A tile's input slab holds
exactly the input rows the tile reads (its halo follows from kernel extent,
stride, dilation and padding); rows that the border rule maps elsewhere
(reflect, wrap, ...) are gathered on the host with the same index mapping
the kernels use, and constant-mode overhang stays device-side padding. Each
output value is computed by the same operations in the same order as in one
piece, so the stitched result is identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..._spec import ConvSpec
from ...errors import AllocationError
from .limits import Limits


@dataclass(frozen=True)
class Piece:
    """One launch: its sub-spec, where its input comes from and where its output goes."""

    spec: ConvSpec
    batch: slice
    rows: np.ndarray | None  # input indices along the first spatial axis, or None for all
    out_index: tuple


def map_border(index: np.ndarray, n: int, mode: str) -> np.ndarray:
    """kernels_cl/common.h's map_border on the host: input index per padded coordinate."""
    i = np.asarray(index, dtype=np.int64)
    if mode == "constant":
        return np.where((i >= 0) & (i < n), i, -1)
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(i)
        m = np.mod(i, 2 * (n - 1))
        return np.where(m >= n, 2 * (n - 1) - m, m)
    m = np.mod(i, 2 * n)  # symmetric
    return np.where(m >= n, 2 * n - 1 - m, m)


def _spatial_axis(spec: ConvSpec) -> int:
    """Axis of the first spatial dimension in the spec's layout."""
    return 1 if spec.channels_last else 2


def plan_pieces(spec: ConvSpec, limits: Limits, weight_bytes: int) -> list[Piece]:
    """Pieces whose buffers fit ``limits``; one piece when everything fits."""
    item = np.dtype(spec.dtype).itemsize
    in_sample = math.prod(spec.input_shape[1:]) * item
    out_sample = math.prod(spec.output_shape[1:]) * item
    if weight_bytes > min(limits.max_alloc, limits.memory_budget):
        raise AllocationError(
            f"the packed weights ({weight_bytes} bytes, weight shape {spec.weight_shape}) exceed "
            f"the device's largest buffer ({limits.max_alloc} bytes); they cannot be tiled")
    budget = limits.memory_budget - weight_bytes

    def fits(in_bytes: int, out_bytes: int) -> bool:
        return (in_bytes <= limits.max_alloc and out_bytes <= limits.max_alloc
                and in_bytes + out_bytes <= budget)

    axis = _spatial_axis(spec)
    lead = (slice(None),) * axis
    if fits(spec.batch * in_sample, spec.batch * out_sample):  # the usual case: one piece
        return [Piece(spec, slice(0, spec.batch), None, (slice(0, spec.batch),))]
    per_piece = _largest(spec.batch, lambda nb: fits(nb * in_sample, nb * out_sample))
    if per_piece:
        return [Piece(spec.replace(batch=min(per_piece, spec.batch - n0)),
                      slice(n0, n0 + per_piece), None, (slice(n0, n0 + per_piece),))
                for n0 in range(0, spec.batch, per_piece)]

    n, k, s, d = spec.in_size[0], spec.kernel_size[0], spec.stride[0], spec.dilation[0]
    extent = (k - 1) * d + 1
    in_row = in_sample // n
    out_row = out_sample // spec.out_size[0]
    rows = _largest(spec.out_size[0],
                    lambda r: fits(((r - 1) * s + extent) * in_row, r * out_row))
    if rows == 0:
        raise AllocationError(
            f"one output row of input {spec.input_shape} (kernel {spec.kernel_size}, output "
            f"{spec.output_shape}) needs more than the device's largest buffer "
            f"({limits.max_alloc} bytes) or memory budget ({limits.memory_budget} bytes)")
    pieces = []
    for b in range(spec.batch):
        for o0 in range(0, spec.out_size[0], rows):
            o1 = min(o0 + rows, spec.out_size[0])
            lo = o0 * s - spec.pad_before[0]
            hi = (o1 - 1) * s - spec.pad_before[0] + extent - 1
            if spec.border == "constant":
                first, last = max(lo, 0), min(hi, n - 1)
                if first <= last:
                    idx = np.arange(first, last + 1, dtype=np.int64)
                    before, after = first - lo, hi - last
                else:  # the tile reads padding only: one row, placed out of reach
                    idx = np.zeros(1, dtype=np.int64)
                    before, after = hi - lo + 1, 0
            else:
                idx = map_border(np.arange(lo, hi + 1), n, spec.border)
                before = after = 0
            sub = spec.replace(
                batch=1, in_size=(len(idx), *spec.in_size[1:]),
                pad_before=(before, *spec.pad_before[1:]),
                pad_after=(after, *spec.pad_after[1:]),
                out_size=(o1 - o0, *spec.out_size[1:]))
            pieces.append(Piece(sub, slice(b, b + 1), idx,
                                (slice(b, b + 1), *lead[1:], slice(o0, o1))))
    return pieces


def _largest(total: int, ok) -> int:
    """The largest size in ``1..total`` that ``ok`` accepts (``ok`` is monotone), else 0."""
    lo, hi = 0, total
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def take_piece(x: np.ndarray, spec: ConvSpec, piece: Piece) -> np.ndarray:
    """The host input of ``piece`` (a view for batch slices, a gather for tiles)."""
    xb = x[piece.batch]
    if piece.rows is None:
        return xb
    return np.take(xb, piece.rows, axis=_spatial_axis(spec))

