"""The rows path: one filter per group (depthwise, single-channel images, 1-D,
3-D, large kernels) by the row-blocked kernel of kernels_cl/conv_rows.cl."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...._spec import ConvSpec
from ..context import DeviceContext, Limits
from ..plan import Layout, OffsetOf, Plan, Ref, Step
from .base import ForwardPath
from .common import (
    BORDER_CODES,
    CL_TYPES,
    POW2,
    acc_dtype,
    ceil_div,
    fitted_program,
    gpu_group,
    i32s,
    i64s,
    layout_strides,
    round_up,
    spatial3,
    tunable,
    type_defines,
    work_group,
)
from .direct import direct_config, direct_plan
from .pad import border_free


@dataclass(frozen=True)
class RowsConfig:
    """Blocking of one conv_rows.cl build: OR rows x 8*NV columns per work-item.

    ``pad_pass``: 1 pads the input in a pre-pass, 0 applies borders inside the
    kernel (reading the input in place), -1 decides by the share of border
    blocks (:meth:`RowsPath.border_share`).
    """

    nv: int = tunable(2, (1, 2, 3, 4))
    rows: int = tunable(4, tuple(range(1, 9)))
    kw_unroll: int = tunable(8, tuple(range(1, 129)))
    wg_x: int = tunable(1, POW2)
    wg_y: int = tunable(1, POW2)
    pad_pass: int = tunable(-1, (-1, 0, 1))


class RowsPath(ForwardPath):
    """Output columns are float8 lanes (stride 1 or 2 along W); each work-item
    computes ``OR`` rows x ``8 * NV`` columns and reuses every loaded input vector
    across the output rows it feeds. Borders are handled inside the kernel (one
    launch, the input read in place, any dtype) unless many blocks touch them
    (3-D, wide kernels) or the input is strided along W: then a pad pre-pass
    makes a border-free copy."""

    name = "rows"
    style = "vector"
    Config = RowsConfig
    # Kernel sizes the path takes (and the separable paths' passes): the rows
    # loop is unrolled only up to ROWS_UNROLL_MAX, so a tall kernel runs it as
    # a loop; past these sizes an FFT would be the better tool.
    MAX_KW = 128
    MAX_KH = 128
    # Border blocks are slower than interior ones (column border blocks first
    # gather each input row through the border rule), more so for 3-D and wide
    # kernels: above these shares of them a pad pass first is cheaper. Planar
    # kernels of up to 25 taps always read in place (benchmarks/README.md).
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
    # Column border blocks on CPUs gather all their input rows before the first
    # multiply-add (conv_rows.cl's PREFILL) when these are at most this many
    # elements in all: private memory a GPU would have to spill.
    PREFILL_MAX = 256

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        kh, kw = spatial3(spec.kernel_size, 1)[1:]
        return (spec.out_per_group == 1 and spec.stride[-1] in (1, 2)
                and kw <= self.MAX_KW and kh <= self.MAX_KH)

    def block(self, config: RowsConfig) -> int:
        return 1

    def config(self, spec: ConvSpec, limits: Limits) -> RowsConfig:
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        if spec.ndim == 1 or out_h == 1:
            rows, nv = 1, 4
        else:
            # 4 rows x 16 columns: per input row and tap 2 vector loads and up
            # to 4 weight broadcasts feed 8 multiply-adds.
            rows, nv = 4, 2 if out_w > 8 else 1
        if spec.dtype == "float64":
            nv = 1  # a double8 is two registers already
        nv = min(nv, ceil_div(out_w, 8))
        # Fewer vectors per row when that wastes fewer columns (56 wide: 7
        # blocks of 8 instead of 4 of 16, and a narrower padded copy).
        nv = max(range(1, nv + 1), key=lambda v: (-round_up(out_w, 8 * v), v))
        kw_unroll = kw if kw <= 16 else 8
        sh, dh = spatial3(spec.stride, 1)[1], spatial3(spec.dilation, 1)[1]
        if (nv == 1 and rows == 4 and kd == 1 and out_h > 4 and spec.dtype != "float64"
                and (7 * sh + (kh - 1) * dh + 1) * kw_unroll <= self.ROWS_UNROLL_MAX):
            # One vector per row: 8 rows keep the work per item of 4 x 16, so
            # the per-item set-up is amortised over as many multiply-adds.
            rows = 8
        col_blocks = ceil_div(out_w, 8 * nv)
        if limits.group_items > 1:
            return RowsConfig(nv, rows, kw_unroll, *gpu_group(limits, col_blocks, 16))
        # Small kernels: little work per item, so many items per work-group
        # (a CPU runtime's per-group cost dominates otherwise); the same for
        # every kernel on one row (1-D: thousands of items). A runtime that
        # runs a task per work-group gains from larger groups still.
        taps = kd * kh * kw * spec.in_per_group
        one_row = out_d == 1 and out_h == 1
        wanted = 64 if limits.group_tasks else 16 if taps <= 32 or one_row else 1
        wg_x = work_group(col_blocks, limits.max_work_group, wanted)
        if wg_x < col_blocks < wanted and round_up(col_blocks, 2 * wg_x) * 4 <= col_blocks * 5:
            wg_x *= 2  # one group across the row, a few idle items (7 blocks: 8)
        # Fill the group with row blocks when a row has fewer column blocks.
        row_blocks = out_d * ceil_div(out_h, rows)
        wg_y = work_group(row_blocks, max(limits.max_work_group // wg_x, 1),
                          max(wanted // wg_x, 1))
        return RowsConfig(nv, rows, kw_unroll, wg_x, wg_y)

    def variants(self, spec: ConvSpec, limits: Limits) -> list[dict[str, int]]:
        cfg = self.config(spec, limits)
        cols = ceil_div(spec.out_size[-1], 8)
        one_row = spec.ndim == 1 or spec.out_size[-2] == 1
        shapes = (((1, 1), (1, 2), (1, 4)) if one_row
                  else ((1, 4), (2, 2), (4, 1), (4, 2), (8, 1)))
        out: list[dict[str, int]] = []
        for rows, nv in shapes:
            params = {"rows": rows, "nv": min(nv, cols)}
            if (params["rows"], params["nv"]) != (cfg.rows, cfg.nv) and params not in out:
                out.append(params)
        out += [{"wg_x": wg} for wg in (1, 4, 16, 64)
                if wg != cfg.wg_x and wg <= limits.max_work_group]
        return out + [{"pad_pass": 1 - self.pads(spec, cfg, None)}]

    @staticmethod
    def border_share(spec: ConvSpec, cfg: RowsConfig) -> float:
        """The share of work-items whose block reads padding (for the in-place kernel)."""
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        in_d, in_h, in_w = spatial3(spec.in_size, 1)
        pd, ph, pw = spatial3(spec.pad_before, 0)
        cols = 8 * cfg.nv
        inner = 1.0
        for count, step, reach, pad, size in (
                (out_d, sd, (kd - 1) * dd, pd, in_d),
                (ceil_div(out_h, cfg.rows), cfg.rows * sh, (cfg.rows - 1) * sh + (kh - 1) * dh,
                 ph, in_h),
                (ceil_div(out_w, cols), cols * sw, (cols - 1) * sw + (kw - 1) * dw, pw, in_w)):
            first = ceil_div(pad, step)               # blocks with start >= 0
            last = (size - 1 - reach + pad) // step   # blocks with end < size
            inner *= max(0, min(last, count - 1) - first + 1) / count
        return 1.0 - inner

    def row_buffer(self, spec: ConvSpec, cfg: RowsConfig) -> int:
        """Elements of the input row a column border block gathers."""
        kw, sw, dw = spec.kernel_size[-1], spec.stride[-1], spec.dilation[-1]
        return (8 * cfg.nv - 1) * sw + (kw - 1) * dw + 1

    def pads(self, spec: ConvSpec, cfg: RowsConfig, layout: Layout | None) -> int:
        """1 when the input goes through the pad pre-pass, 0 when read in place."""
        unit_w = layout is None or layout_strides(layout.x_strides, spec)[4] == 1
        if not unit_w or self.row_buffer(spec, cfg) > self.MAX_ROW_BUFFER:
            return 1
        if cfg.pad_pass >= 0:
            return cfg.pad_pass
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        limit = (self.MAX_BORDER_SHARE_WIDE if kh * kw > 25
                 else self.MAX_BORDER_SHARE_PLANE if kd == 1 else self.MAX_BORDER_SHARE)
        return int(self.border_share(spec, cfg) > limit)

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: RowsConfig, layout: Layout,
             limits: Limits) -> Plan:
        return self.rows_plan(dctx, spec, config, layout, limits)

    def rows_plan(self, dctx: DeviceContext, spec: ConvSpec, config: RowsConfig,
                  layout: Layout, limits: Limits, interleave: int = 1) -> Plan:
        """conv_rows.cl (after the pad pass where :meth:`pads` says so); ``interleave``
        > 1: the W axis interleaves that many channels (``CI``, borders in the kernel)."""
        cfg = config
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        cols = 8 * cfg.nv
        nrb = ceil_div(out_h, cfg.rows)
        defines = {"BORDER": BORDER_CODES[spec.border], "NV": cfg.nv, "OR": cfg.rows,
                   "KH": kh, "KW": kw, "SH": sh, "SW": sw, "DH": dh,
                   "KW_UNROLL": cfg.kw_unroll, "ROWS_UNROLL_MAX": self.ROWS_UNROLL_MAX}
        if interleave > 1:
            defines["CI"] = interleave
        if layout.y_dtype is not None:
            out = np.dtype(layout.y_dtype)
            defines["OUT_SAT"] = CL_TYPES[out.name]
            if out.kind in "iu" and out.itemsize <= 2:
                # Its range: float results saturate by compares (common.h).
                defines.update(OUT_SAT_LO=int(np.iinfo(out).min), OUT_SAT_HI=int(np.iinfo(out).max))
        if interleave > 1 or not self.pads(spec, cfg, layout):
            # The input in place, borders applied in the kernel (one launch).
            prep, source = Plan(()), "x"
            in_dtype, strides = layout.x_dtype, layout_strides(layout.x_strides, spec)[:4]
            sizes, pads = spatial3(spec.in_size, 1), spatial3(spec.pad_before, 0)
            row_len = self.row_buffer(spec, cfg)
            in_rows = (cfg.rows - 1) * sh + (kh - 1) * dh + 1
            prefill = limits.group_items == 1 and in_rows * row_len <= self.PREFILL_MAX
            defines.update(BORDER_FREE=0, ROW_LEN=row_len, PREFILL=int(prefill))
            pw, in_w = spec.pad_before[-1], spec.in_size[-1]
            if (not prefill and cfg.kw_unroll == kw and out_w > cols
                    and in_w >= 2 * row_len and pw < row_len):
                # The edge blocks' border reads fixed at build time (conv_rows.cl);
                # where the rows are gathered first, that is as fast (A/B in
                # benchmarks/README.md).
                rover = (out_w - 1) * sw - pw + (kw - 1) * dw - (in_w - 1)
                defines.update(EDGE=1, PWB=pw, DW_CONST=dw)
                if 0 < rover < row_len:
                    defines["ROVER"] = rover
        else:
            # A padded copy large enough that every block reads inside it.
            pitch = (round_up(out_w, cols) - 1) * sw + (kw - 1) * dw + 1
            height = (nrb * cfg.rows - 1) * sh + (kh - 1) * dh + 1
            src = border_free(dctx, spec, layout, pitch, limits, height)
            if src is None:  # the padded copy would not fit the device
                return direct_plan(dctx, spec, direct_config(spec, limits, 1), layout, limits)
            prep, source, in_dtype, strides = src.plan, src.source, acc_dtype(spec), src.strides
            pd, ph, _ = spatial3(spec.padded_size, 1)
            sizes, pads = (pd, max(height, ph), src.row), (0, 0, 0)
            defines["BORDER_FREE"] = 1
        in_dtype = np.dtype(in_dtype)
        if in_dtype.kind in "iu" and in_dtype.itemsize <= 4 and spec.dtype == "float32":
            # Integer images read in place: one vector load and conversion per
            # 8 columns (their scalar loads are not merged: 3x slower for uint8).
            defines["IN_VLOAD"] = 1
        defines.update(type_defines(spec, in_dtype, "IN"))
        prg, wg_x, wg_y = fitted_program(dctx, "conv_rows.cl", "conv_rows", defines, cfg.wg_x,
                                         cfg.wg_y, limits.max_work_group)
        global_size = (round_up(ceil_div(out_w, cols), wg_x), round_up(out_d * nrb, wg_y),
                       spec.batch * spec.groups)
        step = Step.of(
            prg, "conv_rows", global_size, (wg_x, wg_y, 1),
            Ref(source), OffsetOf(source), *i64s(strides),
            Ref("w"), Ref("b"), np.int32(spec.has_bias),
            Ref("y"), OffsetOf("y"), *i64s(layout_strides(layout.y_strides, spec)),
            *i32s(sizes),
            *i32s((out_d, out_h, out_w, kd, sd, dd, dw, spec.groups, spec.in_per_group)),
            *i32s(pads), acc_dtype(spec).type(spec.fill_value))
        return prep.then(Plan((step,)))

