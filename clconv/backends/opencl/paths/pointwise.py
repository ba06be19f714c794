"""The pointwise path: 1x1 kernels, stride 1, no padding, as one GEMM over the pixels."""

from __future__ import annotations

import dataclasses
import math

from ...._spec import ConvSpec
from ..context import DeviceContext, Limits
from ..plan import Layout, Plan
from .common import layout_strides, work_group
from .gemm import GemmConfig, GemmPath, gemm_config, gemm_plan


class PointwisePath(GemmPath):
    """conv_gemm.cl with one tap over the spatial axes seen as one long row (when
    input and output are contiguous over them), so every block of ``OB`` pixels
    is full."""

    name = "pointwise"

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        return (super().supports(spec, limits)
                and all(k == 1 for k in spec.kernel_size) and all(s == 1 for s in spec.stride)
                and not any(spec.pad_before) and not any(spec.pad_after))

    def width(self, spec: ConvSpec) -> int:
        return math.prod(spec.out_size)

    def config(self, spec: ConvSpec, limits: Limits) -> GemmConfig:
        # Four channels per K step (one tap per channel). On CPUs with one
        # filter block per work-item, 16 work-items per group: the pixels of a
        # group share each weight load. With several blocks (AVX-512) the
        # blocks share it already, and single-item groups run fastest.
        cfg = gemm_config(spec, limits, self.width(spec), gpu_wide=64, rows=False)
        if limits.group_items == 1 and cfg.nv == 1:
            cfg = dataclasses.replace(cfg, wg_x=work_group(16, limits.max_work_group, 16))
        return cfg

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: GemmConfig, layout: Layout,
             limits: Limits) -> Plan:
        flat = _flatten_spatial(spec, layout)
        if flat is None:  # not contiguous over the pixels: the 2-D/3-D launch
            return GemmPath.plan(self, dctx, spec, config, layout, limits)
        one, flat_layout = flat
        return gemm_plan(dctx, one, config, flat_layout, limits)


def _flatten_spatial(spec: ConvSpec, layout: Layout) -> tuple[ConvSpec, Layout] | None:
    """``spec`` and ``layout`` seen as 1-D over all pixels, when both operands are
    contiguous over them; None otherwise."""
    size = math.prod(spec.in_size)
    for strides, sizes in ((layout.x_strides, spec.in_size), (layout.y_strides, spec.out_size)):
        st = layout_strides(strides, spec)[2:][-len(sizes):]
        expect = 1
        for s, n in zip(reversed(st), reversed(sizes)):
            if n > 1 and s != expect * st[-1]:
                return None
            expect *= n
    lay = 1 if spec.channels_last else 2

    def flat(strides: tuple[int, ...]) -> tuple[int, ...]:
        w = strides[-2] if spec.channels_last else strides[-1]
        return (*strides[:lay], w, *strides[lay + spec.ndim:])

    one = dataclasses.replace(spec, in_size=(size,), kernel_size=(1,), stride=(1,),
                              dilation=(1,), pad_before=(0,), pad_after=(0,), out_size=(size,))
    return one, dataclasses.replace(layout, x_strides=flat(layout.x_strides),
                                    y_strides=flat(layout.y_strides))
