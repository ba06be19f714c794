"""The forward paths, best first, and how one is chosen for a problem.

A *path* is one way of computing a forward convolution on the device: one set
of kernels and how to plan them (:class:`.base.ForwardPath`). The order of
:data:`FORWARD_PATHS` is the heuristic:

=============  ==============================================================
``tiny``       <= 65536 multiply-adds: one launch of the direct kernel
``pixels``     >= 16 filters per group, <= 256 output pixels per batch, >= 2^17
               weights, or a float32 channels-first 1x1 layer of stride 1 (at
               least 3 pixel vectors): vectorised along pixels, weights read in
               place (a 1x1 input too, as its own column matrix)
``pointwise``  1x1, stride 1, no padding: conv_gemm.cl over flattened pixels
``gemm``       >= 4 filters per group: register-blocked implicit GEMM, pad pre-pass
``separable``  rank-1 kernels of >= 121 taps, one filter per group, large outputs:
               a column pass and a row pass of conv_rows.cl (declines other weights)
``separable_interleaved`` the separable passes of a shared kernel (below), each
               interleaved (declines other weights)
``interleaved`` channels-last depthwise 2-D whose channels share one kernel (filter2d
               on RGB): conv_rows.cl over each row's pixels x channels, read in place
               (declines other weights)
``rows``       one filter per group, W stride 1 or 2: row-blocked float8 kernel
``lanes``      one output pixel per work-item, pad pre-pass (the "lanes" style); on
               Intel's CPU runtime also ahead of every path above for the dense
               float32 layers whose rows fill 16-lane vectors or whose groups
               have at most 16 filters (``preferred_across_styles``)
``direct``     everything else (strided one-filter groups, few filters per group, ...)
=============  ==============================================================

:func:`choices` puts, in this order: a configuration given by
:func:`override` (the tuner's candidates, tests), the path named by
``CLCONV_OPENCL_PATH`` (read per call), the weight-dependent paths the
heuristic prefers, a winner :func:`clconv.tune` stored for this device and
problem class, and the heuristic's path, each with its configuration: the
path's built-in one, adjusted by the per-device defaults of
:mod:`..tuning`, then by the stored or overridden parameters.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...._env import setting
from ...._spec import ConvSpec, HashedOnce
from ....errors import ArgumentError
from ..context import Limits
from .base import ForwardPath
from .common import allowed_values, with_params
from .direct import DirectPath
from .gemm import GemmPath
from .interleaved import InterleavedPath, SeparableInterleavedPath
from .lanes import LanesPath
from .pixels import PixelsPath
from .pointwise import PointwisePath
from .rows import RowsPath
from .separable import SeparablePath
from .tiny import TinyPath

ROWS = RowsPath()
FORWARD_PATHS: tuple[ForwardPath, ...] = (TinyPath(), PixelsPath(), PointwisePath(), GemmPath(),
                                          SeparableInterleavedPath(ROWS), SeparablePath(ROWS),
                                          InterleavedPath(ROWS), ROWS, LanesPath(),
                                          DirectPath())
PATHS = {p.name: p for p in FORWARD_PATHS}

PATH_ENV = "CLCONV_OPENCL_PATH"

_override: contextvars.ContextVar[tuple[str, tuple[tuple[str, int], ...]] | None] = (
    contextvars.ContextVar("clconv_path_override", default=None))


@dataclass(frozen=True)
class Choice(HashedOnce):
    """A path and the configuration it runs with."""

    __hash__ = HashedOnce.__hash__

    path: ForwardPath
    config: Any
    applied: tuple[tuple[str, int], ...] = ()  # parameters set beyond the built-in config

    @property
    def params(self) -> dict[str, int]:
        """The parameters set beyond the path's built-in configuration."""
        return dict(self.applied)


def check_params(name: str, params: dict[str, Any]) -> None:
    """Raise ``ArgumentError`` unless ``params`` are tunable fields of path ``name``
    with allowed values."""
    path = PATHS.get(name)
    if path is None:
        raise ArgumentError(f"path={name!r}; expected one of {list(PATHS)}")
    allowed = allowed_values(path.Config)
    for key, value in params.items():
        if key not in allowed:
            raise ArgumentError(f"{key}={value!r} is not a parameter of path {name!r}; "
                                f"expected one of {sorted(allowed)}")
        if type(value) is not int or value not in allowed[key]:
            raise ArgumentError(f"{key}={value!r} for path {name!r}; expected one of "
                                f"{allowed[key]}")


