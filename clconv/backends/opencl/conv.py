"""The forward path registry: which paths exist, in which order, and how one is chosen.

A *path* is one way of computing a forward convolution on the device (one
set of kernels plus its launch planning). :data:`FORWARD_PATHS` lists them
best first; :func:`choose_path` takes the first whose ``supports`` accepts the
problem (``CLCONV_OPENCL_PATH`` can force one). The order is the heuristic:

=============  ==============================================================
``tiny``       <= 65536 multiply-adds: one launch of the direct kernel
``pointwise``  1x1, stride 1, no padding: conv_gemm.cl over flattened pixels
``gemm``       >= 4 filters per group: register-blocked implicit GEMM
               (16 filters x 6 columns per work-item), pad pre-pass
``separable``  rank-1 kernels of >= 121 taps, 1 filter per group, large outputs:
               a column pass and a row pass of conv_rows.cl (weights checked
               in ``prepare``; other weights run on ``rows``)
``rows``       1 filter per group, W stride 1 or 2: row-blocked float8 kernel
``direct``     everything else (strided one-filter groups, few filters per group, ...)
=============  ==============================================================

Every fast path can hand a piece to ``direct`` (same packed weights) when
its scratch does not fit. Every path computes float32, float16 (float
accumulation) and float64 (double, with narrower register blocks).

A path works in two steps so that tiled execution prepares weights once:
``prepare(...)`` packs weight and bias on the device, ``launch(...)`` runs
one piece (a batch slice or spatial tile) with the prepared operands.
"""

from __future__ import annotations

import contextvars
import copy
import os
from typing import Any, Protocol

from ..._spec import ConvSpec
from ...errors import ArgumentError
from .context import DeviceContext
from .direct import DirectPath, TinyPath
from .gemm import GemmPath, PointwisePath
from .launch import Operand
from .limits import Limits
from .rows import ROWS, SeparablePath
from .tunecache import tuned_choice


class ForwardPath(Protocol):
    """One way of computing the forward convolution on a device.

    A path may set ``weight_dependent = True`` when whether it helps depends
    on the weights' values (it then checks them in ``prepare``).
    """

    name: str

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        """Whether this path handles ``spec`` on this device within ``limits``."""
        ...

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        """Device bytes of the prepared weight and bias."""
        ...

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        """Pack weight and bias (``Operand`` or ``None``) on the device; returns a state."""
        ...

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        """Compute ``y`` (the spec's output layout) from ``x`` for one piece."""
        ...


FORWARD_PATHS: list[ForwardPath] = [TinyPath(), PointwisePath(), GemmPath(), SeparablePath(),
                                    ROWS, DirectPath()]

PATH_ENV = "CLCONV_OPENCL_PATH"

# (path name, tile parameters) that clconv.tune is timing right now (this thread/task).
TUNING: contextvars.ContextVar[tuple[str, dict[str, int]] | None] = contextvars.ContextVar(
    "clconv_tuning", default=None)

_configured: dict[tuple, Any] = {}


def configured(path: Any, params: dict[str, int]) -> Any:
    """``path`` with tile parameters ``params`` (a cached copy; ``path`` itself if none)."""
    if not params:
        return path
    key = (type(path), path.name, tuple(sorted(params.items())))
    inst = _configured.get(key)
    if inst is None:
        inst = copy.copy(path)
        inst.overrides = dict(params)
        _configured[key] = inst
    return inst


def _named(name: str, params: dict[str, int], spec: ConvSpec, dctx: DeviceContext,
           limits: Limits) -> Any:
    """The registered path ``name`` with ``params`` if it supports ``spec``, else None."""
    for path in FORWARD_PATHS:
        if path.name == name:
            return configured(path, params) if path.supports(spec, dctx, limits) else None
    return None


def choose_path(spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> ForwardPath:
    """The path for ``spec``: the first registered one that supports it.

    The order is the heuristic: ``tiny`` (at most 65536 multiply-adds: one
    launch of the direct kernel), ``pointwise`` (1x1, stride 1, no padding),
    ``gemm`` (groups of >= 4 filters), ``separable`` (large rank-1 kernels of
    one-filter groups), ``rows`` (one filter per group, stride 1 or 2 along W),
    then ``direct`` (everything). The
    environment variable ``CLCONV_OPENCL_PATH=<name>`` (read per call; for
    tests and measurements) puts that path first: it still runs only problems
    it supports, others take the usual order. Without it, a winner that
    :func:`clconv.tune` stored for this device and problem class (see
    :mod:`.tunecache`) comes before the heuristic when it supports ``spec``,
    after the weight-dependent paths (the tuner times random weights, so it
    cannot judge those).
    """
    tuning = TUNING.get()
    if tuning is not None:
        path = _named(*tuning, spec, dctx, limits)
        if path is None:
            raise ArgumentError(f"tuning candidate {tuning} does not support this problem")
        return path
    forced = os.environ.get(PATH_ENV, "").strip()
    if forced:
        for path in FORWARD_PATHS:
            if path.name == forced and path.supports(spec, dctx, limits):
                return path
        if forced not in {p.name for p in FORWARD_PATHS}:
            raise ArgumentError(f"{PATH_ENV}={forced!r}; expected one of "
                                f"{[p.name for p in FORWARD_PATHS]}")
    else:
        for path in FORWARD_PATHS:
            if getattr(path, "weight_dependent", False) and path.supports(spec, dctx, limits):
                return path
        tuned = tuned_choice(spec, dctx)
        if tuned is not None:
            path = _named(*tuned, spec, dctx, limits)
            if path is not None:
                return path
    for path in FORWARD_PATHS:
        if path.supports(spec, dctx, limits):
            return path
    raise AssertionError("the direct path supports every convolution")
