"""The direct forward paths (kernels_cl/conv_direct.cl): ``direct`` runs every
convolution, ``tiny`` is the same kernel in one launch for small problems,
and :func:`direct_fallback` runs a fast path's piece whose scratch does not fit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._spec import ConvSpec
from .context import DeviceContext
from .launch import (
    BORDER_CODES,
    Operand,
    acc_dtype,
    enqueue,
    fitted_program,
    layout_strides,
    memoised,
    round_up,
    spatial3,
    type_defines,
    with_overrides,
)
from .limits import Limits
from .weights import pack_operands


@dataclass(frozen=True)
class DirectConfig:
    """Blocking and work-group size of one direct-path build."""

    fb: int
    ob: int
    wg_x: int
    wg_y: int


class DirectPath:
    """The generic path: kernels_cl/conv_direct.cl, every feature, any device."""

    name = "direct"
    overrides: dict[str, int] = {}  # tuned tile parameters (see configured)

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        return True

    @staticmethod
    def config(spec: ConvSpec, limits: Limits) -> DirectConfig:
        fg = spec.out_per_group
        fb = 16 if fg >= 16 else 8 if fg >= 8 else 4 if fg >= 4 else 2 if fg >= 2 else 1
        if spec.dtype == "float64":
            fb = min(fb, 4)  # double4 fills one AVX2 register; wider vectors spill
        # Measured on PoCL/AVX2: about 8-12 independent vector accumulators per
        # work-item hide the multiply-add latency while fitting 16 registers;
        # 16 filters x 6 columns needs the fewest loads per multiply-add.
        # One-filter groups vectorise OB columns instead.
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

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        fb = with_overrides(self, self.config(spec, limits)).fb
        filters = spec.groups * -(-spec.out_per_group // fb) * fb
        return ((filters * spec.in_per_group * math.prod(spec.kernel_size) + spec.out_channels)
                * acc_dtype(spec).itemsize)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        cfg = with_overrides(self, self.config(spec, limits))
        return (cfg, *pack_operands(dctx, queue, weight, bias, spec, cfg.fb, allocate))

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        cfg, nfb, packed, packed_bias = state
        plan = memoised(("conv_direct", dctx, spec, cfg, nfb, x.dtype, x.offset, x.strides,
                         y.offset, y.strides),
                        lambda: self._plan(dctx, cfg, nfb, x, y, spec))
        prg, kernel, global_size, local_size, x_args, y_args, tail = plan
        enqueue(prg.get(dctx), kernel, queue, global_size, local_size, x.buffer, *x_args, packed,
                packed_bias, np.int32(packed_bias is not None), y.buffer, *y_args, *tail)

    @staticmethod
    def _plan(dctx: DeviceContext, cfg: DirectConfig, nfb: int, x: Operand, y: Operand,
              spec: ConvSpec) -> tuple:
        """Program, kernel name, launch sizes and scalar arguments (memoised per geometry)."""
        # One filter per group: the variant that vectorises along output columns.
        kernel = "conv_direct_ow" if cfg.fb == 1 and cfg.ob in (2, 4, 8, 16) else "conv_direct"
        defines = type_defines(spec, x.dtype, "IN")
        defines.update(BORDER=BORDER_CODES[spec.border], FB=cfg.fb, OB=cfg.ob)
        prg, wg_x, wg_y = fitted_program(dctx, "conv_direct.cl", kernel, defines, cfg.wg_x,
                                         cfg.wg_y, cfg.wg_x * cfg.wg_y)
        cfg = dataclasses.replace(cfg, wg_x=wg_x, wg_y=wg_y)
        acc = acc_dtype(spec).type
        in_d, in_h, in_w = spatial3(spec.in_size, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        pd, ph, pw = spatial3(spec.pad_before, 0)
        global_size = (round_up(-(-out_w // cfg.ob), cfg.wg_x),
                       round_up(out_d * out_h, cfg.wg_y),
                       spec.batch * spec.groups * nfb)
        i64, i32 = np.int64, np.int32
        x_args = (i64(x.offset), *(i64(s) for s in layout_strides(x.strides, spec)))
        y_args = (i64(y.offset), *(i64(s) for s in layout_strides(y.strides, spec)))
        tail = (i64(in_d), i64(in_h), i64(in_w), i64(out_d), i64(out_h), i64(out_w),
                i32(kd), i32(kh), i32(kw), i32(sd), i32(sh), i32(sw),
                i32(dd), i32(dh), i32(dw), i64(pd), i64(ph), i64(pw),
                i32(spec.groups), i32(spec.in_per_group), i32(spec.out_per_group), i32(nfb),
                acc(spec.fill_value))
        return prg, kernel, global_size, (cfg.wg_x, cfg.wg_y, 1), x_args, y_args, tail


def direct_fallback(dctx: DeviceContext, queue: Any, fb: int, nfb: int, packed: Any, bias: Any,
              x: Operand, y: Operand, spec: ConvSpec, limits: Limits) -> None:
    """Run one piece on the direct kernel with weights packed by a fast path."""
    cfg = DirectPath.config(spec, limits)
    ob = cfg.ob if fb > 1 else (8 if spec.dtype == "float64" else 16)
    cfg = dataclasses.replace(cfg, fb=fb, ob=ob)
    DirectPath().launch(dctx, queue, (cfg, nfb, packed, bias), x, y, spec, limits)


class TinyPath(DirectPath):
    """Tiny problems: one launch of the direct kernel (borders handled inside).

    Every OpenCL command costs a synchronisation-sized delay on a CPU device
    (~50 us on PoCL), more than such a problem computes, so this path skips
    the pad pre-pass of the fast paths; with small host operands copied at
    buffer creation and one blocking read, a call is one launch + one read.
    """

    name = "tiny"
    MAX_MACS = 1 << 16

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        return spec.macs <= self.MAX_MACS
