"""The autotuner: time candidate (path, tile parameters) configurations of one problem.

:func:`tune` builds the problem (explicit shapes or a named case of
:mod:`clconv.bench`), runs every candidate that supports it once, **rejects any
whose result differs from the float64 NumPy oracle** beyond the test suite's
tolerance (``rtol = 8 eps sqrt(K) + eps``, ``atol = 8 eps K``, K the reduction
size), times the survivors round-robin (so load from other processes hits all
alike) and stores the fastest in the on-disk cache of :mod:`.tunecache`, which
``choose_path`` consults from then on for every problem of the same class on
the same device, driver and clconv version.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..._cases import CASES
from ..._normalize import normalize_conv
from ...errors import ArgumentError
from ...testing import compare, conv_reduction
from .. import get_backend
from . import paths, tuning

__all__ = ["Candidate", "TuneResult", "candidates", "tune"]


@dataclass
class Candidate:
    """One configuration and what happened to it."""

    path: str
    params: dict[str, int]
    ms: float | None = None          # median ms per call (NumPy in / out), if accepted
    error: str | None = None         # why it was rejected (wrong numbers, build failure)
    max_error: float | None = None   # largest |result - oracle| seen
    times: list[float] = field(default_factory=list, repr=False)
    exception: BaseException | None = field(default=None, repr=False)  # what rejected it

    @property
    def accepted(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.path}({args or 'default'})"


@dataclass
class TuneResult:
    """The outcome of :func:`tune`."""

    problem_class: str
    device_key: str
    heuristic: str                   # label of the heuristic's own choice
    candidates: list[Candidate]
    winner: Candidate | None
    cache_path: str | None           # where the winner was stored (None: not stored)

    def format(self) -> str:
        """A small table: one line per candidate, fastest first."""
        lines = [f"problem class {self.problem_class}", f"device {self.device_key}"]
        ranked = sorted(self.candidates, key=lambda c: (c.ms is None, c.ms or 0.0))
        for c in ranked:
            mark = "*" if c is self.winner else " "
            status = f"{c.ms:9.3f} ms" if c.accepted else f"rejected: {c.error}"
            lines.append(f" {mark} {c.label:40s} {status}")
        lines.append(f"heuristic: {self.heuristic}")
        if self.cache_path:
            lines.append(f"stored in {self.cache_path}")
        return "\n".join(lines)


def candidates(spec: Any, limits: Any) -> list[tuple[str, dict[str, int]]]:
    """``(path name, params)`` to try: every supporting path's default plus its variants."""
    found: list[tuple[str, dict[str, int]]] = []
    for path in paths.FORWARD_PATHS:
        if not path.supports(spec, limits) or path.weight_dependent:
            continue
        for params in ({}, *path.variants(spec, limits)):
            if (path.name, params) not in found:
                found.append((path.name, params))
    return found


