"""The lanes path: one output pixel per work-item (kernels_cl/conv_lanes.cl), the
style that compilers vectorising across work-items want (Intel's CPU runtime, GPUs)."""

from __future__ import annotations

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
class LanesConfig:
    """FB filters per work-item; WG_X consecutive output columns x WG_Y rows per group."""

    fb: int = tunable(4, tuple(range(1, 17)))
    wg_x: int = tunable(16, POW2)
    wg_y: int = tunable(1, POW2)


class LanesPath(ForwardPath):
    """Every convolution over a border-free input (pad pre-pass when needed); the
    direct kernel with the same packed weights when the pad scratch does not fit."""

    name = "lanes"
    Config = LanesConfig
    style = "lanes"
    MAX_TAPS = 256  # taps along (H, W), unrolled per build
    # Work-items per group the built-in configuration aims for: a few SIMD
    # widths, so that a CPU thread's share of a group is long enough.
    GROUP_ITEMS = 64
    # The smallest problem (multiply-adds) the heuristic gives it on a CPU of the
    # vector style: below, the pad pass and the launch weigh more than the kernel.
    MIN_CPU_MACS = 1 << 22

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        kh, kw = spatial3(spec.kernel_size, 1)[1:]
        return kh * kw <= self.MAX_TAPS

    def preferred_across_styles(self, spec: ConvSpec, limits: Limits) -> bool:
        """On a CPU whose compiler vectorises across work-items too (Intel's), ahead
        of the gemm path for float32 channels-first layers with stride 1 along W, at
        least 8 filters per group and 9 taps per plane, whose output rows fill
        whole 16-lane vectors or whose groups have at most 16 filters (one gemm
        filter block): there one weight broadcast per filter feeds a vector of
        16 columns, and the gemm path's blocks are short or few
        (benchmarks/README.md)."""
        kh, kw = spatial3(spec.kernel_size, 1)[1:]
        fg = spec.out_per_group
        return (limits.lanes_vectorised and spec.dtype == "float32" and not spec.channels_last
                and spec.stride[-1] == 1 and fg >= 8 and kh * kw >= 9
                and (spec.out_size[-1] % 16 == 0 or fg <= 16) and spec.macs >= self.MIN_CPU_MACS)

    def config(self, spec: ConvSpec, limits: Limits) -> LanesConfig:
        fg = spec.out_per_group
        fb = 16 if fg >= 16 else 8 if fg >= 8 else 4 if fg >= 4 else fg
        if spec.dtype == "float64":
            fb = min(fb, 8)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        items = min(self.GROUP_ITEMS, limits.max_work_group)
        wg_x = work_group(out_w, items, items)
        wg_y = work_group(out_d * out_h, max(items // wg_x, 1), max(items // wg_x, 1))
        return LanesConfig(fb, wg_x, wg_y)

    def variants(self, spec: ConvSpec, limits: Limits) -> list[dict[str, int]]:
        cfg = self.config(spec, limits)
        out = [{"fb": fb} for fb in (1, 2, 4, 8, 16)
               if fb != cfg.fb and fb <= max(spec.out_per_group, 1)]
        return out + [{"wg_x": wg, "wg_y": 1} for wg in (16, 32, 64)
                      if wg != cfg.wg_x and wg <= limits.max_work_group]

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: LanesConfig, layout: Layout,
             limits: Limits) -> Plan:
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sw, dw = spec.stride[-1], spec.dilation[-1]
        # Rows long enough for every lane of the last group (no clamping, so the
        # lanes' loads stay one vector).
        pitch = (round_up(out_w, config.wg_x) - 1) * sw + (kw - 1) * dw + 1
        src = border_free(dctx, spec, layout, pitch, limits)
        if src is None:
            return direct_plan(dctx, spec, direct_config(spec, limits, config.fb), layout,
                               limits)
        y_strides = layout_strides(layout.y_strides, spec)
        defines = type_defines(spec, acc_dtype(spec), "IN")
        defines.update(FB=config.fb, KH=kh, KW=kw, SW=sw, YW1=int(y_strides[4] == 1))
        prg, wg_x, wg_y = fitted_program(dctx, "conv_lanes.cl", "conv_lanes", defines,
                                         config.wg_x, config.wg_y, limits.max_work_group)
        nfb = ceil_div(spec.out_per_group, config.fb)
        global_size = (round_up(out_w, wg_x), round_up(out_d * out_h, wg_y),
                       spec.batch * spec.groups * nfb)
        step = Step.of(
            prg, "conv_lanes", global_size, (wg_x, wg_y, 1),
            Ref(src.source), OffsetOf(src.source), np.int64(src.strides[0]),
            *i32s(src.strides[1:]), Ref("w"), Ref("b"), np.int32(spec.has_bias),
            Ref("y"), OffsetOf("y"), *i64s(y_strides),
            *i32s((out_d, out_h, out_w, kd, *spatial3(spec.stride, 1),
                   *spatial3(spec.dilation, 1), spec.groups, spec.in_per_group,
                   spec.out_per_group, nfb)))
        return src.plan.then(Plan((step,)))
