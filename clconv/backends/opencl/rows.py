"""The row-blocked forward paths for one filter per group (kernels_cl/conv_rows.cl):
``rows`` (depthwise, single-channel images, 1-D, 3-D) and ``separable``
(rank-1 kernels as a column pass and a row pass of the rows kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._spec import ConvSpec
from .context import DeviceContext
from .direct import direct_fallback
from .launch import (
    BORDER_CODES,
    Operand,
    acc_dtype,
    contiguous_strides,
    enqueue,
    fast_dtype,
    fitted_program,
    gpu_group,
    layout_strides,
    memoised,
    round_up,
    spatial3,
    type_defines,
    with_overrides,
    work_group,
)
from .limits import Limits
from .padding import border_free_input, padding_plan
from .weights import pack_operands


@dataclass(frozen=True)
class RowsConfig:
    """Blocking of one conv_rows.cl build: OR rows x 8*NV columns per work-item."""

    nv: int
    rows: int
    kw_unroll: int
    wg_x: int
    wg_y: int


class RowsPath:
    """One filter per group (depthwise, single-channel images, 1-D, 3-D, large kernels).

    kernels_cl/conv_rows.cl: output columns are float8 lanes (stride 1 or 2
    along W), each work-item computes ``OR`` rows x ``8 * NV`` columns and reuses
    every loaded input vector across the output rows it feeds. Borders are
    handled inside the kernel (one launch, the input read in place, any
    dtype) unless many blocks touch them (3-D, wide kernels) or the input is
    strided along W: then a pad pre-pass (pad.cl) makes a border-free copy.
    """

    name = "rows"
    overrides: dict[str, int] = {}
    MAX_KW = 128
    MAX_KH = 32
    # Border blocks are slower than interior ones (row-only border blocks
    # load plain vectors, column border blocks first gather each input row
    # through the border rule), more so for 3-D and wide kernels: above these
    # shares of them a pad pass first is cheaper. 2026-11-22 (lane-by-lane
    # column borders), kernel ms in place vs pad pass + kernel: 512x512 3x3
    # (share 0.077) 0.80 vs 0.93; 1x128x56x56 depthwise (share 0.57) 0.60-0.76
    # vs 0.56-0.64; 64^3 3x3x3 1.18 vs 0.93; 512x512 15x15 12.1 vs 5.1.
    # 2026-11-29 (gathered rows, 8-row blocks), wall ms in place vs pad, one
    # process alternating: 1x32x112x112 stride 2 0.31-0.33 vs 0.35-0.37,
    # 1x512x14x14 0.35 vs 0.37, 5x5 1x128x56x56 0.70 vs 0.80, 3x3 1x128x56x56
    # 0.44-0.46 vs 0.43-0.44 (a tie within noise), so planar kernels of up
    # to 25 taps always read in place; 64^3 3x3x3 0.67 vs 0.52 and 512x512
    # 15x15 2.39 vs 2.14 (3-D and wide keep the limits).
    MAX_BORDER_SHARE_PLANE = 1.0   # 1-D and 2-D kernels of at most 25 taps
    MAX_BORDER_SHARE = 0.10        # 3-D kernels of at most 25 taps per plane
    MAX_BORDER_SHARE_WIDE = 0.002  # kernels of more than 25 taps per plane
    # Column border blocks gather an input row of (8 * NV - 1) * SW + (KW - 1)
    # * DW + 1 elements into private memory; longer rows (strongly dilated
    # wide kernels) take the pad pass, so that private arrays stay small on GPUs.
    MAX_ROW_BUFFER = 256
    # Input-row loops of at most this many multiply-add steps (IN_ROWS *
    # KW_UNROLL) are unrolled (passed to conv_rows.cl).
    ROWS_UNROLL_MAX = 96

    @staticmethod
    def border_share(spec: ConvSpec, cfg: RowsConfig) -> float:
        """The share of work-items whose block reads padding (for the in-place kernel)."""
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        in_d, in_h, in_w = spatial3(spec.in_size, 1)
        pd, ph, pw = spatial3(spec.pad_before, 0)
        inner = 1.0
        for count, step, reach, pad, size in (
                (out_d, sd, (kd - 1) * dd, pd, in_d),
                (-(-out_h // cfg.rows), cfg.rows * sh, (cfg.rows - 1) * sh + (kh - 1) * dh,
                 ph, in_h),
                (-(-out_w // (8 * cfg.nv)), 8 * cfg.nv * sw,
                 (8 * cfg.nv - 1) * sw + (kw - 1) * dw, pw,
                 in_w)):
            first = -(-pad // step)                    # blocks with start >= 0
            last = (size - 1 - reach + pad) // step    # blocks with end < size
            inner *= max(0, min(last, count - 1) - first + 1) / count
        return 1.0 - inner

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        kh, kw = spatial3(spec.kernel_size, 1)[1:]
        return (fast_dtype(spec) and spec.out_per_group == 1 and spec.stride[-1] in (1, 2)
                and kw <= self.MAX_KW and kh <= self.MAX_KH)

    @staticmethod
    def config(spec: ConvSpec, limits: Limits) -> RowsConfig:
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        if spec.ndim == 1 or out_h == 1:
            rows, nv = 1, 4
        else:
            # 4 rows x 16 columns: per input row and tap 2 vector loads and up
            # to 4 weight broadcasts feed 8 multiply-adds (8 rows x 8 columns
            # needs 9 loads for 8); measured best or tied on 512x512 15x15.
            rows, nv = 4, 2 if out_w > 8 else 1
        if spec.dtype == "float64":
            nv = 1  # a double8 is two registers already (512x512 15x15: 5.5 -> 2.9 ms)
        nv = min(nv, -(-out_w // 8))
        # Fewer vectors per row when that wastes fewer columns (56 wide: 7
        # blocks of 8 instead of 4 of 16 with 8 columns computed for nothing,
        # and a narrower padded copy: 1x128x56x56 depthwise kernels 0.50 ->
        # 0.42-0.46 ms in profiling events, same process).
        nv = max(range(1, nv + 1), key=lambda v: (-round_up(out_w, 8 * v), v))
        kw_unroll = kw if kw <= 16 else 8
        sh, dh = spatial3(spec.stride, 1)[1], spatial3(spec.dilation, 1)[1]
        if (nv == 1 and rows == 4 and kd == 1 and out_h > 4 and spec.dtype != "float64"
                and (7 * sh + (kh - 1) * dh + 1) * kw_unroll <= RowsPath.ROWS_UNROLL_MAX):
            # One vector per row: 8 rows keep the work per item of 4 x 16
            # (PoCL's per-item set-up is amortised over twice the multiply-adds;
            # 1x128x56x56 3x3 depthwise kernel 0.189 -> 0.146 ms, 5x5 0.31 ->
            # 0.26). With two vectors 8 rows lost (1x32x112x112 0.128 -> 0.140).
            rows = 8
        taps = kd * kh * kw * spec.in_per_group
        # Small kernels: little work per item, so group many items per
        # work-group (PoCL's per-group cost dominates otherwise).
        wanted = 16 if taps <= 32 else 1
        col_blocks = -(-out_w // (8 * nv))
        if limits.group_items > 1:
            return RowsConfig(nv, rows, kw_unroll, *gpu_group(limits, col_blocks, 16))
        wg_x = work_group(col_blocks, limits.max_work_group, wanted)
        if wg_x < col_blocks < wanted and round_up(col_blocks, 2 * wg_x) * 4 <= col_blocks * 5:
            wg_x *= 2  # one group across the row, a few idle items (7 blocks: 8)
        # Fill the group with row blocks when a row has fewer column blocks
        # (1x128x56x56 3x3 depthwise, 7 blocks: groups of 4 x 1 -> 8 x 2,
        # kernel 0.204 -> 0.185 ms).
        row_blocks = out_d * -(-out_h // rows)
        wg_y = work_group(row_blocks, max(limits.max_work_group // wg_x, 1),
                           max(wanted // wg_x, 1))
        return RowsConfig(nv, rows, kw_unroll, wg_x, wg_y)

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        return ((spec.out_channels * spec.in_per_group * math.prod(spec.kernel_size)
                 + spec.out_channels) * acc_dtype(spec).itemsize)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        return (with_overrides(self, self.config(spec, limits)),
                *pack_operands(dctx, queue, weight, bias, spec, 1, allocate), allocate)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        cfg, nfb, packed, packed_bias, allocate = state
        plan = memoised(("conv_rows", dctx, spec, cfg, limits, x.dtype, x.strides, y.strides),
                        lambda: self._plan_launch(dctx, spec, cfg, limits, x.dtype, x.strides,
                                                  y.strides))
        src = None
        if plan is not None and plan[0] is not None:
            pitch, height = plan[0]
            src = border_free_input(dctx, queue, x, spec, pitch, limits, allocate, height)
        if plan is None or (plan[0] is not None and src is None):
            # The padded copy would not fit the device.
            direct_fallback(dctx, queue, 1, nfb, packed, packed_bias, x, y, spec, limits)
            return
        _, prg, global_size, local_size, x_strides, tail = plan
        buf, off = (x.buffer, x.offset) if src is None else (src.buffer, src.offset)
        enqueue(prg.get(dctx), "conv_rows", queue, global_size, local_size,
                buf, np.int64(off), *x_strides,
                packed, packed_bias, np.int32(packed_bias is not None),
                y.buffer, np.int64(y.offset), *tail)

    def _plan_launch(self, dctx: DeviceContext, spec: ConvSpec, cfg: RowsConfig,
                     limits: Limits, x_dtype: np.dtype, x_strides: tuple[int, ...],
                     y_strides: tuple[int, ...]) -> tuple | None:
        """``((pitch, height) of the padded copy or None when read in place, program,
        global size, local size, input strides, scalars after the output offset)``,
        or None when the padded copy does not fit."""
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        xs = layout_strides(x_strides, spec)
        cols = 8 * cfg.nv
        nrb = -(-out_h // cfg.rows)
        limit = (self.MAX_BORDER_SHARE_WIDE if kh * kw > 25
                 else self.MAX_BORDER_SHARE_PLANE if kd == 1 else self.MAX_BORDER_SHARE)
        pad = None
        row_buffer = (cols - 1) * sw + (kw - 1) * dw + 1
        if (xs[4] == 1 and row_buffer <= self.MAX_ROW_BUFFER
                and self.border_share(spec, cfg) <= limit):
            # Read the input in place, borders applied in the kernel (one launch).
            in_dtype, strides = x_dtype, xs[:4]
            sizes = spatial3(spec.in_size, 1)
            pads = spatial3(spec.pad_before, 0)
        else:
            # Many border blocks (small images, 3-D) or strided along W: a padded
            # copy (pad.cl) large enough that every block reads inside it.
            pitch = (round_up(out_w, cols) - 1) * sw + (kw - 1) * dw + 1
            height = (nrb * cfg.rows - 1) * sh + (kh - 1) * dh + 1
            padding = padding_plan(dctx, spec, x_strides, x_dtype, pitch, height, limits)
            if padding[0] == "too big":
                return None
            pad = (pitch, height)
            in_dtype, strides, row = acc_dtype(spec), padding[-2], padding[-1]
            pd, ph, _ = spatial3(spec.padded_size, 1)
            sizes = (pd, max(height, ph), row)
            pads = (0, 0, 0)
        defines = type_defines(spec, in_dtype, "IN")
        defines.update(BORDER=BORDER_CODES[spec.border], NV=cfg.nv, OR=cfg.rows, KH=kh,
                       KW=kw, SH=sh, SW=sw, DH=dh, KW_UNROLL=cfg.kw_unroll,
                       ROWS_UNROLL_MAX=self.ROWS_UNROLL_MAX,
                       BORDER_FREE=int(pad is not None))
        if pad is None:
            defines["ROW_LEN"] = row_buffer
        prg, wg_x, wg_y = fitted_program(dctx, "conv_rows.cl", "conv_rows", defines, cfg.wg_x,
                                         cfg.wg_y, limits.max_work_group)
        global_size = (round_up(-(-out_w // cols), wg_x), round_up(out_d * nrb, wg_y),
                       spec.batch * spec.groups)
        i32, i64 = np.int32, np.int64
        tail = (*(i64(v) for v in layout_strides(y_strides, spec)),
                *(i32(v) for v in sizes),
                *(i32(v) for v in (out_d, out_h, out_w, kd, sd, dd, dw, spec.groups,
                                   spec.in_per_group)),
                *(i32(v) for v in pads), acc_dtype(spec).type(spec.fill_value))
        return (pad, prg, global_size, (wg_x, wg_y, 1), tuple(i64(v) for v in strides), tail)


class SeparablePath:
    """Rank-1 kernels of one-filter groups as two 1-D passes (columns, then rows).

    A KH x KW kernel that is the outer product of a column and a row costs
    KH + KW multiply-adds per output instead of KH * KW. ``prepare`` checks
    the host weights (in float64: each filter against the outer product of
    its row and column through its largest entry); when a filter is not
    rank 1 within the dtype's rounding, or the weights are a device array, the
    problem goes to the rows path as usual. Both passes run conv_rows.cl: the
    first over the input with the KH x 1 column and the padding along H, into
    a scratch of the accumulator type; the second over the scratch with the
    1 x KW row, the padding along W and the bias. Padding one axis after the
    other equals padding both for every border mode except a constant fill
    other than zero (the second pass would pad with the fill itself, not with
    the first pass of it), which this path leaves to the others.
    """

    name = "separable"
    overrides: dict[str, int] = {}
    # Whether it applies depends on the weights' values, which clconv.tune (random
    # weights) cannot judge: not a tuning candidate, and it comes before a stored
    # winner in choose_path.
    weight_dependent = True
    # Measured on PoCL against the 2-D rows kernel (2026-11-29, interleaved in one
    # process): 15x15 on 512x512 2.23 -> 1.45 ms, on RGB 1080p 37.9 -> 12.7 ms,
    # 11x11 on 512x512 1.98 -> 1.24 ms; 9x9 and smaller, or 128x128 images, no
    # gain (two user-level passes: the extra pass costs as much as it saves).
    MIN_TAPS = 121
    MIN_OUTPUTS = 1 << 18
    # Largest |filter - outer product| over largest |filter| below this: rank 1
    # (a float32 rounding of an exact outer product stays near 1e-7).
    RANK_TOL = {"float32": 1e-6, "float64": 1e-13}

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        kh, kw = spec.kernel_size[-2:] if spec.ndim == 2 else (0, 0)
        return (spec.ndim == 2 and spec.dtype in self.RANK_TOL and spec.in_per_group == 1
                and spec.out_per_group == 1 and spec.stride[-1] == 1 and min(kh, kw) >= 2
                and kh * kw >= self.MIN_TAPS and kh <= RowsPath.MAX_KH
                and kw <= RowsPath.MAX_KW
                and math.prod(spec.output_shape) >= self.MIN_OUTPUTS
                and not (spec.border == "constant" and spec.fill_value != 0))

    @staticmethod
    def passes(spec: ConvSpec) -> tuple[ConvSpec, ConvSpec]:
        """The column pass (input -> scratch) and the row pass (scratch -> output)."""
        (kh, kw), (sh, _), (dh, dw) = spec.kernel_size, spec.stride, spec.dilation
        (bh, bw), (ah, aw) = spec.pad_before, spec.pad_after
        oh, w = spec.out_size[0], spec.in_size[1]
        cols = spec.replace(kernel_size=(kh, 1), stride=(sh, 1), dilation=(dh, 1),
                            pad_before=(bh, 0), pad_after=(ah, 0), out_size=(oh, w),
                            flip=False, has_bias=False)
        rows = spec.replace(in_size=(oh, w), kernel_size=(1, kw), stride=(1, 1),
                            dilation=(1, dw), pad_before=(0, bw), pad_after=(0, aw),
                            flip=False)
        return cols, rows

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        return 2 * ROWS.packed_bytes(spec, limits)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Any, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        factors = None if isinstance(weight, Operand) else self.factors(weight, spec)
        if factors is None:
            return ("rows", ROWS.prepare(dctx, queue, weight, bias, spec, limits, allocate))
        col, row = factors
        cols, rows = self.passes(spec)
        return ("separable",
                ROWS.prepare(dctx, queue, col, None, cols, limits, allocate),
                ROWS.prepare(dctx, queue, row, bias, rows, limits, allocate), allocate)

    def factors(self, weight: Any, spec: ConvSpec) -> tuple[np.ndarray, np.ndarray] | None:
        """``(column, row)`` weights whose outer products are the filters, or None."""
        weight = np.asarray(weight)
        # Learned kernels are rarely rank 1: the first filter alone usually decides.
        if weight.shape[0] > 1 and self._rank1(weight[:1], spec) is None:
            return None
        return self._rank1(weight, spec)

    def _rank1(self, weight: np.ndarray, spec: ConvSpec
               ) -> tuple[np.ndarray, np.ndarray] | None:
        w = np.asarray(weight, dtype=np.float64)[:, 0]  # (F, KH, KW)
        if spec.flip:
            w = w[:, ::-1, ::-1]
        if not np.isfinite(w).all():
            return None
        f = np.arange(w.shape[0])
        size = np.abs(w).reshape(len(f), -1)
        i, j = np.divmod(size.argmax(axis=1), w.shape[2])
        pivot = w[f, i, j]
        pivot = np.where(pivot == 0, 1.0, pivot)  # an all-zero filter: zero factors
        col = w[f, :, j] / pivot[:, None]          # (F, KH), 1 at the pivot
        row = w[f, i, :]                           # (F, KW)
        misfit = np.abs(w - col[:, :, None] * row[:, None, :]).reshape(len(f), -1).max(axis=1)
        if (misfit > self.RANK_TOL[spec.dtype] * size.max(axis=1)).any():
            return None
        acc = acc_dtype(spec)
        return col[:, None, :, None].astype(acc), row[:, None, None, :].astype(acc)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        if state[0] == "rows":
            ROWS.launch(dctx, queue, state[1], x, y, spec, limits)
            return
        _, col_state, row_state, allocate = state
        cols, rows = self.passes(spec)
        acc = acc_dtype(spec)
        n, c, (oh, w) = spec.batch, spec.in_channels, cols.out_size
        shape = (n, oh, w, c) if spec.channels_last else (n, c, oh, w)
        mid = Operand(allocate(max(math.prod(shape) * acc.itemsize, 1)), 0,
                      contiguous_strides(shape), shape, acc)
        ROWS.launch(dctx, queue, col_state, x, mid, cols, limits)
        ROWS.launch(dctx, queue, row_state, mid, y, rows, limits)


ROWS = RowsPath()
