"""The gemm path: groups of at least 4 filters as a register-blocked implicit GEMM
(kernels_cl/conv_gemm.cl) over a border-free input."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ...._spec import ConvSpec
from ..context import DeviceContext, Limits
from ..plan import Layout, OffsetOf, Plan, Ref, Step
from .base import ForwardPath
from .common import (
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
)
from .direct import direct_config, direct_plan
from .pad import border_free


@dataclass(frozen=True)
class GemmConfig:
    """Blocking of one conv_gemm.cl build: NV blocks of FB filters x OB output columns
    per work-item."""

    fb: int = tunable(16, (4, 8, 16))
    ob: int = tunable(6, tuple(range(1, 17)))
    wg_x: int = tunable(1, POW2)
    wg_y: int = tunable(1, POW2)
    cu: int = tunable(1, (1, 2, 4, 8))  # channels per unrolled step of the K loop
    flat: int = tunable(0, (0, 1))  # 1: blocks of OB consecutive pixels of a depth slice
    nv: int = tunable(1, (1, 2, 3, 4))  # blocks of FB filters per work-item
    vs: int = tunable(0, (0, 1))  # 1: one vector store per filter of a block of columns


def gemm_config(spec: ConvSpec, limits: Limits, width: int, gpu_wide: int = 16,
                rows: bool = True) -> GemmConfig:
    """Tiles for output rows of ``width`` columns; GPU groups up to ``gpu_wide`` along x.

    ``rows``: ``spec``'s own output rows are launched (not a flattened view),
    so blocks may cross them (``flat``) when that leaves far fewer blocks.
    """
    fg = spec.out_per_group
    fb = 16 if fg > 8 else 8 if fg > 4 else 4
    ob = 6 if fb == 16 else 8
    nv, vs = 1, 0
    if spec.dtype == "float64":
        # The same register budget in doubles: 8 filters (two double4) x 6 columns.
        fb = min(fb, 8)
        ob = 6 if fb == 8 else 8
    elif fb == 16 and limits.vector_width >= 16:
        # One float16 per register and 32 registers (AVX-512): up to 4 filter
        # blocks share each input load, and 16-24 accumulators hide the
        # multiply-add latency; fewer blocks take more columns instead.
        # With few taps per filter (K < 64) the stores weigh more, and 6
        # columns per work-item store faster than 4 lane by lane.
        nv = min(4, ceil_div(fg, 16))
        taps = spec.in_per_group * math.prod(spec.kernel_size)
        ob = {4: 6 if taps < 64 else 4, 3: 6}.get(nv, 12)
        if limits.vector_stores and nv != 3:
            # Stores by vector need power-of-two blocks: 8 columns where the
            # stores weigh most (per filter and column, one store per K
            # multiply-adds: K < 64, or K < 128 with a spatial kernel, whose
            # unrolled taps leave the registers for 8); 4 (or 12 columns
            # stored lane by lane, for 1-2 filter blocks) otherwise. Rows
            # narrower than the block keep the lane-by-lane blocking below.
            heavy = taps < 64 or (taps < 128 and math.prod(spec.kernel_size) > 1)
            # Output channels a multiple of 4 KiB apart share L1 sets: the 64
            # filters of 4 blocks then evict each other's lines, and wider
            # stores fill fewer of them (8x32x64x64 -> 64 3x3: 5.2 -> 4.8 ms).
            aliased = not spec.channels_last and (
                math.prod(spec.out_size) * np.dtype(spec.dtype).itemsize) % 4096 == 0
            vector_ob = 8 if heavy or (aliased and nv == 4) else 4 if nv == 4 else 12
            if width >= vector_ob and not _crosses_rows(spec, width, vector_ob, rows):
                ob, vs = vector_ob, int(vector_ob in (4, 8))
    height = spatial3(spec.out_size, 1)[1]  # rows of one output depth slice
    flat = 0
    if _crosses_rows(spec, width, ob, rows):
        # Blocks cross rows where that saves a fifth of them or more (7x7 in
        # blocks of 6 pixels: 9 instead of 14; 28x28 in blocks of 12: 66
        # instead of 84). Not for fewer: their pixel offsets are run-time
        # values then, OB more registers, which 16-24 accumulators cannot spare.
        flat = 1
    elif width < ob:
        ob = max(width, 1)
    # One tap per channel (1x1 kernels): unroll 4 channels per K step, except
    # for blocks of 4 columns stored by vector, which run faster without
    # (1x256x28x28 -> 512: 0.70 -> 0.59 ms on Intel's runtime).
    cu = 4 if math.prod(spec.kernel_size) == 1 and not (vs and ob == 4) else 1
    x_items = ceil_div(max(width * (height if flat else 1), 1), ob) * ceil_div(
        ceil_div(fg, fb), nv)
    if limits.group_items > 1:
        return GemmConfig(fb, ob, *gpu_group(limits, x_items, gpu_wide), cu=cu, flat=flat,
                          nv=nv, vs=vs)
    # Where the runtime runs a task per work-group, four neighbouring work-items
    # (fewer where the row has fewer) to one group.
    wg_x = min(4 if limits.group_tasks else 1, limits.max_work_group)
    while wg_x > 1 and wg_x > x_items:
        wg_x //= 2
    return GemmConfig(fb, ob, wg_x, 1, cu=cu, flat=flat, nv=nv, vs=vs)


def _crosses_rows(spec: ConvSpec, width: int, ob: int, rows: bool) -> bool:
    """Whether blocks of ``ob`` pixels of an output slice leave a fifth fewer blocks
    than blocks of each row (rows of ``width``; ``rows``: the spec's own are launched)."""
    height = spatial3(spec.out_size, 1)[1]
    return (rows and height > 1
            and ceil_div(height * width, ob) * 5 <= height * ceil_div(width, ob) * 4)


def gemm_plan(dctx: DeviceContext, spec: ConvSpec, cfg: GemmConfig, layout: Layout,
              limits: Limits) -> Plan:
    """The pad pre-pass (when needed) and conv_gemm.cl; the direct kernel with the same
    packed weights when the pad scratch does not fit."""
    src = border_free(dctx, spec, layout, 1, limits)
    table = layout.group_offsets
    if (table or layout.filter_phases > 1) and (src is None or src.source != "x"):
        raise ValueError("the gemm path's group table and filter phases need an input that "
                         "it reads in place")
    if src is None:
        return direct_plan(dctx, spec, direct_config(spec, limits, cfg.fb), layout, limits)
    out_d, out_h, out_w = spatial3(spec.out_size, 1)
    kd, kh, kw = spatial3(spec.kernel_size, 1)
    defines = type_defines(spec, acc_dtype(spec), "IN")
    defines.update(FB=cfg.fb, NV=cfg.nv, OB=cfg.ob, KH=kh, KW=kw, CU=cfg.cu, FLAT=cfg.flat,
                   VSTORE=cfg.vs)
    if table:
        defines["GTAB"] = 1
    if layout.filter_phases > 1:
        defines.update(FPH=layout.filter_phases, OB_FPH=cfg.ob * layout.filter_phases)
    prg, wg_x, wg_y = fitted_program(dctx, "conv_gemm.cl", "conv_gemm", defines, cfg.wg_x,
                                     cfg.wg_y, limits.max_work_group)
    nfb = ceil_div(spec.out_per_group, cfg.fb)
    nfw = ceil_div(nfb, cfg.nv)  # work-items per block of pixels
    if cfg.flat:  # blocks of pixels of a depth slice x depth slices
        global_size = (round_up(ceil_div(out_h * out_w, cfg.ob) * nfw, wg_x),
                       round_up(out_d, wg_y), spec.batch * spec.groups)
    else:  # column blocks x output rows
        global_size = (round_up(ceil_div(out_w, cfg.ob) * nfw, wg_x),
                       round_up(out_d * out_h, wg_y), spec.batch * spec.groups)
    step = Step.of(
        prg, "conv_gemm", global_size, (wg_x, wg_y, 1),
        Ref(src.source), OffsetOf(src.source), np.int64(src.strides[0]), *i32s(src.strides[1:]),
        Ref("w"), Ref("b"), np.int32(spec.has_bias),
        Ref("y"), OffsetOf("y"), *i64s(layout_strides(layout.y_strides, spec)),
        *i32s((out_d, out_h, out_w, kd, *spatial3(spec.stride, 1), *spatial3(spec.dilation, 1),
               spec.groups, spec.in_per_group, spec.out_per_group, nfb)),
        *((Ref("gtab"),) if table else ()))
    constants = (("gtab", np.asarray(table, dtype=np.int64).reshape(-1)),) if table else ()
    return src.plan.then(Plan((step,), constants=constants))


class GemmPath(ForwardPath):
    """Dense groups: each work-item keeps ``OB`` accumulators of ``FB`` filters and
    per tap loads one packed weight vector and ``OB`` input values. Every stride,
    dilation, border mode, layout and rank (via the pad pre-pass); float64 uses
    8 filters x 6 columns."""

    name = "gemm"
    style = "vector"
    Config = GemmConfig
    MAX_TAPS = 81  # taps along (H, W) fully unrolled per build

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        kh, kw = spatial3(spec.kernel_size, 1)[1:]
        return (spec.out_per_group >= 4 and kh * kw <= self.MAX_TAPS
                and spec.in_per_group * math.prod(spec.kernel_size) >= 4)

    def width(self, spec: ConvSpec) -> int:
        """The output row length the blocks tile."""
        return spatial3(spec.out_size, 1)[2]

    def config(self, spec: ConvSpec, limits: Limits) -> GemmConfig:
        return gemm_config(spec, limits, self.width(spec))

    def variants(self, spec: ConvSpec, limits: Limits) -> list[dict[str, int]]:
        cfg = self.config(spec, limits)
        width = self.width(spec)
        widths = (4, 8) if spec.dtype == "float64" else (8, 16)  # one or two registers
        fbs = [fb for fb in widths if fb <= max(4, ceil_div(spec.out_per_group, 4) * 4)]
        out = [{"fb": fb, "ob": ob, "nv": 1} for fb in fbs or [cfg.fb] for ob in (4, 6, 8)
               if (fb, ob, 1) != (cfg.fb, cfg.ob, cfg.nv) and ob <= max(width, 1)]
        if cfg.fb == 16 and spec.out_per_group > 16:  # several filter blocks per work-item
            nvs = [nv for nv in (2, 4) if nv <= ceil_div(spec.out_per_group, 16)]
            out += [{"nv": nv, "ob": ob} for nv in nvs for ob in (4, 6, 12)
                    if (nv, ob) != (cfg.nv, cfg.ob) and ob * nv <= 24]
        if cfg.ob in (2, 4, 8, 16):
            out.append({"vs": 1 - cfg.vs})
        return out + [{"cu": cu} for cu in (1, 2, 4) if cu != cfg.cu]

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: GemmConfig, layout: Layout,
             limits: Limits) -> Plan:
        width = self.width(spec)
        if layout.filter_phases > 1 and config.vs:
            # A block stores runs of OB * FPH elements: as wide as the vector
            # the configuration chose for plain blocks, and as many registers.
            config = dataclasses.replace(config, ob=max(config.ob // layout.filter_phases, 1))
        elif layout.filter_phases > 1 and not config.flat:
            # Stored element by element: blocks of equal width, so that no short
            # last block computes columns it never stores and leaves runs that
            # end inside lines its neighbour writes (16 columns: 8 + 8, not 12 + 4).
            row = spatial3(spec.out_size, 1)[2]
            config = dataclasses.replace(config, ob=ceil_div(row, ceil_div(row, config.ob)))
        if width and config.ob > width and not config.flat:
            config = dataclasses.replace(config, ob=max(width, 1))
        return gemm_plan(dctx, spec, config, layout, limits)