def _problem(input_shape: Any, weight_shape: Any, case: str | None, kwargs: dict[str, Any],
             ) -> tuple[int, tuple[int, ...], tuple[int, ...], dict[str, Any]]:
    if case is not None:
        by_name = {c.name: c for c in CASES}
        c = by_name.get(case)
        if c is None:
            raise ArgumentError(f"case={case!r}; expected one of {sorted(by_name)}")
        kwargs = {**kwargs, "stride": c.stride, "padding": c.padding, "groups": c.groups}
        return (c.ndim, (c.batch, c.in_channels, *c.in_size),
                (c.out_channels, c.in_channels // c.groups, *c.kernel), kwargs)
    if input_shape is None or weight_shape is None:
        raise ArgumentError("tune needs input_shape and weight_shape, or case=<benchmark case>")
    weight_shape = tuple(int(v) for v in weight_shape)
    ndim = len(weight_shape) - 2
    if ndim not in (1, 2, 3):
        raise ArgumentError(f"weight_shape={weight_shape}; expected (F, C // groups, *kernel) "
                            "with 1 to 3 kernel axes")
    return ndim, tuple(int(v) for v in input_shape), weight_shape, kwargs


def tune(input_shape: Any = None, weight_shape: Any = None, *, case: str | None = None,
         bias: bool = False, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
         groups: int = 1, padding_mode: str = "zeros", data_format: str = "channels_first",
         dtype: str = "float32", backend: str | None = None, repeat: int = 7,
         budget: float = 5.0, store: bool = True, seed: int = 0) -> TuneResult:
    """Time every candidate configuration of one problem on an OpenCL backend.

    The problem is ``input_shape`` / ``weight_shape`` with the usual conv
    arguments, or ``case``, a name of :data:`clconv.bench.CASES`. Candidates
    whose numbers disagree with the float64 NumPy oracle are rejected. The
    fastest accepted one is stored (``store=True``) in the tune cache
    (``CLCONV_TUNE_CACHE`` or ``~/.cache/clconv/tune.json``) and used
    automatically for problems of the same class afterwards. ``repeat``
    timed calls per candidate, fewer when a round exceeds ``budget`` seconds
    in total.

    >>> import clconv                                             # doctest: +SKIP
    >>> print(clconv.tune(case="depthwise").format())             # doctest: +SKIP
    """
    be = get_backend(backend)
    dctx = getattr(be, "dctx", None)
    if dctx is None:
        raise ArgumentError(f"backend {be.name!r} is not an OpenCL backend; the tuner times "
                            "OpenCL kernels (pass backend='opencl' or 'opencl:P:D')")
    if store:
        problem = tuning.write_problem()
        if problem is not None:
            raise ArgumentError(
                f"the tune cache {tuning.cache_file()} cannot be written ({problem}); "
                f"expected a writable file: set {tuning.ENV}, or pass store=False "
                "(--no-store) to time only")
    conv_args = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    ndim, xshape, wshape, conv_args = _problem(input_shape, weight_shape, case, conv_args)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype) if bias else None
    call = normalize_conv(ndim, x, w, b, conv_args["stride"], conv_args["padding"],
                          conv_args["dilation"], conv_args["groups"], padding_mode,
                          data_format, False)
    spec = call.spec
    limits = dctx.limits()

    # The oracle: the NumPy backend in float64 on the same (dtype-rounded) values.
    def f64(a: Any) -> Any:
        return None if a is None else np.asarray(a).astype(np.float64)
    want = get_backend("numpy").conv_forward(f64(call.x), f64(call.weight), f64(call.bias),
                                             dataclasses.replace(spec, dtype="float64"))
    heuristic = next(p for p in paths.FORWARD_PATHS if not p.weight_dependent
                     and p.supports(spec, limits) and p.preferred(spec, limits))
    tried = [Candidate(name, params) for name, params in candidates(spec, limits)]

    def run(c: Candidate) -> Any:
        with paths.override(c.path, **c.params):
            return be.conv_forward(call.x, call.weight, call.bias, spec)

    _check(tried, run, want, spec)
    accepted = [c for c in tried if c.accepted]
    _time(accepted, run, repeat, budget)
    winner = min(accepted, key=lambda c: c.ms or 0.0) if accepted else None
    default = next((c for c in accepted if c.path == heuristic.name and not c.params), None)
    stored = None
    if winner is not None and store:
        entry = {"path": winner.path, "params": winner.params, "ms": round(winner.ms, 4),
                 "heuristic": heuristic.name,
                 "heuristic_ms": None if default is None else round(default.ms, 4),
                 "problem": f"input {xshape} weight {wshape} {conv_args} {dtype}",
                 "tuned": time.strftime("%Y-%m-%dT%H:%M:%S")}
        stored = str(tuning.store(dctx, spec, entry))
    return TuneResult(tuning.problem_class(spec), tuning.device_key(dctx),
                      Candidate(heuristic.name, {}).label, tried, winner, stored)


def _check(tried: list[Candidate], run: Any, want: np.ndarray, spec: Any) -> None:
    """Run each candidate once (it builds) and reject those whose numbers are wrong."""
    for c in tried:
        try:
            got = run(c)
        except Exception as exc:  # a failing candidate is reported, never fatal
            c.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            c.exception = exc
            continue
        result = compare(got, want, dtype=spec.dtype, reduction=conv_reduction(spec),
                         check_dtype=False)
        c.max_error = None if math.isnan(result.max_error) else result.max_error
        if result.problem is not None:
            c.error = f"wrong numbers: {result.problem}"


def _time(accepted: list[Candidate], run: Any, repeat: int, budget: float) -> None:
    """Median ms per call of each candidate, timed round-robin (one call of each per
    round) so that load from other processes hits all alike."""
    start = time.perf_counter()
    for _ in range(max(int(repeat), 1)):
        for c in accepted:
            t0 = time.perf_counter()
            run(c)
            c.times.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - start > budget:
            break
    for c in accepted:
        c.ms = statistics.median(c.times)


def chosen(spec: Any, backend: Any = None) -> tuple[str, dict[str, int]]:
    """``(path name, tile parameters)`` that a call of ``spec`` on ``backend`` would use."""
    be = get_backend(backend)
    choice = be.choices(spec, be.dctx.limits())[0]
    return choice.path.name, choice.params

