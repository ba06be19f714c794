"""The register-blocked implicit-GEMM forward paths (kernels_cl/conv_gemm.cl):
``gemm`` for groups of at least 4 filters and ``pointwise`` for 1x1 kernels
over flattened pixels.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._spec import ConvSpec
from .context import DeviceContext
from .direct import direct_fallback
from .launch import (
    Operand,
    acc_dtype,
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
from .padding import border_free_input
from .weights import pack_operands


@dataclass(frozen=True)
class GemmConfig:
    """Blocking of one conv_gemm.cl build: FB filters x OB output columns per work-item."""

    fb: int
    ob: int
    wg_x: int
    wg_y: int
    cu: int = 1  # channels per unrolled step of the K loop
    flat: int = 0  # 1: blocks of OB consecutive pixels of a depth slice (crossing rows)


class GemmPath:
    """Dense groups: the register-blocked implicit GEMM of kernels_cl/conv_gemm.cl.

    Each work-item keeps ``OB`` accumulators of ``FB`` filters (``float16``
    vectors by default) and per tap loads one packed weight vector and ``OB``
    input values: K = CG * taps multiply-add steps. Covers every stride,
    dilation, border mode, layout and 1/2/3-D problem (via the pad pre-pass);
    groups with few filters go to other paths. float64 uses 8 filters x 6
    columns (two ``double4`` per accumulator).
    """

    name = "gemm"
    overrides: dict[str, int] = {}
    # Measured on PoCL/Zen 3 (1x64x56x56 64 3x3): 16 filters x 6 columns
    # ~65-74 GFLOP/s; 16x4 ~60, 16x8 ~44 (register spills), 8x8 ~52.
    MAX_TAPS = 81  # taps along (H, W) fully unrolled per build

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        kh, kw = spatial3(spec.kernel_size, 1)[1:]
        return (fast_dtype(spec) and spec.out_per_group >= 4 and kh * kw <= self.MAX_TAPS
                and spec.in_per_group * math.prod(spec.kernel_size) >= 4)

    @staticmethod
    def config(spec: ConvSpec, limits: Limits, width: int, gpu_wide: int = 16,
               rows: bool = True) -> GemmConfig:
        """Tiles for output rows of ``width`` columns; GPU groups up to ``gpu_wide`` along x.

        ``rows``: ``spec``'s own output rows are launched (not a flattened view),
        so blocks may cross them (``flat``) when that leaves far fewer blocks.
        """
        fg = spec.out_per_group
        fb = 16 if fg > 8 else 8 if fg > 4 else 4
        ob = 6 if fb == 16 else 8
        if spec.dtype == "float64":
            # Same register budget in doubles: 8 filters (two double4) x 6
            # columns. 1x64x56x56 64 3x3: 11.4 ms on direct -> 3.0-3.5 ms;
            # 4 filters x 8 columns: 7.2 ms.
            fb = min(fb, 8)
            ob = 6 if fb == 8 else 8
        height = spatial3(spec.out_size, 1)[1]  # rows of one output depth slice
        flat = 0
        if rows and height > 1 and -(-height * width // ob) < height * -(-width // ob):
            # Blocks cross rows whenever rows would leave partly empty blocks:
            # 7x7 needs 9 blocks of 6 pixels instead of 14 of up to 6 columns
            # (gemm kernel, 1x512x7x7 512 3x3: 1.88 -> 1.25 ms; 14x14 256:
            # 1.37 -> 1.07; 56x56 64: 1.21 -> 1.11; 8x32x64x64: 6.66 -> 6.27).
            flat = 1
        elif width < ob:
            ob = max(width, 1)
        # One tap per channel (1x1 kernels the pointwise path leaves: strided or
        # padded): unroll 4 channels per K step, as pointwise does (1x256x56x56
        # -> 512 1x1 stride 2, clconv tune: 2.22 -> 1.87 ms).
        cu = 4 if math.prod(spec.kernel_size) == 1 else 1
        if limits.group_items > 1:
            x_items = -(-max(width * (height if flat else 1), 1) // ob) * -(-fg // fb)
            return GemmConfig(fb, ob, *gpu_group(limits, x_items, gpu_wide), cu=cu, flat=flat)
        return GemmConfig(fb, ob, 1, 1, cu=cu, flat=flat)

    def _config(self, spec: ConvSpec, limits: Limits, width: int) -> GemmConfig:
        """``config`` with this instance's tuned overrides (output block <= ``width``)."""
        return memoised(("gemm config", self, spec, limits, width),
                        lambda: self._fresh_config(spec, limits, width))

    def _fresh_config(self, spec: ConvSpec, limits: Limits, width: int) -> GemmConfig:
        cfg = self.config(spec, limits, width)
        if self.overrides:
            cfg = with_overrides(self, cfg)
            if width and cfg.ob > width:
                cfg = dataclasses.replace(cfg, ob=max(width, 1))
        return cfg

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        fb = self._config(spec, limits, spatial3(spec.out_size, 1)[2]).fb
        filters = spec.groups * -(-spec.out_per_group // fb) * fb
        return ((filters * spec.in_per_group * math.prod(spec.kernel_size) + spec.out_channels)
                * acc_dtype(spec).itemsize)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        cfg = self._config(spec, limits, spatial3(spec.out_size, 1)[2])
        return (cfg, *pack_operands(dctx, queue, weight, bias, spec, cfg.fb, allocate),
                allocate)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        cfg, nfb, packed, packed_bias, allocate = state
        src = border_free_input(dctx, queue, x, spec, 1, limits, allocate)
        if src is None:
            direct_fallback(dctx, queue, cfg.fb, nfb, packed, packed_bias, x, y, spec, limits)
            return
        prg, global_size, local_size, x_strides, sizes = memoised(
            ("conv_gemm", dctx, spec, cfg, nfb, limits, src.strides, y.strides),
            lambda: self._plan_launch(dctx, spec, cfg, nfb, limits, src.strides, y.strides))
        enqueue(prg.get(dctx), "conv_gemm", queue, global_size, local_size,
                src.buffer, np.int64(src.offset), *x_strides,
                packed, packed_bias, np.int32(packed_bias is not None),
                y.buffer, np.int64(y.offset), *sizes)

    @staticmethod
    def _plan_launch(dctx: DeviceContext, spec: ConvSpec, cfg: GemmConfig, nfb: int,
                     limits: Limits, x_strides: tuple[int, ...], y_strides: tuple[int, ...],
                     ) -> tuple:
        """Program, global and local size, and the scalar arguments of one launch."""
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        defines = type_defines(spec, np.dtype(acc_dtype(spec)), "IN")
        defines.update(FB=cfg.fb, OB=cfg.ob, KH=kh, KW=kw, CU=cfg.cu, FLAT=cfg.flat)
        prg, wg_x, wg_y = fitted_program(dctx, "conv_gemm.cl", "conv_gemm", defines, cfg.wg_x,
                                         cfg.wg_y, limits.max_work_group)
        if cfg.flat:  # blocks of pixels of a depth slice x depth slices
            global_size = (round_up(-(-out_h * out_w // cfg.ob) * nfb, wg_x),
                           round_up(out_d, wg_y), spec.batch * spec.groups)
        else:  # column blocks x output rows
            global_size = (round_up(-(-out_w // cfg.ob) * nfb, wg_x),
                           round_up(out_d * out_h, wg_y), spec.batch * spec.groups)
        i32, i64 = np.int32, np.int64
        sizes = (*(i64(v) for v in layout_strides(y_strides, spec)),
                 *(i32(v) for v in (out_d, out_h, out_w, kd, sd, sh, sw, dd, dh, dw,
                                    spec.groups, spec.in_per_group, spec.out_per_group, nfb)))
        return (prg, global_size, (wg_x, wg_y, 1),
                (i64(x_strides[0]), *(i32(v) for v in x_strides[1:])), sizes)


class PointwisePath(GemmPath):
    """1x1 kernels, stride 1, no padding: a plain GEMM over the flattened pixels.

    The spatial axes are seen as one long row (when input and output are
    contiguous over them), so every block of ``OB`` pixels is full and the
    kernel is conv_gemm.cl with one tap.
    """

    name = "pointwise"

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        return (super().supports(spec, dctx, limits)
                and all(k == 1 for k in spec.kernel_size) and all(s == 1 for s in spec.stride)
                and not any(spec.pad_before) and not any(spec.pad_after))

    @staticmethod
    def config(spec: ConvSpec, limits: Limits, width: int) -> GemmConfig:
        # GemmPath.config unrolls 4 channels per K step (one tap per channel);
        # here 16 work-items per group as well (1x256x28x28 -> 128, PoCL on
        # Zen 4, interleaved in one process: 0.66-0.68 -> 0.58-0.59 ms median;
        # either alone ~0.62).
        cfg = GemmPath.config(spec, limits, math.prod(spec.out_size), gpu_wide=64, rows=False)
        if limits.group_items == 1:
            cfg = dataclasses.replace(cfg, wg_x=work_group(16, limits.max_work_group, 16))
        return cfg

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        cfg = self._config(spec, limits, 0)
        return (cfg, *pack_operands(dctx, queue, weight, bias, spec, cfg.fb, allocate),
                allocate)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        flat = memoised(("flat", spec, x.strides, x.shape, y.strides, y.shape),
                        lambda: _flatten_spatial(spec, x, y))
        if flat is None:  # not contiguous over the pixels: the 2-D/3-D launch
            GemmPath.launch(self, dctx, queue, state, x, y, spec, limits)
        else:
            (xs, xshape), (ys, yshape), one = flat
            GemmPath.launch(self, dctx, queue, state,
                            dataclasses.replace(x, strides=xs, shape=xshape),
                            dataclasses.replace(y, strides=ys, shape=yshape), one, limits)


def _flatten_spatial(spec: ConvSpec, x: Operand, y: Operand) -> tuple | None:
    """``((x strides, x shape), (y strides, y shape), spec)`` seen as 1-D over all
    pixels, when both are contiguous over them; None otherwise."""
    size = math.prod(spec.in_size)
    for op, sizes in ((x, spec.in_size), (y, spec.out_size)):
        st = layout_strides(op.strides, spec)[2:][-len(sizes):]
        expect, ok = 1, True
        for s, n in zip(reversed(st), reversed(sizes)):
            if n > 1 and s != expect * st[-1]:
                ok = False
            expect *= n
        if not ok:
            return None
    lay = 1 if spec.channels_last else 2
    def flat(op: Operand) -> tuple[tuple[int, ...], tuple[int, ...]]:
        st = op.strides
        w = st[-2] if spec.channels_last else st[-1]
        return ((*st[:lay], w, *st[lay + spec.ndim:]),
                (*op.shape[:lay], size, *op.shape[lay + spec.ndim:]))
    one = spec.replace(in_size=(size,), kernel_size=(1,), stride=(1,), dilation=(1,),
                       pad_before=(0,), pad_after=(0,), out_size=(size,))
    return flat(x), flat(y), one
