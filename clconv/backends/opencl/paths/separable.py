"""The separable path: rank-1 kernels of one-filter groups as a column pass and a
row pass of the rows kernel."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...._spec import ConvSpec, contiguous_strides
from ....kernels import rank1_factors
from ..context import DeviceContext, Limits
from ..plan import Layout, Plan, Scratch
from .base import ForwardPath
from .common import acc_dtype
from .pack import pack_operands
from .rows import RowsPath


@dataclass(frozen=True)
class SeparableConfig:
    """The separable path has no parameters of its own (each pass takes the rows
    path's configuration for its problem)."""


class SeparablePath(ForwardPath):
    """A KH x KW kernel that is the outer product of a column and a row costs KH + KW
    multiply-adds per output instead of KH * KW.

    :meth:`pack` checks the host weights
    (:func:`clconv.kernels.rank1_factors`); when a filter is not rank 1 within
    the dtype's rounding, or the weights are a
    device array, it declines and the problem takes the next path. The first
    pass runs over the input with the KH x 1 column and the padding along H,
    into a scratch of the accumulator type; the second over the scratch with
    the 1 x KW row, the padding along W and the bias. Padding one axis after
    the other equals padding both for every border mode except a constant fill
    other than zero (the second pass would pad with the fill itself, not with
    the first pass of it), which this path leaves to the others.
    """

    name = "separable"
    Config = SeparableConfig
    # Whether it applies depends on the weights' values, which clconv.tune (random
    # weights) cannot judge: not a tuning candidate, and it comes before a stored
    # winner in the choice.
    weight_dependent = True
    # Below these sizes the second pass costs as much as it saves.
    MIN_TAPS = 121
    MIN_OUTPUTS = 1 << 18
    DTYPES = ("float32", "float64")

    def __init__(self, rows: RowsPath) -> None:
        self.rows = rows

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        kh, kw = spec.kernel_size[-2:] if spec.ndim == 2 else (0, 0)
        return (spec.ndim == 2 and spec.dtype in self.DTYPES and spec.in_per_group == 1
                and spec.out_per_group == 1 and spec.stride[-1] == 1 and min(kh, kw) >= 2
                and kh <= RowsPath.MAX_KH and kw <= RowsPath.MAX_KW
                and not (spec.border == "constant" and spec.fill_value != 0))

    def preferred(self, spec: ConvSpec, limits: Limits) -> bool:
        return (math.prod(spec.kernel_size) >= self.MIN_TAPS
                and math.prod(spec.output_shape) >= self.MIN_OUTPUTS)

    def config(self, spec: ConvSpec, limits: Limits) -> SeparableConfig:
        return SeparableConfig()

    def block(self, config: Any) -> int:
        return 1

    def packed_bytes(self, spec: ConvSpec, config: Any) -> int:
        return 2 * super().packed_bytes(spec, config)

    @staticmethod
    def passes(spec: ConvSpec) -> tuple[ConvSpec, ConvSpec]:
        """The column pass (input -> scratch) and the row pass (scratch -> output)."""
        (kh, kw), (sh, _), (dh, dw) = spec.kernel_size, spec.stride, spec.dilation
        (bh, bw), (ah, aw) = spec.pad_before, spec.pad_after
        oh, w = spec.out_size[0], spec.in_size[1]
        cols = dataclasses.replace(spec, kernel_size=(kh, 1), stride=(sh, 1), dilation=(dh, 1),
                                   pad_before=(bh, 0), pad_after=(ah, 0), out_size=(oh, w),
                                   flip=False, has_bias=False)
        rows = dataclasses.replace(spec, in_size=(oh, w), kernel_size=(1, kw), stride=(1, 1),
                                   dilation=(1, dw), pad_before=(0, bw), pad_after=(0, aw),
                                   flip=False)
        return cols, rows

    def pack(self, dctx: DeviceContext, queue: Any, weight: Any, bias: Any, spec: ConvSpec,
             config: Any, allocate: Any, in_place: bool = False) -> dict[str, Any] | None:
        factors = self.factors(weight, spec) if isinstance(weight, np.ndarray) else None
        if factors is None:
            return None
        cols, rows = self.passes(spec)
        col = pack_operands(dctx, queue, factors[0], None, cols, 1, allocate, in_place)
        row = pack_operands(dctx, queue, factors[1], bias, rows, 1, allocate, in_place)
        # "keep": what the packing may use in place, held as long as the mapping.
        return {"wc": col["w"], "bc": None, "w": row["w"], "b": row["b"], "keep": (col, row)}

    def factors(self, weight: np.ndarray, spec: ConvSpec) -> tuple[np.ndarray, np.ndarray] | None:
        """``(column, row)`` weights whose outer products are the filters, or None."""
        w = np.asarray(weight)[:, 0]  # (F, KH, KW)
        if spec.flip:
            w = w[:, ::-1, ::-1]
        # Learned kernels are rarely rank 1: the first filter alone usually decides.
        if w.shape[0] > 1 and rank1_factors(w[:1], spec.dtype) is None:
            return None
        found = rank1_factors(w, spec.dtype)
        if found is None:
            return None
        acc = acc_dtype(spec)
        col, row = found
        return col[:, None, :, None].astype(acc), row[:, None, None, :].astype(acc)

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: Any, layout: Layout,
             limits: Limits) -> Plan:
        cols, rows = self.passes(spec)
        acc = acc_dtype(spec)
        n, c, (oh, w) = spec.batch, spec.in_channels, cols.out_size
        shape = (n, oh, w, c) if spec.channels_last else (n, c, oh, w)
        mid = contiguous_strides(shape)
        first = self.rows.plan(dctx, cols, self.rows.config(cols, limits),
                               Layout(layout.x_dtype, layout.x_strides, mid), limits)
        second = self.rows.plan(dctx, rows, self.rows.config(rows, limits),
                                Layout(acc, mid, layout.y_strides, y_dtype=layout.y_dtype),
                                limits)
        scratch = Plan((), (Scratch("mid", max(math.prod(shape) * acc.itemsize, 1)),))
        return scratch.then(first.renamed({"y": "mid", "w": "wc", "b": "bc"})).then(
            second.renamed({"x": "mid", "xp": "xp2"}))
