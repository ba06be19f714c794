"""The direct path (kernels_cl/conv_direct.cl): every convolution, any device.

Borders are handled inside the kernel, so it needs no scratch; the fast
paths plan it (:func:`direct_plan`, with their own packed weights) for a
piece whose pad scratch would not fit the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...._spec import ConvSpec
from ..context import DeviceContext, Limits
from ..plan import Layout, OffsetOf, Plan, Ref, Step
from .base import ForwardPath
from .common import (
    BORDER_CODES,
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


@dataclass(frozen=True)
class DirectConfig:
    """Blocking and work-group shape of one conv_direct.cl build: FB filters x OB
    output columns per work-item."""

    fb: int = tunable(1, (1, 2, 4, 8, 16))
    ob: int = tunable(8, tuple(range(1, 17)))
    wg_x: int = tunable(8, POW2)
    wg_y: int = tunable(4, POW2)


def direct_config(spec: ConvSpec, limits: Limits, fb: int | None = None) -> DirectConfig:
    """The built-in blocking (``fb`` given: the packing of another path's weights)."""
    if fb is None:
        fg = spec.out_per_group
        fb = 16 if fg >= 16 else 8 if fg >= 8 else 4 if fg >= 4 else 2 if fg >= 2 else 1
        if spec.dtype == "float64":
            fb = min(fb, 4)  # double4 fills one AVX2 register; wider vectors spill
    # About 8-12 independent vector accumulators per work-item hide the
    # multiply-add latency within 16 registers; 16 filters x 6 columns needs
    # the fewest loads per multiply-add. One-filter groups vectorise OB
    # columns instead.
    ob = 6 if fb == 16 else 8
    if fb == 1:
        ob = 8 if spec.dtype == "float64" else 16
    rows = math.prod(spec.out_size[:-1])
    wg_x, wg_y = (8, 4) if rows > 1 else (32, 1)
    while wg_x * wg_y > limits.max_work_group:
        if wg_y > 1:
            wg_y //= 2
        else:
            wg_x //= 2
    return DirectConfig(fb, ob, wg_x, wg_y)


def direct_plan(dctx: DeviceContext, spec: ConvSpec, cfg: DirectConfig, layout: Layout,
                limits: Limits) -> Plan:
    """One launch of conv_direct.cl reading ``x`` (borders inside), packed ``w``/``b``."""
    # One filter per group: the variant that vectorises along output columns.
    kernel = "conv_direct_ow" if cfg.fb == 1 and cfg.ob in (2, 4, 8, 16) else "conv_direct"
    defines = type_defines(spec, layout.x_dtype, "IN")
    defines.update(BORDER=BORDER_CODES[spec.border], FB=cfg.fb, OB=cfg.ob)
    prg, wg_x, wg_y = fitted_program(dctx, "conv_direct.cl", kernel, defines, cfg.wg_x,
                                     cfg.wg_y, min(cfg.wg_x * cfg.wg_y, limits.max_work_group))
    nfb = ceil_div(spec.out_per_group, cfg.fb)
    out_d, out_h, out_w = spatial3(spec.out_size, 1)
    global_size = (round_up(ceil_div(out_w, cfg.ob), wg_x), round_up(out_d * out_h, wg_y),
                   spec.batch * spec.groups * nfb)
    step = Step.of(
        prg, kernel, global_size, (wg_x, wg_y, 1),
        Ref("x"), OffsetOf("x"), *i64s(layout_strides(layout.x_strides, spec)),
        Ref("w"), Ref("b"), np.int32(spec.has_bias),
        Ref("y"), OffsetOf("y"), *i64s(layout_strides(layout.y_strides, spec)),
        *i64s((*spatial3(spec.in_size, 1), out_d, out_h, out_w)),
        *i32s((*spatial3(spec.kernel_size, 1), *spatial3(spec.stride, 1),
               *spatial3(spec.dilation, 1))),
        *i64s(spatial3(spec.pad_before, 0)),
        *i32s((spec.groups, spec.in_per_group, spec.out_per_group, nfb)),
        acc_dtype(spec).type(spec.fill_value))
    return Plan((step,))


class DirectPath(ForwardPath):
    """The generic path: every feature, any device, no scratch."""

    name = "direct"
    Config = DirectConfig

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        return True

    def config(self, spec: ConvSpec, limits: Limits) -> DirectConfig:
        return direct_config(spec, limits)

    def variants(self, spec: ConvSpec, limits: Limits) -> list[dict[str, int]]:
        cfg = self.config(spec, limits)
        obs = (4, 8, 16) if cfg.fb == 1 else (4, 6, 8)
        return [{"ob": ob} for ob in obs if ob != cfg.ob]

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: DirectConfig, layout: Layout,
             limits: Limits) -> Plan:
        return direct_plan(dctx, spec, config, layout, limits)
