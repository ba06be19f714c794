"""The interleaved paths: one kernel shared by every channel of a channels-last image,
run over each row's pixels x channels as one line (conv_rows.cl with ``CI``), in
one pass or, for large rank-1 kernels, as the separable path's two passes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...._spec import ConvSpec, contiguous_strides
from ..context import DeviceContext, Limits
from ..plan import Layout, Plan, Scratch
from .base import ForwardPath
from .common import acc_dtype, layout_strides
from .pack import pack_operands
from .rows import RowsConfig, RowsPath
from .separable import SeparablePath


class InterleavedPath(ForwardPath):
    """Depthwise 2-D filters whose channels share one kernel (``filter2d`` on RGB
    photos) over a channels-last image.

    Each image row is one line of W x C values and the kernel's taps along W
    lie C apart in it, so the rows kernel reads the image where it lies (any
    dtype, no pad pass) and stores whole vectors of the result; the rows
    path would first copy the image into channel planes and then store the
    result element by element, C apart. Borders are applied in the kernel,
    mapping pixel columns and keeping each value's channel (``CI``). Declines
    weights whose channels differ (:attr:`weight_dependent`) and device
    weights; needs stride 1 along W, no bias (one value per channel) and
    operands contiguous over a row's pixels and channels (other layouts run
    the rows path with the same packed weights).
    """

    name = "interleaved"
    Config = RowsConfig
    weight_dependent = True

    def __init__(self, rows: RowsPath) -> None:
        self.rows = rows

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        return interleaves(self.rows, spec, limits)

    def config(self, spec: ConvSpec, limits: Limits) -> RowsConfig:
        return self.rows.config(interleaved_spec(spec), limits)

    def variants(self, spec: ConvSpec, limits: Limits) -> list[dict[str, int]]:
        # Borders are always applied in the kernel here: no pad-pass variant.
        return [v for v in self.rows.variants(interleaved_spec(spec), limits)
                if "pad_pass" not in v]

    def block(self, config: Any) -> int:
        return 1

    def pack(self, dctx: DeviceContext, queue: Any, weight: Any, bias: Any, spec: ConvSpec,
             config: Any, allocate: Any, in_place: bool = False) -> dict[str, Any] | None:
        if not shared(weight):
            return None
        # Every channel's taps, as the rows path packs them (its fallback reads them
        # all; the interleaved kernel reads the first).
        return pack_operands(dctx, queue, weight, bias, spec, 1, allocate, in_place)

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: RowsConfig, layout: Layout,
             limits: Limits) -> Plan:
        line = interleaved_layout(spec, layout)
        if line is None:
            return self.rows.plan(dctx, spec, self.rows.config(spec, limits), layout, limits)
        return self.rows.rows_plan(dctx, interleaved_spec(spec), config, line, limits,
                                   interleave=spec.in_channels)


class SeparableInterleavedPath(SeparablePath):
    """The separable path's column and row passes, each run as the interleaved path
    runs its one pass (the intermediate is channels-last, contiguous): for large
    rank-1 kernels shared by every channel of a channels-last image (Gaussian
    blurs of RGB photos). Declines what either path declines."""

    name = "separable_interleaved"

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        return super().supports(spec, limits) and all(
            interleaves(self.rows, p, limits) for p in self.passes(spec))

    def pack(self, dctx: DeviceContext, queue: Any, weight: Any, bias: Any, spec: ConvSpec,
             config: Any, allocate: Any, in_place: bool = False) -> dict[str, Any] | None:
        if not shared(weight):
            return None
        return super().pack(dctx, queue, weight, bias, spec, config, allocate, in_place)

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: Any, layout: Layout,
             limits: Limits) -> Plan:
        cols, rows = self.passes(spec)
        n, c, (oh, w) = spec.batch, spec.in_channels, cols.out_size
        mid = contiguous_strides((n, oh, w, c))
        first_layout = interleaved_layout(cols, Layout(layout.x_dtype, layout.x_strides, mid))
        second_layout = interleaved_layout(rows, Layout(acc_dtype(spec), mid, layout.y_strides,
                                                        y_dtype=layout.y_dtype))
        if first_layout is None or second_layout is None:
            return super().plan(dctx, spec, config, layout, limits)
        passes = []
        for one, line in ((cols, first_layout), (rows, second_layout)):
            flat = interleaved_spec(one)
            passes.append(self.rows.rows_plan(dctx, flat, self.rows.config(flat, limits), line,
                                              limits, interleave=c))
        scratch = Plan((), (Scratch("mid", max(n * oh * w * c * acc_dtype(spec).itemsize, 1)),))
        return scratch.then(passes[0].renamed({"y": "mid", "w": "wc", "b": "bc"})).then(
            passes[1].renamed({"x": "mid", "xp": "xp2"}))


def shared(weight: Any) -> bool:
    """Whether ``weight`` is a host array whose channels (axis 0) hold one kernel."""
    return isinstance(weight, np.ndarray) and bool((weight == weight[:1]).all())


def interleaves(rows: RowsPath, spec: ConvSpec, limits: Limits) -> bool:
    """Whether ``spec`` can run interleaved: channels-last 2-D depthwise, stride 1 along
    W, no bias, and a line the rows kernel supports."""
    if not (spec.ndim == 2 and spec.channels_last and spec.in_channels > 1
            and spec.groups == spec.in_channels == spec.out_channels
            and spec.stride[1] == 1 and not spec.has_bias):
        return False
    line = interleaved_spec(spec)
    widest = RowsConfig(nv=4)  # the border row the kernel gathers, at its longest
    return (rows.supports(line, limits)
            and rows.row_buffer(line, widest) <= RowsPath.MAX_ROW_BUFFER)


def interleaved_spec(spec: ConvSpec) -> ConvSpec:
    """``spec`` (channels-last, depthwise, one kernel) as one channel whose W axis is
    each row's W x C values: taps and padding along W C times wider."""
    c = spec.in_channels
    (bh, bw), (ah, aw) = spec.pad_before, spec.pad_after
    return dataclasses.replace(
        spec, in_channels=1, out_channels=1, groups=1,
        in_size=(spec.in_size[0], spec.in_size[1] * c),
        dilation=(spec.dilation[0], spec.dilation[1] * c),
        pad_before=(bh, bw * c), pad_after=(ah, aw * c),
        out_size=(spec.out_size[0], spec.out_size[1] * c), has_bias=False,
        channels_last=False)


def interleaved_layout(spec: ConvSpec, layout: Layout) -> Layout | None:
    """``layout`` seen by :func:`interleaved_spec`, or None unless both operands are
    contiguous over each row's pixels and channels."""
    c = spec.in_channels
    flat = []
    for strides in (layout.x_strides, layout.y_strides):
        sn, sc, _, sh, sw = layout_strides(strides, spec)
        if sc != 1 or sw != c:
            return None
        flat.append((sn, 1, sh, 1))
    return dataclasses.replace(layout, x_strides=flat[0], y_strides=flat[1])