@contextlib.contextmanager
def override(path: str, **params: int) -> Iterator[None]:
    """Run the forward convolutions of this thread/task on ``path`` with ``params``
    (checked against the path's configuration fields) inside a ``with`` block.

    A problem the path does not support raises ``ArgumentError``; a
    weight-dependent path that declines the weights gives way to the path
    ``CLCONV_OPENCL_PATH`` names, else to the heuristic.
    """
    check_params(path, params)
    token = _override.set((path, tuple(sorted(params.items()))))
    try:
        yield
    finally:
        _override.reset(token)


def current_override() -> tuple[str, tuple[tuple[str, int], ...]] | None:
    return _override.get()


def choice_state() -> tuple[str, tuple[str, tuple[tuple[str, int], ...]] | None]:
    """What decides the choices besides the problem, the limits and the tune cache:
    the path ``CLCONV_OPENCL_PATH`` names and this thread's :func:`override` (part
    of every memo key that rests on the choices)."""
    return (setting(PATH_ENV) or "").strip(), _override.get()


def configured(path: ForwardPath, spec: ConvSpec, limits: Limits, defaults: dict[str, int],
               params: dict[str, int] | tuple[tuple[str, int], ...] = ()) -> Choice:
    """``path`` with its built-in configuration, the per-device ``defaults`` and ``params``."""
    allowed = allowed_values(path.Config)
    applied = {k: v for k, v in {**defaults, **dict(params)}.items() if k in allowed}
    return Choice(path, with_params(path.config(spec, limits), applied),
                  tuple(sorted(applied.items())))


def choices(spec: ConvSpec, limits: Limits, defaults: Any, tuned: Any,
            style: str = "vector") -> tuple[Choice, ...]:
    """The choices to try in order (see the module doc); the last never declines.

    ``defaults(path_name)`` gives the per-device default parameters of a path,
    ``tuned(spec)`` a stored winner ``(path name, params)`` or None, ``style``
    the device's kernel style (the heuristic skips paths of the other style).
    """
    found: list[Choice] = []
    forced = _override.get()
    if forced is not None:
        path = PATHS[forced[0]]
        if not path.supports(spec, limits):
            raise ArgumentError(f"path {forced[0]!r} with {dict(forced[1])} does not support "
                                f"this problem (input {spec.input_shape}, kernel "
                                f"{spec.kernel_size})")
        found.append(configured(path, spec, limits, defaults(path.name), forced[1]))
        if not path.weight_dependent:
            return tuple(found)
    named = os.environ.get(PATH_ENV, "").strip()
    if named:
        if named not in PATHS:
            raise ArgumentError(f"{PATH_ENV}={named!r}; expected one of {list(PATHS)}")
        path = PATHS[named]
        if path.supports(spec, limits):
            found.append(configured(path, spec, limits, defaults(path.name)))
            if not path.weight_dependent:
                return tuple(found)
    return (*found, *_heuristic(spec, limits, defaults, tuned, style, weights=not found))


def _heuristic(spec: ConvSpec, limits: Limits, defaults: Any, tuned: Any, style: str,
               weights: bool) -> tuple[Choice, ...]:
    found: list[Choice] = []
    if weights:
        found += [configured(p, spec, limits, defaults(p.name)) for p in FORWARD_PATHS
                  if p.weight_dependent and p.supports(spec, limits) and p.preferred(spec, limits)]
    stored = tuned(spec)
    if stored is not None:
        path = PATHS.get(stored[0])
        if path is not None and not path.weight_dependent and path.supports(spec, limits):
            return (*found, configured(path, spec, limits, defaults(path.name), stored[1]))
    for path in FORWARD_PATHS:
        if (not path.weight_dependent and path.style not in (None, style)
                and path.supports(spec, limits) and path.preferred_across_styles(spec, limits)):
            return (*found, configured(path, spec, limits, defaults(path.name)))
    for path in FORWARD_PATHS:
        if (not path.weight_dependent and path.style in (None, style)
                and path.supports(spec, limits) and path.preferred(spec, limits)):
            return (*found, configured(path, spec, limits, defaults(path.name)))
    raise AssertionError("the direct path supports every convolution")
