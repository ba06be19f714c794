"""Typed plans, and splitting a host-input call into pieces that fit the device.

A :class:`Plan` is what a path decides for one piece of work: the kernel
launches (:class:`Step`) in order, with their programs, sizes and scalar
arguments, and the scratch buffers they need. Buffers appear in a plan only
by name (:class:`Ref`, :class:`OffsetOf`): the executor binds ``x``, ``y``,
``w``, ``b`` and the scratch names to real buffers at run time, so a plan is
a pure function of the problem and the operands' layouts and is cached by
the device context.

Pieces (:func:`plan_pieces`): batch slices come first; when one sample is
still too large, the output is cut into tiles along the first spatial axis.
A tile's input slab holds exactly the input rows the tile reads; rows that
the border rule maps elsewhere (reflect, wrap, ...) are gathered on the host
with the kernels' own index map (:mod:`clconv._borders`), and constant-mode
overhang stays device-side padding. Each output value is computed by the
same operations in the same order as in one piece, so the stitched result is
identical. The budget counts everything a piece holds at once: its input and
output, the packed weights and the scratch of its plan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._borders import source_index
from ..._spec import ConvSpec
from ...errors import AllocationError
from .build import ProgramRef
from .context import Limits


@dataclass(frozen=True)
class Ref:
    """A buffer argument, bound by name when the plan runs."""

    name: str


@dataclass(frozen=True)
class OffsetOf:
    """The element offset (int64) of the operand bound to ``name``."""

    name: str


@dataclass(frozen=True)
class Scratch:
    """A temporary buffer that the plan's steps share."""

    name: str
    nbytes: int


@dataclass(frozen=True)
class Step:
    """One kernel launch: program, kernel, sizes, and arguments in order.

    ``args`` holds NumPy scalars, ``None`` (a null buffer), :class:`Ref` and
    :class:`OffsetOf`; ``slots`` lists where the latter two stand, so the
    executor fills them without scanning every argument.
    """

    program: ProgramRef
    kernel: str
    global_size: tuple[int, ...]
    local_size: tuple[int, ...]
    args: tuple[Any, ...]
    slots: tuple[tuple[int, bool, str], ...] = ()

    @classmethod
    def of(cls, program: ProgramRef, kernel: str, global_size: tuple[int, ...],
           local_size: tuple[int, ...], *args: Any) -> Step:
        slots = tuple((i, isinstance(a, OffsetOf), a.name) for i, a in enumerate(args)
                      if isinstance(a, (Ref, OffsetOf)))
        return cls(program, kernel, tuple(global_size), tuple(local_size), args, slots)


@dataclass(frozen=True)
class Plan:
    """The steps of one piece of work and the scratch they use."""

    steps: tuple[Step, ...]
    scratch: tuple[Scratch, ...] = ()
    constants: tuple[tuple[str, np.ndarray], ...] = ()  # small tables, on the device once each

    @property
    def scratch_bytes(self) -> int:
        return sum(s.nbytes for s in self.scratch)

    def then(self, other: Plan) -> Plan:
        """This plan followed by ``other`` (scratch names must differ)."""
        return Plan(self.steps + other.steps, self.scratch + other.scratch,
                    self.constants + other.constants)

    def renamed(self, names: dict[str, str]) -> Plan:
        """The same plan with its buffer names mapped by ``names`` (others kept)."""
        def arg(a: Any) -> Any:
            if isinstance(a, (Ref, OffsetOf)) and a.name in names:
                return type(a)(names[a.name])
            return a

        steps = tuple(Step.of(s.program, s.kernel, s.global_size, s.local_size,
                              *map(arg, s.args)) for s in self.steps)
        return Plan(steps, tuple(Scratch(names.get(s.name, s.name), s.nbytes)
                                 for s in self.scratch),
                    tuple((names.get(n, n), a) for n, a in self.constants))


@dataclass(frozen=True)
class Layout:
    """What a plan depends on besides the problem: operand dtype and element strides.

    ``group_offsets``, where not empty: per group, the element offsets from
    the operands' starts at which its input and its output channels begin,
    for groups that do not lie ``in_per_group`` / ``out_per_group`` channel
    strides apart (the gemm path's table mode; see
    ``OpenCLBackend.conv_forward_into``). ``filter_phases`` > 1: the filters
    of each group are that many interleaved phases, filter ``o`` stored at
    ``(o // filter_phases) * y_strides[1] + o % filter_phases`` (the gemm
    path's ``FPH``).
    """

    x_dtype: np.dtype
    x_strides: tuple[int, ...]
    y_strides: tuple[int, ...]
    group_offsets: tuple[tuple[int, int], ...] = ()
    filter_phases: int = 1
    # An integer dtype the result is stored in, rounded and saturated (the rows
    # kernels' OUT_SAT); None: the spec's dtype.
    y_dtype: np.dtype | None = None


@dataclass(frozen=True)
class Piece:
    """One launch: its sub-spec, where its input comes from and where its output goes."""

    spec: ConvSpec
    batch: slice
    rows: np.ndarray | None  # input indices along the first spatial axis, or None for all
    out_index: tuple


