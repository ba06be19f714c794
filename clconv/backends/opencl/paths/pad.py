"""Planning the pad pre-pass (kernels_cl/pad.cl) that gives fast kernels a border-free input.

The fast paths (gemm, pointwise, rows) run border-free kernels: the input is
either the caller's buffer, when nothing needs padding and it is already in
the accumulator type, or a scratch copy ``xp`` that pad.cl writes with the
padding applied (any border mode, dtype, layout and strides). When that
scratch would not fit the device, :func:`border_free` says so and the path
plans the direct kernel instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...._spec import ConvSpec
from ..build import ProgramRef
from ..context import DeviceContext, Limits
from ..plan import Layout, OffsetOf, Plan, Ref, Scratch, Step
from .common import BORDER_CODES, acc_dtype, layout_strides, round_up, spatial3, type_defines

INT32_MAX = 2**31 - 1
# Rows per work-group of pad.cl on CPUs: both CPU runtimes pay a fixed cost per
# work-group, and a row is a short copy (58 values on a 56-wide layer).
WG_PAD = 32


@dataclass(frozen=True)
class BorderFree:
    """A border-free input: the plan that makes it (maybe none), the name its buffer is
    bound to (``x`` itself or the scratch ``xp``), its (n, c, d, h) strides and row."""

    plan: Plan
    source: str
    strides: tuple[int, int, int, int]
    row: int


def scratch_fits(spec: ConvSpec, limits: Limits, pitch: int = 1, height: int = 1) -> bool:
    """Whether pad.cl's copy (rows of at least ``pitch``, at least ``height`` rows) fits
    one buffer of the device and 32-bit element indices."""
    nbytes = _scratch_bytes(spec, pitch, height)
    return nbytes <= limits.max_alloc and nbytes // acc_dtype(spec).itemsize <= INT32_MAX


def reads_in_place(spec: ConvSpec, layout: Layout, pitch: int = 1, height: int = 1) -> bool:
    """Whether :func:`border_free` uses the caller's buffer itself: nothing to pad, the
    accumulator type, unit stride along W, non-negative strides, 32-bit offsets."""
    acc = acc_dtype(spec)
    sn, sc, sd, sh, sw = layout_strides(layout.x_strides, spec)
    in_d, in_h, in_w = spatial3(spec.in_size, 1)
    no_pad = not any(spec.pad_before) and not any(spec.pad_after)
    return (no_pad and layout.x_dtype == acc and spec.dtype == acc.name and sw == 1
            and min(sn, sc, sd, sh) >= 0 and in_w >= pitch and in_h >= height
            and max(sc * spec.in_channels, sd * in_d, sh * in_h) <= INT32_MAX)


def _scratch_rows(spec: ConvSpec, pitch: int, height: int) -> tuple[int, int, int]:
    """``(depth, rows, row length)`` of one channel of pad.cl's copy."""
    pd, ph, pw = spatial3(spec.padded_size, 1)
    return pd, max(ph, height), max(pw, pitch)


def _scratch_bytes(spec: ConvSpec, pitch: int, height: int) -> int:
    pd, ph, row = _scratch_rows(spec, pitch, height)
    return spec.batch * spec.in_channels * pd * ph * row * acc_dtype(spec).itemsize


def border_free(dctx: DeviceContext, spec: ConvSpec, layout: Layout, pitch: int,
                limits: Limits, height: int = 1) -> BorderFree | None:
    """The input with padding applied and unit stride along W, or ``None`` if too big.

    ``pitch`` is the smallest row length (elements) the caller's kernel may
    read, ``height`` the smallest number of rows (the scratch continues the
    border mapping past the padded size). The caller's own buffer is used in
    place when it is already in the accumulator type, needs no padding, is
    contiguous along W with non-negative strides and at least ``pitch`` x
    ``height`` large.
    """
    acc = acc_dtype(spec)
    sn, sc, sd, sh, sw = layout_strides(layout.x_strides, spec)
    in_d, in_h, in_w = spatial3(spec.in_size, 1)
    if reads_in_place(spec, layout, pitch, height):
        return BorderFree(Plan(()), "x", (sn, sc, sd, sh), in_w)
    if not scratch_fits(spec, limits, pitch, height):
        return None
    pd, ph, row = _scratch_rows(spec, pitch, height)
    bd, bh, bw = spatial3(spec.pad_before, 0)
    c = spec.in_channels
    nbytes = _scratch_bytes(spec, pitch, height)
    defines = type_defines(spec, layout.x_dtype, "IN")
    wg_pad = WG_PAD if limits.group_items == 1 else limits.group_items
    defines.update(BORDER=BORDER_CODES[spec.border], WG_PAD=wg_pad)
    ref = ProgramRef.of("pad.cl", defines)
    dctx.program(ref)  # build it now: a build error belongs to planning
    i32 = np.int32
    step = Step.of(ref, "pad_input", (round_up(pd * ph, wg_pad), spec.batch * c), (wg_pad, 1),
                   Ref("x"), OffsetOf("x"), *(np.int64(v) for v in (sn, sc, sd, sh, sw)),
                   Ref("xp"), i32(c), i32(in_d), i32(in_h), i32(in_w), i32(pd), i32(ph),
                   i32(row), i32(bd), i32(bh), i32(bw), acc.type(spec.fill_value))
    return BorderFree(Plan((step,), (Scratch("xp", nbytes),)), "xp",
                      (c * pd * ph * row, pd * ph * row, ph * row, row), row)
