"""Tolerances and oracle helpers for checking a backend against the NumPy reference.

One rule decides whether a result is right, wherever it is checked: the test
suite, ``clconv selftest`` and the autotuner (which rejects candidates that
fail it). The reference is the NumPy backend in float64 on the very values the
backend under test was given (:func:`oracle`), and a result of dtype ``D``
from a reduction of ``K`` products (``in_channels / groups * prod(kernel)``,
see :func:`conv_reduction`) must satisfy, elementwise::

    |got - want| <= atol + rtol * |want|
    rtol = 8 eps sqrt(K) + eps         atol = 8 eps K

with ``eps`` per result dtype: 1e-3 for float16, 1.2e-7 for float32 and
2.3e-16 for float64, a little above each type's machine epsilon. The
``sqrt(K)`` term is the typical growth of rounding error in a sum of ``K``
terms; ``atol`` covers results that cancel to near zero. Rounding in any sane
summation order stays inside it, while a wrong tap, border or channel does
not, so the bound is tight enough to catch real errors.

>>> import numpy as np
>>> import clconv
>>> from clconv.testing import assert_close, oracle
>>> x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
>>> w = np.ones((2, 3, 3, 3), np.float32)
>>> got = clconv.conv2d(x, w, padding=1, backend="numpy")
>>> want = oracle(clconv.conv2d, x, w, padding=1)
>>> assert_close(got, want, dtype=np.float32, reduction=27) < 1e-5
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["EPS", "Comparison", "assert_close", "compare", "conv_reduction", "host_array",
           "oracle", "tolerance"]

#: The ``eps`` of the tolerance rule per result dtype.
EPS: dict[str, float] = {"float16": 1e-3, "float32": 1.2e-7, "float64": 2.3e-16}


def tolerance(dtype: Any, reduction: int) -> tuple[float, float]:
    """``(rtol, atol)`` for a result of ``dtype`` from a reduction of ``reduction`` products.

    ``rtol = 8 eps sqrt(K) + eps`` and ``atol = 8 eps K`` with ``K =
    max(reduction, 1)``. ``dtype`` is the result's (float16, float32 or
    float64); any other raises ``ValueError``.
    """
    name = np.dtype(dtype).name
    if name not in EPS:
        raise ValueError(f"no tolerance for dtype {name}; expected one of {', '.join(EPS)}")
    eps = EPS[name]
    k = max(int(reduction), 1)
    return 8 * eps * math.sqrt(k) + eps, 8 * eps * k


def conv_reduction(spec: Any) -> int:
    """The reduction size ``K`` of a convolution spec: input channels per group times taps."""
    return max(spec.in_per_group * math.prod(spec.kernel_size), 1)


def _on_device(a: Any) -> bool:
    """A device array (pyopencl's, or any with ``.shape`` and ``.get()``), not a mapping."""
    return (not isinstance(a, (np.ndarray, dict)) and hasattr(a, "shape")
            and callable(getattr(a, "get", None)))


def host_array(a: Any) -> np.ndarray:
    """``a`` as a NumPy array; a device array is read back first."""
    return np.asarray(a.get() if _on_device(a) else a)


def oracle(fn: Callable[..., Any], *operands: Any, round_to: Any = None, **kwargs: Any) -> Any:
    """``fn(*operands, backend="numpy", **kwargs)`` in float64: the reference result.

    Every array operand (NumPy array or scalar, list, tuple, device array) is
    read to the host and converted to float64, after rounding to ``round_to``
    first when given (the result dtype of the call under test, so that the
    reference sees exactly the values the backend computed with: float16 or
    uint8 inputs, say). Other positional arguments (None, strings, Python
    numbers) and ``kwargs`` pass through unchanged. ``fn`` is any clconv
    function that takes ``backend=`` (``conv2d``, ``conv_backward``,
    ``filter2d``, ``convolve``, ...).
    """
    def f64(a: Any) -> Any:
        if not (isinstance(a, (np.ndarray, np.generic, list, tuple)) or _on_device(a)):
            return a
        a = host_array(a)
        return (a if round_to is None else a.astype(round_to)).astype(np.float64)

    return fn(*(f64(a) for a in operands), backend="numpy", **kwargs)


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found; ``problem`` is None when the result is within tolerance."""

    max_error: float      # largest |got - want| over positions where both are numbers
    bad: int              # values beyond the tolerance
    size: int
    rtol: float
    atol: float           # the absolute term actually used (already times ``scale``)
    problem: str | None   # one line: what is wrong, where and by how much

    @property
    def ok(self) -> bool:
        """True when the result is within tolerance."""
        return self.problem is None


def compare(got: Any, want: Any, *, dtype: Any, reduction: int, scale: float = 1.0,
            check_dtype: bool = True) -> Comparison:
    """Compare ``got`` with the reference ``want`` under :func:`tolerance` (never raises).

    ``scale`` multiplies ``atol``: for inputs far from unit magnitude (uint8
    pixels, say) the absolute term grows with them. ``check_dtype`` also
    requires ``got.dtype == dtype``. NaN must sit exactly where the reference
    has NaN, and an infinity must equal the reference's value exactly.
    """
    g, w = host_array(got), host_array(want)
    rtol, atol = tolerance(dtype, reduction)
    atol *= scale

    def result(problem: str | None, max_error: float = math.nan, bad: int = 0) -> Comparison:
        return Comparison(max_error, bad, int(w.size), rtol, atol, problem)

    if g.shape != w.shape:
        return result(f"shape {g.shape}, expected {w.shape}")
    if check_dtype and g.dtype != np.dtype(dtype):
        return result(f"dtype {g.dtype}, expected {np.dtype(dtype)}")
    g, w = g.astype(np.float64), w.astype(np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.abs(g - w)
    max_error = float(np.nanmax(diff, initial=0.0)) if diff.size else 0.0
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    if not np.array_equal(nan_g, nan_w):
        wrong = nan_g != nan_w
        at = _index(np.argmax(wrong), w.shape)
        return result(f"NaN positions differ from the reference at {int(wrong.sum())} of "
                      f"{w.size} values, first at {at}: got {float(g[at])!r}, "
                      f"want {float(w[at])!r}", max_error, int(wrong.sum()))
    allowed = atol + rtol * np.abs(w)
    infinite = np.isinf(g) | np.isinf(w)
    with np.errstate(invalid="ignore"):
        bad = ~nan_w & np.where(infinite, g != w, ~(diff <= allowed))
    count = int(bad.sum())
    if not count:
        return result(None, max_error)
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(bad, np.where(infinite, np.inf, diff / allowed), -np.inf)
    at = _index(np.argmax(excess), w.shape)
    return result(f"{count} of {w.size} values beyond tolerance, worst at {at}: "
                  f"got {float(g[at])!r}, want {float(w[at])!r}, "
                  f"|error| {diff[at]:.3g} > allowed {allowed[at]:.3g} "
                  f"(rtol {rtol:.3g}, atol {atol:.3g}, {np.dtype(dtype).name}, K={reduction}; "
                  f"max |error| {max_error:.3g})", max_error, count)


def assert_close(got: Any, want: Any, *, dtype: Any, reduction: int, scale: float = 1.0,
                 check_dtype: bool = True, where: str = "") -> float:
    """Raise ``AssertionError`` unless ``got`` matches ``want`` (see :func:`compare`).

    The message starts with ``where`` (say, a test case's id) and says how
    many values failed, the worst one's index, both values, its error and the
    allowed error. Returns the largest ``|got - want|`` when the check passes.
    """
    found = compare(got, want, dtype=dtype, reduction=reduction, scale=scale,
                    check_dtype=check_dtype)
    if found.problem is not None:
        raise AssertionError(f"{where}: {found.problem}" if where else found.problem)
    return found.max_error


def _index(flat: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape))
