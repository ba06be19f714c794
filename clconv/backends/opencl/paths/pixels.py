"""The pixels path: dense layers with few output pixels and large weights
(kernels_cl/conv_pixels.cl), vectorised along the pixels so that the weights
are read in place instead of packed on every call."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...._spec import ConvSpec, contiguous_strides
from ..build import ProgramRef
from ..context import DeviceContext, Limits
from ..execute import Operand, host_operand
from ..plan import Layout, OffsetOf, Plan, Ref, Scratch, Step
from .base import ForwardPath
from .common import (
    POW2,
    acc_dtype,
    ceil_div,
    fitted_program,
    i32s,
    i64s,
    layout_strides,
    round_up,
    spatial3,
    tunable,
    type_defines,
)
from .pack import pack_bias
from .pad import INT32_MAX, border_free, scratch_fits

WG_IM2COL = 8  # taps per work-group of im2col_pixels

# The heuristic takes this path when the pixels of the whole batch are at most
# PREFER_PIXELS and the weight has at least PREFER_WEIGHTS elements: the gemm
# path's per-call packing then costs about as much as the convolution. It also
# takes every channels-first 1x1 layer of stride 1 (see preferred()).
PREFER_PIXELS = 256
PREFER_WEIGHTS = 1 << 17
# Filters per work-item for PV pixel vectors: 20-24 accumulators, but fewer
# weight rows per step as the vectors grow (12 filters of 2 vectors, as many
# accumulators as 8 of 3, ran 1.4x slower on Intel's CPU runtime).
FILTERS_FOR_VECTORS = {1: 12, 2: 10, 3: 8, 4: 6}


@dataclass(frozen=True)
class PixelsConfig:
    """One conv_pixels.cl build: FBK filters x PV vectors of PVW output pixels per
    work-item, CU taps per unrolled step."""

    pvw: int = tunable(16, (4, 8, 16))
    pv: int = tunable(4, tuple(range(1, 9)))
    fbk: int = tunable(6, tuple(range(1, 17)))
    cu: int = tunable(1, (1, 2, 4))
    wg_x: int = tunable(1, POW2)
    wg_y: int = tunable(1, POW2)


def pixels_config(spec: ConvSpec, limits: Limits) -> PixelsConfig:
    """Vectors as wide as the device's, blocks that waste the fewest pixels, and
    as many filters as about three quarters of the vector registers hold."""
    width = max(limits.vector_width, 4)
    if spec.dtype == "float64":
        width //= 2
    pvw = 16 if width >= 16 else 8 if width >= 8 else 4
    pixels = math.prod(spec.out_size)
    nvec = ceil_div(pixels, pvw)
    if is_pointwise(spec) and nvec >= 3:
        # The input is the column matrix: the last block moves back to end at
        # the last pixel, so a block size wastes the pixels computed twice.
        def computed(b: int) -> int:
            return ceil_div(pixels, b * pvw) * b * pvw if pixels >= b * pvw else 1 << 62

        pv = 3 if computed(3) <= pixels * 1.1 else min((3, 2, 1), key=computed)
    elif nvec <= 4:
        pv = nvec
    else:  # the least padded block count; ties go to the larger block
        pv = min((4, 3, 2), key=lambda b: (ceil_div(nvec, b) * b, -b))
    fbk = FILTERS_FOR_VECTORS[pv]
    if limits.vector_width < 16:  # 16 vector registers
        fbk //= 2
    return PixelsConfig(pvw, pv, max(1, min(fbk, spec.out_per_group)))


def is_pointwise(spec: ConvSpec) -> bool:
    """A 1x1 kernel of stride 1: the input (border-free) is its own column matrix."""
    return all(k == 1 for k in spec.kernel_size) and all(s == 1 for s in spec.stride)


def _column_bytes(spec: ConvSpec, cfg: PixelsConfig) -> int:
    """Bytes of the column matrix: every (sample, group), every tap, padded pixels."""
    taps = spec.in_per_group * math.prod(spec.kernel_size)
    pp = round_up(math.prod(spec.out_size), cfg.pv * cfg.pvw)
    return spec.batch * spec.groups * taps * pp * acc_dtype(spec).itemsize


def pixels_plan(dctx: DeviceContext, spec: ConvSpec, cfg: PixelsConfig, layout: Layout,
                limits: Limits) -> Plan:
    """The pad pre-pass (when needed), im2col_pixels and conv_pixels."""
    src = border_free(dctx, spec, layout, 1, limits)
    if src is None:  # supports() keeps the padded input within one buffer
        raise AssertionError("the pixels path's border-free input does not fit")
    acc = acc_dtype(spec)
    out_d, out_h, out_w = spatial3(spec.out_size, 1)
    kd, kh, kw = spatial3(spec.kernel_size, 1)
    pixels = out_d * out_h * out_w
    block = cfg.pv * cfg.pvw
    pp = round_up(pixels, block)
    taps = spec.in_per_group * kd * kh * kw
    ng = spec.batch * spec.groups
    sn, sc, sd, sh = src.strides
    # A 1x1 kernel of stride 1 whose input pixels lie in one run per channel, as
    # the output's do: the kernel reads the input as its column matrix.
    direct = (is_pointwise(spec) and pixels >= block
              and sh == out_w and (out_d == 1 or sd == out_h * out_w)
              and src.row == out_w)
    defines = type_defines(spec, acc, "IN")
    defines.update(PVW=cfg.pvw, PV=cfg.pv, FBK=cfg.fbk, CU=cfg.cu, COLS_DIRECT=int(direct),
                   VSTORE=int(limits.vector_stores))
    prg, wg_x, wg_y = fitted_program(dctx, "conv_pixels.cl", "conv_pixels", defines, cfg.wg_x,
                                     cfg.wg_y, limits.max_work_group)
    fg = spec.out_per_group
    steps, scratch = [], []
    if direct:
        columns = (Ref(src.source), OffsetOf(src.source),
                   *i64s((sn, spec.in_per_group * sc, sc)))
    else:
        im2col = ProgramRef.of("conv_pixels.cl", {**defines, "WG_X": WG_IM2COL, "WG_Y": 1})
        dctx.program(im2col)  # build it now: a build error belongs to planning
        steps.append(Step.of(
            im2col, "im2col_pixels", (round_up(taps, WG_IM2COL), ng), (WG_IM2COL, 1),
            Ref(src.source), OffsetOf(src.source), np.int64(sn), *i32s((sc, sd, sh)),
            Ref("col"),
            *i32s((out_d, out_h, out_w, kd, kh, kw, *spatial3(spec.stride, 1),
                   *spatial3(spec.dilation, 1), spec.groups, spec.in_per_group, taps, pp))))
        scratch.append(Scratch("col", ng * taps * pp * acc.itemsize))
        columns = (Ref("col"), np.int64(0), *i64s((spec.groups * taps * pp, taps * pp, pp)))
    steps.append(Step.of(
        prg, "conv_pixels",
        (round_up(pp // block, wg_x), round_up(ceil_div(fg, cfg.fbk), wg_y), ng),
        (wg_x, wg_y, 1),
        *columns, Ref("w"), OffsetOf("w"), Ref("b"), np.int32(spec.has_bias),
        Ref("y"), OffsetOf("y"), *i64s(layout_strides(layout.y_strides, spec)),
        *i32s((out_h, out_w, pixels, spec.groups, fg, taps))))
    return src.plan.then(Plan(tuple(steps), tuple(scratch)))


class PixelsPath(ForwardPath):
    """Few output pixels, large weights: a column matrix of the pixels, then
    ``FBK`` filters x ``PV * PVW`` pixels per work-item, the weights read in
    place (packed with one filter per block only to flip them or change their
    type or layout). Every stride, dilation, border mode, layout, group count,
    dtype and rank."""

    name = "pixels"
    style = "vector"
    Config = PixelsConfig

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        # border_free() must not decline: no other kernel reads these weights.
        cfg = pixels_config(spec, limits)
        taps = spec.in_per_group * math.prod(spec.kernel_size)
        return (_column_bytes(spec, cfg) <= limits.max_alloc // 4 and scratch_fits(spec, limits)
                and taps * round_up(math.prod(spec.out_size), cfg.pv * cfg.pvw) <= INT32_MAX)

    def preferred(self, spec: ConvSpec, limits: Limits) -> bool:
        # Channels-first 1x1 layers of stride 1 read the input as it lies (no
        # column matrix) and the weights too (no packing): 1.0-1.8x the
        # pointwise path's calls on both CPU runtimes (benchmarks/README.md).
        if is_pointwise(spec) and not spec.channels_last and spec.dtype == "float32":
            return math.prod(spec.out_size) >= 3 * self.config(spec, limits).pvw
        return (spec.out_per_group >= 16
                and spec.batch * math.prod(spec.out_size) <= PREFER_PIXELS
                and math.prod(spec.weight_shape) >= PREFER_WEIGHTS)

    def config(self, spec: ConvSpec, limits: Limits) -> PixelsConfig:
        return pixels_config(spec, limits)

    def variants(self, spec: ConvSpec, limits: Limits) -> list[dict[str, int]]:
        cfg = self.config(spec, limits)
        out = [{"fbk": f} for f in (4, 8, 12) if f != cfg.fbk and f <= spec.out_per_group]
        out += [{"pv": pv, "fbk": max(1, 24 // pv)} for pv in (2, 3, 4) if pv != cfg.pv]
        return out + [{"cu": 4}]

    def block(self, config: PixelsConfig) -> int:
        return 1

    def pack(self, dctx: DeviceContext, queue: Any, weight: Any, bias: Any, spec: ConvSpec,
             config: PixelsConfig, allocate: Any, in_place: bool = False,
             ) -> dict[str, Any] | None:
        """The weight as it lies when it is already what the kernel reads (contiguous,
        accumulator type, not flipped: a device array itself, a host array in place
        with ``in_place``, else a copy), otherwise packed with one filter per block."""
        acc = acc_dtype(spec)
        natural = None
        if not spec.flip and np.dtype(weight.dtype) == acc:
            if isinstance(weight, Operand):
                if weight.strides == contiguous_strides(weight.shape):
                    natural = weight
            elif weight.flags.c_contiguous:
                natural = host_operand(dctx, queue, weight, allocate, in_place=in_place)
        if natural is None:
            return super().pack(dctx, queue, weight, bias, spec, config, allocate, in_place)
        return {"w": natural, "b": pack_bias(dctx, queue, bias, spec, allocate)}

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: PixelsConfig, layout: Layout,
             limits: Limits) -> Plan:
        return pixels_plan(dctx, spec, config, layout, limits)