def _spatial_axis(spec: ConvSpec) -> int:
    """Axis of the first spatial dimension in the spec's layout."""
    return 1 if spec.channels_last else 2


def plan_pieces(spec: ConvSpec, limits: Limits, weight_bytes: int,
                scratch_bytes: Callable[[ConvSpec], int]) -> list[Piece]:
    """Pieces whose buffers fit ``limits``; one piece when everything fits.

    ``scratch_bytes(sub_spec)`` is the scratch of the plan that would run a
    piece of ``sub_spec`` (a fallback plan with less scratch included: the
    path decides what it needs).
    """
    item = np.dtype(spec.dtype).itemsize
    in_sample = math.prod(spec.input_shape[1:]) * item
    out_sample = math.prod(spec.output_shape[1:]) * item
    if weight_bytes > min(limits.max_alloc, limits.memory_budget):
        raise AllocationError(
            f"the packed weights ({weight_bytes} bytes, weight shape {spec.weight_shape}) exceed "
            f"the device's largest buffer ({limits.max_alloc} bytes); they cannot be tiled")
    budget = limits.memory_budget - weight_bytes

    def fits(sub: ConvSpec, in_bytes: int, out_bytes: int) -> bool:
        return (in_bytes <= limits.max_alloc and out_bytes <= limits.max_alloc
                and in_bytes + out_bytes + scratch_bytes(sub) <= budget)

    if fits(spec, spec.batch * in_sample, spec.batch * out_sample):  # the usual case
        return [Piece(spec, slice(0, spec.batch), None, (slice(0, spec.batch),))]
    per_piece = _largest(spec.batch, lambda nb: fits(
        dataclasses.replace(spec, batch=nb), nb * in_sample, nb * out_sample))
    if per_piece:
        return [Piece(dataclasses.replace(spec, batch=min(per_piece, spec.batch - n0)),
                      slice(n0, n0 + per_piece), None, (slice(n0, n0 + per_piece),))
                for n0 in range(0, spec.batch, per_piece)]
    return _row_tiles(spec, limits, in_sample, out_sample, fits)


def _row_tiles(spec: ConvSpec, limits: Limits, in_sample: int, out_sample: int,
               fits: Callable[[ConvSpec, int, int], bool]) -> list[Piece]:
    """Tiles of output rows along the first spatial axis, one sample at a time."""
    n, k, s, d = spec.in_size[0], spec.kernel_size[0], spec.stride[0], spec.dilation[0]
    extent = (k - 1) * d + 1
    in_row = in_sample // n
    out_row = out_sample // spec.out_size[0]

    def tile(o0: int, o1: int) -> tuple[ConvSpec, np.ndarray]:
        lo = o0 * s - spec.pad_before[0]
        hi = (o1 - 1) * s - spec.pad_before[0] + extent - 1
        if spec.border == "constant":
            first, last = max(lo, 0), min(hi, n - 1)
            if first <= last:
                idx = np.arange(first, last + 1, dtype=np.int64)
                before, after = first - lo, hi - last
            else:  # the tile reads padding only: one row, placed out of reach
                idx = np.zeros(1, dtype=np.int64)
                before, after = hi - lo + 1, 0
        else:
            idx = source_index(np.arange(lo, hi + 1), n, spec.border)
            before = after = 0
        sub = dataclasses.replace(
            spec, batch=1, in_size=(len(idx), *spec.in_size[1:]),
            pad_before=(before, *spec.pad_before[1:]), pad_after=(after, *spec.pad_after[1:]),
            out_size=(o1 - o0, *spec.out_size[1:]))
        return sub, idx

    rows = _largest(spec.out_size[0], lambda r: fits(
        tile(0, r)[0], ((r - 1) * s + extent) * in_row, r * out_row))
    if rows == 0:
        raise AllocationError(
            f"one output row of input {spec.input_shape} (kernel {spec.kernel_size}, output "
            f"{spec.output_shape}) needs more than the device's largest buffer "
            f"({limits.max_alloc} bytes) or memory budget ({limits.memory_budget} bytes)")
    lead = (slice(None),) * (_spatial_axis(spec) - 1)
    pieces = []
    for b in range(spec.batch):
        for o0 in range(0, spec.out_size[0], rows):
            o1 = min(o0 + rows, spec.out_size[0])
            sub, idx = tile(o0, o1)
            pieces.append(Piece(sub, slice(b, b + 1), idx,
                                (slice(b, b + 1), *lead, slice(o0, o1))))
    return pieces


def _largest(total: int, ok: Callable[[int], bool]) -> int:
    """The largest size in ``1..total`` that ``ok`` accepts (``ok`` is monotone), else 0."""
    lo, hi = 0, total
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def take_piece(x: np.ndarray, spec: ConvSpec, piece: Piece) -> np.ndarray:
    """The host input of ``piece`` (a view for batch slices, a gather for tiles)."""
    xb = x[piece.batch]
    if piece.rows is None:
        return xb
    return np.take(xb, piece.rows, axis=_spatial_axis(spec))
