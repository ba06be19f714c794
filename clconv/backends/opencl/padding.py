"""The pad pre-pass (kernels_cl/pad.cl) that gives the fast kernels a border-free input.

The fast paths (gemm, pointwise, rows) run border-free kernels: the input is
either the caller's buffer, when nothing needs padding and it is already in
the accumulator type, or a scratch copy that pad.cl writes with the padding
applied (any border mode, dtype, layout and strides). When that scratch
would not fit the device, a fast path hands the piece to the direct kernel
with the same packed weights (:func:`.direct.direct_fallback`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._spec import ConvSpec
from .context import DeviceContext
from .launch import (
    BORDER_CODES,
    Operand,
    ProgramRef,
    acc_dtype,
    enqueue,
    layout_strides,
    memoised,
    round_up,
    spatial3,
    type_defines,
)
from .limits import Limits

INT32_MAX = 2**31 - 1
WG_PAD = 4  # rows per work-group of pad.cl


@dataclass(frozen=True)
class Source:
    """A border-free input for the fast kernels: buffer, offset, (n, c, d, h) strides."""

    buffer: Any
    offset: int
    strides: tuple[int, int, int, int]
    pitch: int


def border_free_input(dctx: DeviceContext, queue: Any, x: Operand, spec: ConvSpec,
                      pitch: int, limits: Limits, allocate: Any, height: int = 1,
                      ) -> Source | None:
    """The input with padding applied and unit stride along W, or ``None`` if too big.

    ``pitch`` is the smallest row length (elements) the caller's kernel may
    read, ``height`` the smallest number of rows (the scratch continues the
    border mapping past the padded size). The caller's own buffer is used in
    place when it is already in the accumulator type, needs no padding, is
    contiguous along W with non-negative strides and at least ``pitch`` x
    ``height`` large.
    """
    plan = padding_plan(dctx, spec, x.strides, x.dtype, pitch, height, limits)
    if plan[0] == "too big":
        return None
    if plan[0] == "in place":
        return Source(x.buffer, x.offset, *plan[1:])
    _, nbytes, prg, global_size, local_size, scalars, strides, row = plan
    scratch = allocate(nbytes)
    enqueue(prg.get(dctx), "pad_input", queue, global_size, local_size, x.buffer,
            np.int64(x.offset), *scalars[0], scratch, *scalars[1])
    return Source(scratch, 0, strides, row)


def padding_plan(dctx: DeviceContext, spec: ConvSpec, x_strides: tuple[int, ...],
                 x_dtype: np.dtype, pitch: int, height: int, limits: Limits) -> tuple:
    """How :func:`border_free_input` gets a border-free input (memoised):
    ``("in place", strides, row)``, ``("too big",)``, or ``("pad", scratch bytes,
    program, global size, local size, (scalars before, after the scratch),
    strides, row)``; both usable forms end with the input's strides and row."""
    return memoised(("pad", dctx, spec, x_strides, x_dtype, pitch, height, limits),
                    lambda: _fresh_padding_plan(dctx, spec, x_strides, x_dtype, pitch,
                                                height, limits))


def _fresh_padding_plan(dctx: DeviceContext, spec: ConvSpec, x_strides: tuple[int, ...],
                        x_dtype: np.dtype, pitch: int, height: int, limits: Limits) -> tuple:
    acc = acc_dtype(spec)
    sn, sc, sd, sh, sw = layout_strides(x_strides, spec)
    in_d, in_h, in_w = spatial3(spec.in_size, 1)
    no_pad = not any(spec.pad_before) and not any(spec.pad_after)
    if (no_pad and x_dtype == acc and spec.dtype == acc.name and sw == 1
            and min(sn, sc, sd, sh) >= 0 and in_w >= pitch and in_h >= height
            and max(sc * spec.in_channels, sd * in_d, sh * in_h) <= INT32_MAX):
        return ("in place", (sn, sc, sd, sh), in_w)
    pd, ph, pw = spatial3(spec.padded_size, 1)
    ph = max(ph, height)
    bd, bh, bw = spatial3(spec.pad_before, 0)
    row = max(pw, pitch)
    c = spec.in_channels
    nbytes = spec.batch * c * pd * ph * row * acc.itemsize
    if nbytes > limits.max_alloc or nbytes // acc.itemsize > INT32_MAX:
        return ("too big",)
    defines = type_defines(spec, x_dtype, "IN")
    wg_pad = WG_PAD if limits.group_items == 1 else limits.group_items
    defines.update(BORDER=BORDER_CODES[spec.border], WG_PAD=wg_pad)
    prg = ProgramRef.of("pad.cl", defines)
    prg.get(dctx)  # build it now: a build error belongs to planning
    i32 = np.int32
    before = tuple(np.int64(v) for v in (sn, sc, sd, sh, sw))
    after = (i32(c), i32(in_d), i32(in_h), i32(in_w), i32(pd), i32(ph), i32(row),
             i32(bd), i32(bh), i32(bw), acc.type(spec.fill_value))
    return ("pad", nbytes, prg, (round_up(pd * ph, wg_pad), spec.batch * c), (wg_pad, 1),
            (before, after), (c * pd * ph * row, pd * ph * row, ph * row, row), row)
