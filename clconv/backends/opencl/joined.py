"""Forward convolutions written into one result, joined where the gemm path can:
the stride phases of a transposed convolution (``OpenCLBackend.conv_forward_into``).

A *part* is ``(spec, x_at, x_strides, weight, bias, y_at, y_strides)``: one
convolution reading a view of the input at element offset ``x_at`` and writing
a view of the result. Parts whose outputs interleave along the last axis
become one part with interleaved filters (:func:`joined_parts`, the kernel's
``FPH``); parts of one spec become the groups of one launch (:func:`merged`,
the kernel's group table ``GTAB``). :func:`joining` plans both per call shape.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._spec import ConvSpec
from ...errors import ArgumentError
from .context import Limits
from .paths import PATHS, Choice, choice_state
from .paths.gemm import GemmPath
from .paths.pad import reads_in_place
from .paths.pixels import PixelsPath
from .plan import Layout, Plan


@dataclass(frozen=True)
class Launch:
    """One kernel launch of a call: the joined parts it runs (``members``, indices
    into :func:`joined_parts`' list; more than one: the groups of one launch by
    a group table), its spec and layout, and the first choice with its plan
    (None where that choice depends on the weights: planned once it takes them).
    ``x_at`` / ``y_at``: where it reads and writes (0 with a group table)."""

    members: tuple[int, ...]
    spec: ConvSpec
    layout: Layout
    choice: Choice
    plan: Plan | None
    x_at: int
    y_at: int


@dataclass(frozen=True)
class Joining:
    """What a call of one shape runs: which parts join (:func:`_recipe`) and the
    launches of the joined parts."""

    recipe: tuple[Any, ...]
    launches: tuple[Launch, ...]


def call_shape(parts: list[tuple[Any, ...]]) -> tuple[tuple[Any, ...], ...]:
    """Everything of ``parts`` but their weights and biases (a memo key)."""
    return tuple((p[0], p[1], p[2], p[5], p[6]) for p in parts)


def joining(backend: Any, shape: tuple[tuple[Any, ...], ...], x_dtype: np.dtype,
            limits: Limits) -> Joining | None:
    """The launches of a call of ``shape`` (see :func:`call_shape`), or None where
    one would need tiling (the caller then runs the parts one by one).

    Runs of parts whose outputs interleave along the last axis join first
    (:func:`joined_parts`); then joined parts of one spec and layout that the
    gemm path reads in place become the groups of one launch (:func:`merged`).
    A pure function of its arguments and the choice state: the backend memoises
    it per call shape.
    """
    recipe = _recipe(backend, shape, x_dtype, limits)
    similar: dict[Any, list[tuple[int, int, int]]] = {}
    for i, (spec, x_at, x_strides, y_at, y_strides, phases) in enumerate(
            _joined_shape(recipe, shape)):
        similar.setdefault((spec, x_strides, y_strides, phases), []).append((i, x_at, y_at))
    launches = []
    for (spec, x_strides, y_strides, phases), same in similar.items():
        layout = Layout(x_dtype, x_strides, y_strides, filter_phases=phases)
        first = join_choice(backend, spec, limits)
        if len(same) > 1 and isinstance(first.path, GemmPath) and reads_in_place(spec, layout):
            wide, wide_layout = merged(spec, layout, tuple((x_at, y_at) for _, x_at, y_at in same))
            launches.append(Launch(tuple(i for i, _, _ in same), wide, wide_layout, first,
                                   backend.plan(first, wide, wide_layout, limits), 0, 0))
        else:
            # A path that may decline the weights is planned (and its kernels
            # built) only once it has taken them.
            plan = None if first.path.weight_dependent else backend.plan(
                first, spec, layout, limits)
            launches += [Launch((i,), spec, layout, first, plan, x_at, y_at)
                         for i, x_at, y_at in same]
    if any(backend.needs_tiling(one.choice, one.spec, limits) for one in launches
           if one.plan is not None):  # the others are checked with the choice they get
        return None
    return Joining(recipe, tuple(launches))


def join_choice(backend: Any, spec: ConvSpec, limits: Limits) -> Choice:
    """The choice for parts of ``spec``: the first of its choices, but the
    pointwise path's where the heuristic alone gives the spec to the pixels path
    (channels-first 1x1 layers), which has no group table or filter phases and
    stores interleaved outputs pixel by pixel: one launch for every stride phase
    of a transposed convolution costs less than a faster kernel for each."""
    first = backend.choices(spec, limits)[0]
    pointwise = PATHS["pointwise"]
    if (isinstance(first.path, PixelsPath) and choice_state() == ("", None)
            and not first.applied and pointwise.supports(spec, limits)):
        return backend.path_choice(pointwise.name, spec, limits)
    return first


def _joined_shape(recipe: tuple[Any, ...], shape: tuple[tuple[Any, ...], ...],
                  ) -> list[tuple[Any, ...]]:
    """:func:`call_shape` of :func:`joined_parts`, with the filter-phase count."""
    out = []
    for entry in recipe:
        if isinstance(entry, int):
            out.append((*shape[entry], 1))
        else:
            members, wide, offsets = entry
            lead = shape[members[0]]
            out.append((wide, lead[1] - offsets[0], lead[2], lead[3], lead[4], len(members)))
    return out


def joined_parts(recipe: tuple[Any, ...], parts: list[tuple[Any, ...]],
                 ) -> list[tuple[Any, ...]]:
    """``parts`` as :func:`_recipe` joins them, each with a filter-phase count
    appended (1: as given).

    A run of ``p`` parts whose outputs start at consecutive elements and step
    ``p`` along the last axis, alike but for their taps along it and where
    their windows start, becomes one part of ``p`` times the filters over the
    union of the windows: filter ``f * p + c`` is member ``c``'s filter ``f``,
    zero where its own window has no tap (see :func:`_phase_run` for when that
    pays).
    """
    out: list[tuple[Any, ...]] = []
    for entry in recipe:
        if isinstance(entry, int):
            out.append((*parts[entry], 1))
            continue
        members, wide, offsets = entry
        count = len(members)
        # One copy of the weights, interleaved and placed in the union window
        # (the packing reads it once more).
        first = np.asarray(parts[members[0]][3])
        weight = np.zeros((len(first), count, *first.shape[1:-1], wide.kernel_size[-1]),
                          first.dtype)
        for c, (i, off) in enumerate(zip(members, offsets)):
            weight[:, c, ..., off:off + parts[i][0].kernel_size[-1]] = parts[i][3]
        bias = parts[members[0]][4]
        bias = None if bias is None else np.repeat(np.asarray(bias), count)
        lead = parts[members[0]]
        out.append((wide, lead[1] - offsets[0], lead[2], weight.reshape(
            -1, *weight.shape[2:]), bias, lead[5], lead[6], count))
    return out


def _recipe(backend: Any, shape: tuple[tuple[Any, ...], ...], x_dtype: np.dtype,
            limits: Limits) -> tuple[Any, ...]:
    """For :func:`joining`: per joined part, the index of a part kept as it
    is, or ``(member indices, joined spec, window offsets)`` of a run."""
    recipe: list[Any] = []
    runs: dict[Any, dict[int, int]] = {}
    for i, (spec, _, x_strides, y_at, y_strides) in enumerate(shape):
        if spec.channels_last or not 2 <= y_strides[-1] <= 16:
            recipe.append(i)
        else:
            runs.setdefault((x_strides, y_strides), {})[y_at] = i
    for (x_strides, y_strides), by_start in runs.items():
        count = y_strides[-1]
        for start in sorted(by_start):
            if start not in by_start:
                continue  # claimed by an earlier run
            members = [by_start.get(start + c) for c in range(count)]
            wide = None
            if all(m is not None for m in members):
                lo = min(shape[m][1] for m in members)
                offsets = tuple(shape[m][1] - lo for m in members)
                run = tuple((shape[m][0], off) for m, off in zip(members, offsets))
                wide = _phase_run(backend, run, x_strides, y_strides, x_dtype, limits)
            if wide is None:
                recipe.append(by_start.pop(start))
                continue
            for c in range(count):
                del by_start[start + c]
            recipe.append((tuple(members), wide, offsets))
    return tuple(recipe)


def _phase_run(backend: Any, shape: tuple[tuple[ConvSpec, int], ...],
               x_strides: tuple[int, ...], y_strides: tuple[int, ...], x_dtype: np.dtype,
               limits: Limits) -> ConvSpec | None:
    """The spec of one run of interleaved parts (``shape``: each one's spec and where
    its window starts, in elements after the first), or None where the run stays
    apart: specs that differ in more than their taps along the last axis, zero
    taps that would cost more than the whole row stores save (over a quarter of
    the products, or 128 or more per output), or a spec that the gemm path
    would not run in place with whole phases per filter block."""
    base = shape[0][0]
    count = len(shape)
    taps = [spec.kernel_size[-1] for spec, _ in shape]
    span = max(off + k for (_, off), k in zip(shape, taps))

    def core(spec: ConvSpec) -> ConvSpec:
        return dataclasses.replace(spec, kernel_size=spec.kernel_size[:-1],
                                   in_size=spec.in_size[:-1])

    if any(core(spec) != core(base) for spec, _ in shape[1:]):
        return None
    if span * count > sum(taps):  # zero taps: only where the stores dominate
        reduction = base.in_per_group * math.prod(base.kernel_size[:-1]) * span
        if span * count * 3 > sum(taps) * 4 or reduction >= 128:
            return None
    wide = dataclasses.replace(
        base, out_channels=base.out_channels * count,
        kernel_size=(*base.kernel_size[:-1], span),
        in_size=(*base.in_size[:-1], base.out_size[-1] + span - 1))
    try:
        first = join_choice(backend, wide, limits)
    except ArgumentError:  # a forced path that takes the phases but not their join
        return None
    layout = Layout(x_dtype, x_strides, y_strides, filter_phases=count)
    if (isinstance(first.path, GemmPath) and first.config.fb % count == 0
            and reads_in_place(wide, layout)):
        return wide
    return None


def merged(spec: ConvSpec, layout: Layout, at: tuple[tuple[int, int], ...],
           ) -> tuple[ConvSpec, Layout]:
    """Convolutions of one ``spec`` whose inputs and outputs start at the element
    offsets ``at`` as one convolution: their groups, placed by a group table (see
    Layout.group_offsets)."""
    g, count = spec.groups, len(at)
    xs_c, ys_c = layout.x_strides[1], layout.y_strides[1]
    channels = spec.out_per_group // layout.filter_phases  # output channels of a group
    table = tuple((x_at + i * spec.in_per_group * xs_c, y_at + i * channels * ys_c)
                  for x_at, y_at in at for i in range(g))
    joined = dataclasses.replace(spec, groups=g * count, in_channels=spec.in_channels * count,
                                 out_channels=spec.out_channels * count)
    return joined, dataclasses.replace(layout, group_offsets=table)
