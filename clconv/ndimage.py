"""``clconv.ndimage``: SciPy's ``scipy.ndimage`` filters on any clconv backend.

Each function takes ``scipy.ndimage``'s arguments and defaults and gives its
numbers (float32 tolerance; integer outputs within 1) and result dtypes:

- ``correlate`` / ``convolve`` (1 to 3 dims): one convolution call;
- ``correlate1d`` / ``convolve1d`` (any rank): one 1-D pass along ``axis``;
- ``uniform_filter``, ``gaussian_filter``, ``sobel``, ``prewitt``,
  ``laplace`` (any rank): 1-D passes, one per axis. On an OpenCL backend a
  host input is uploaded once and the passes run on the device, one launch
  each, with no host round trip between them (integer outputs excepted: SciPy
  writes each pass into the output dtype, which is done on the host).

Device arrays give device arrays; dask arrays give lazy dask arrays computed
chunk by chunk with halos (equal to the one-piece result).

Border modes are SciPy's names (``reflect``, ``constant`` with ``cval``,
``nearest``, ``mirror``, ``wrap`` and the ``grid-*`` aliases), mapped onto
clconv's border rules (``numpy.pad`` terms: SciPy's ``reflect`` is
``symmetric``, its ``mirror`` is ``reflect``). ``origin`` shifts the kernel as
in SciPy, and even-length kernels are centred as SciPy centres them.

Deliberate differences from SciPy: complex inputs are a ``DTypeError``;
float16 is accepted (computed in float32); a negative ``sigma`` is an error
(SciPy silently leaves that axis unfiltered). Errors are clconv's classes and
also the class SciPy raises for the same mistake (``RuntimeError`` for an
unknown mode, a weights rank mismatch, a wrong output shape and a
wrong-length origin sequence; ``ValueError`` and ``TypeError`` otherwise).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._normalize import as_operand, normalize_conv
from .backends import get_backend, has_device_memory, is_device_array, to_host
from .errors import ArgumentError, DTypeError
from .functional import run_conv

__all__ = ["convolve", "convolve1d", "correlate", "correlate1d", "gaussian_filter", "laplace",
           "prewitt", "sobel", "uniform_filter"]


class NdimageRuntimeError(ArgumentError, RuntimeError):
    """A bad argument SciPy reports as ``RuntimeError`` (unknown mode, rank or shape
    mismatch): both clconv's :class:`~clconv.ArgumentError` and SciPy's class."""


# scipy.ndimage mode -> the numpy.pad rule clconv computes.
MODES = {"reflect": "symmetric", "grid-mirror": "symmetric", "constant": "constant",
         "grid-constant": "constant", "nearest": "edge", "mirror": "reflect",
         "wrap": "wrap", "grid-wrap": "wrap"}


# ---------------------------------------------------------------- arguments

def _is_dask(value: Any) -> bool:
    return type(value).__module__.startswith("dask.") and hasattr(value, "__dask_graph__")


def _lazily(x: Any, reach: dict[int, int], modes: dict[int, str], output: Any,
            block: Any) -> Any:
    """A dask input's result: ``block`` (this module's function on a NumPy block) over
    chunks grown by ``reach`` per axis. Halos come from the neighbouring chunks; at
    the array's edges the block function applies the border mode itself (``wrap``
    axes take their halo from the opposite end), so the result equals one piece."""
    if isinstance(output, np.ndarray) or is_device_array(output):
        raise ArgumentError("output is an array, but the input is a dask array; expected "
                            "None or a dtype (the result is a lazy dask array)")
    dtype, _ = _output(output, x)
    boundary = {a: "periodic" if modes.get(a) == "wrap" else "none" for a in range(x.ndim)}
    depth = {a: reach.get(a, 0) for a in range(x.ndim)}
    return x.map_overlap(block, depth=depth, boundary=boundary, dtype=dtype, meta=np.array(
        (), dtype))


def _input(value: Any) -> Any:
    """A host, device or dask array of a real numeric dtype."""
    if is_device_array(value) or _is_dask(value):
        as_operand(value, "input") if is_device_array(value) else _numeric(value.dtype)
        return value
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"input could not be read as an array: {exc}") from None
    if arr.dtype.kind == "c":
        raise DTypeError(f"input has dtype {arr.dtype}; clconv.ndimage takes real numbers "
                         "(complex input is not supported)")
    return as_operand(arr, "input")


def _numeric(dtype: Any) -> None:
    if np.dtype(dtype).kind == "c":
        raise DTypeError(f"input has dtype {dtype}; clconv.ndimage takes real numbers "
                         "(complex input is not supported)")
    as_operand(np.zeros(0, dtype), "input")


def _mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise NdimageRuntimeError(f"mode={mode!r}: boundary mode not supported; expected one "
                                  f"of {sorted(MODES)}")
    return MODES[mode.lower()]


def _per_axis(value: Any, count: int, name: str, check: Any) -> list[Any]:
    """One value per filtered axis: a scalar repeated, or a sequence of ``count``."""
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        return [check(value)] * count
    values = list(value)
    if len(values) != count:
        raise NdimageRuntimeError(f"{name}={value!r}: sequence argument must have length "
                                  f"equal to input rank ({count})")
    return [check(v) for v in values]


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DTypeError(f"{name}={value!r}; expected an int")
    return int(value)


def _axes(axes: Any, ndim: int) -> list[int]:
    if axes is None:
        return list(range(ndim))
    values = [axes] if isinstance(axes, numbers.Integral) else list(axes)
    out = []
    for a in values:
        a = _int(a, "axes")
        if not -ndim <= a < ndim:
            raise ArgumentError(f"axes={axes!r}: axis {a} is out of range for {ndim} dims")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ArgumentError(f"axes={axes!r}: each axis may appear once")
    return out


def _output(output: Any, x: Any) -> tuple[np.dtype, Any]:
    """``(output dtype, the array to fill or None)`` for SciPy's ``output`` argument."""
    if output is None:
        return np.dtype(x.dtype), None
    if isinstance(output, np.ndarray) or is_device_array(output):
        if tuple(output.shape) != tuple(x.shape):
            raise NdimageRuntimeError(f"output has shape {tuple(output.shape)}: output shape "
                                      f"not correct (expected {tuple(x.shape)})")
        dtype = np.dtype(output.dtype)
        target = output
    else:
        try:
            dtype = np.dtype(output)
        except TypeError:
            raise DTypeError(f"output={output!r}; expected None, an array or a dtype") from None
        target = None
    if dtype.kind not in "biuf":
        raise DTypeError(f"output dtype {dtype}; expected a real numeric dtype")
    return dtype, target


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64 if dtype == np.float64 else np.float32)


def _cast(y: Any, dtype: np.dtype) -> Any:
    """A pass's float result in ``dtype`` as SciPy casts it: integers truncated toward
    zero and wrapped into range, bools nonzero."""
    y = to_host(y)
    if dtype.kind == "b":
        return y != 0
    if dtype.kind in "iu":
        with np.errstate(invalid="ignore"):
            return np.trunc(y).astype(np.int64).astype(dtype)
    return y.astype(dtype, copy=False)


def _finish(y: Any, dtype: np.dtype, target: Any, device: bool, backend: Any) -> Any:
    """The float result ``y`` in the output dtype: written into ``target`` when one was
    given, else a device array when the input was one (``device``), else a host array."""
    if target is not None:
        values = _cast(y, dtype)
        if is_device_array(target):
            target.set(np.ascontiguousarray(values))
        else:
            target[...] = values
        return target
    if device:
        if is_device_array(y) and y.dtype == dtype:
            return y
        be = get_backend(backend)
        if has_device_memory(be):  # else host arrays out, as its convolutions give
            return be.to_device(_cast(y, dtype))
    return _cast(y, dtype)


# ---------------------------------------------------------------- one pass

def _pads(size: int, origin: int) -> tuple[int, int]:
    """SciPy's placement of a ``size``-tap kernel: centre ``size // 2 + origin``."""
    if not -(size // 2) <= origin <= (size - 1) // 2:
        raise ArgumentError(f"origin={origin}: invalid origin; origin must satisfy "
                            f"-(len(weights) // 2) <= origin <= (len(weights)-1) // 2 for "
                            f"{size} weights")
    before = size // 2 + origin
    return before, size - 1 - before


def _pass1d(x: Any, weights: np.ndarray, axis: int, mode: str, cval: float, origin: int,
            dtype: np.dtype, backend: Any) -> Any:
    """One 1-D correlation of ``x`` along ``axis`` (any rank): a 2-D convolution of the
    array seen as (lead, 1, axis, trail), padded by SciPy's placement of the weights.

    Along the last axis (trail 1) the array is seen as (lead, 1, 1, axis) with a
    1 x K kernel instead: the kernels vectorise along the last convolution axis,
    which must then be the long one, not a length-1 axis."""
    shape = tuple(x.shape)
    lead, trail = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    pads = _pads(len(weights), origin)
    if trail == 1:
        view = x.reshape(lead, 1, 1, shape[axis])
        w = weights.astype(dtype).reshape(1, 1, 1, -1)
        padding = ((0, 0), pads)
    else:
        view = x.reshape(lead, 1, shape[axis], trail)
        w = weights.astype(dtype).reshape(1, 1, -1, 1)
        padding = (pads, (0, 0))
    call = normalize_conv(2, view, w, None, 1, padding, 1, 1, mode, "channels_first", False,
                          fill_value=cval)
    return run_conv(call, backend).reshape(shape)


def _separable(x: Any, passes: list[tuple[np.ndarray, int, str, int]], cval: float,
               output: Any, backend: Any) -> Any:
    """SciPy's separable filters: the 1-D ``passes`` (weights, axis, mode, origin) in order.

    Float outputs chain the passes in the compute dtype, on the device for an
    OpenCL backend (a host input is uploaded once); integer outputs write each
    pass into the output dtype, as SciPy does.
    """
    if _is_dask(x):
        reach: dict[int, int] = {}
        modes = {}
        for weights, axis, mode, origin in passes:
            before, after = _pads(len(weights), origin)
            reach[axis] = reach.get(axis, 0) + max(before, after)
            modes[axis] = mode
        return _lazily(x, reach, modes, output,
                       lambda b: _separable(b, passes, cval, output, backend))
    dtype, target = _output(output, x)
    compute = _compute_dtype(np.dtype(x.dtype))
    device = is_device_array(x)
    y = x.astype(compute) if device and x.dtype != compute else x
    if not device:
        y = np.asarray(x).astype(compute, copy=False)
        be = get_backend(backend)
        if len(passes) > 1 and dtype.kind == "f" and has_device_memory(be):
            y = be.to_device(y)
    for weights, axis, mode, origin in passes:
        y = _pass1d(y, weights, axis, mode, cval, origin, compute, backend)
        if dtype.kind != "f":  # integer outputs: every pass is written into them
            y = _cast(y, dtype).astype(compute)
    if not passes:
        y = to_host(x) if device else np.array(x)
    if not device:
        y = to_host(y)
    return _finish(y, dtype, target, device, backend)


# ---------------------------------------------------------------- public functions

def correlate1d(input: Any, weights: Any, axis: int = -1, output: Any = None,
                mode: str = "reflect", cval: float = 0.0, origin: int = 0, *,
                backend: str | None = None) -> Any:
    """1-D correlation along ``axis``, as ``scipy.ndimage.correlate1d``."""
    x = _input(input)
    w = _weights1d(weights)
    axis = _axes(axis, x.ndim)[0]
    return _separable(x, [(w, axis, _mode(mode), _int(origin, "origin"))], float(cval),
                      output, backend)


def convolve1d(input: Any, weights: Any, axis: int = -1, output: Any = None,
               mode: str = "reflect", cval: float = 0.0, origin: int = 0, *,
               backend: str | None = None) -> Any:
    """1-D convolution along ``axis``, as ``scipy.ndimage.convolve1d`` (the weights
    reversed, the origin mirrored, even lengths shifted as SciPy shifts them)."""
    w = _weights1d(weights)
    origin = -_int(origin, "origin")
    if not len(w) & 1:
        origin -= 1
    return correlate1d(input, w[::-1], axis, output, mode, cval, origin, backend=backend)


def _weights1d(weights: Any) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ArgumentError(f"weights has shape {w.shape}; expected a non-empty 1-D sequence")
    return w


def correlate(input: Any, weights: Any, output: Any = None, mode: str = "reflect",
              cval: float = 0.0, origin: Any = 0, *, axes: Any = None,
              backend: str | None = None) -> Any:
    """Multidimensional correlation, as ``scipy.ndimage.correlate`` (1 to 3 filtered
    axes, weights of the same rank); one convolution call."""
    return _correlate(input, weights, output, mode, cval, origin, axes, backend, False)


def convolve(input: Any, weights: Any, output: Any = None, mode: str = "reflect",
             cval: float = 0.0, origin: Any = 0, *, axes: Any = None,
             backend: str | None = None) -> Any:
    """Multidimensional convolution, as ``scipy.ndimage.convolve``: the weights flipped
    on every axis and the origin mirrored (even sizes shifted as SciPy does)."""
    return _correlate(input, weights, output, mode, cval, origin, axes, backend, True)


def _correlate(input, weights, output, mode, cval, origin, axes, backend, flip):
    x = _input(input)
    w = np.asarray(to_host(weights) if is_device_array(weights) else weights, dtype=np.float64)
    chosen = _axes(axes, x.ndim)
    if w.ndim != len(chosen):
        raise NdimageRuntimeError(f"weights has {w.ndim} dims: weights.ndim ({w.ndim}) must "
                                  f"match len(axes) ({len(chosen)})")
    if not 1 <= len(chosen) <= 3:
        raise ArgumentError(f"{len(chosen)} filtered axes; clconv.ndimage.correlate takes 1 "
                            "to 3 (use the 1-D or separable filters for more)")
    if 0 in w.shape:
        raise ArgumentError(f"weights has shape {w.shape}; expected every size >= 1")
    origins = _per_axis(origin, len(chosen), "origin", lambda v: _int(v, "origin"))
    if flip:
        w = w[(slice(None, None, -1),) * w.ndim]
        origins = [-o - (1 - k % 2) for o, k in zip(origins, w.shape)]
    border = _mode(mode)
    if _is_dask(x):
        reach = {a: max(_pads(k, o)) for a, k, o in zip(chosen, w.shape, origins)}
        flipped_back = w[(slice(None, None, -1),) * w.ndim] if flip else w
        return _lazily(x, reach, dict.fromkeys(chosen, border), output,
                       lambda b: _correlate(b, flipped_back, output, mode, cval,
                                            origin, axes, backend, flip))
    dtype, target = _output(output, x)
    compute = _compute_dtype(np.dtype(x.dtype))
    device = is_device_array(x)
    # The filtered axes last, the others merged into the batch: (N, 1, *filtered).
    rest = [a for a in range(x.ndim) if a not in chosen]
    order = rest + chosen
    host = to_host(x) if device and order != list(range(x.ndim)) else x
    if not is_device_array(host):
        host = np.transpose(np.asarray(host), order).astype(compute, copy=False)
    elif host.dtype != compute:
        host = host.astype(compute)
    filtered = tuple(x.shape[a] for a in chosen)
    operand = host.reshape(math.prod(x.shape[a] for a in rest), 1, *filtered)
    pads = tuple(_pads(k, o) for k, o in zip(w.shape, origins))
    call = normalize_conv(len(chosen), operand, w.astype(compute).reshape(1, 1, *w.shape), None,
                          1, pads, 1, 1, border, "channels_first", False, fill_value=float(cval))
    y = run_conv(call, backend)
    if is_device_array(y):
        y = y.reshape(*(x.shape[a] for a in order))
        if order == list(range(x.ndim)):
            return _finish(y, dtype, target, device, backend)
        y = to_host(y)
    y = np.transpose(np.asarray(y).reshape(*(x.shape[a] for a in order)), np.argsort(order))
    return _finish(np.ascontiguousarray(y), dtype, target, device, backend)


def uniform_filter(input: Any, size: Any = 3, output: Any = None, mode: Any = "reflect",
                   cval: float = 0.0, origin: Any = 0, *, axes: Any = None,
                   backend: str | None = None) -> Any:
    """A box (mean) filter of ``size`` per axis, as ``scipy.ndimage.uniform_filter``."""
    x = _input(input)
    chosen = _axes(axes, x.ndim)
    sizes = _per_axis(size, len(chosen), "size", lambda v: _positive(v, "size"))
    modes = _per_axis(mode, len(chosen), "mode", _mode)
    origins = _per_axis(origin, len(chosen), "origin", lambda v: _int(v, "origin"))
    passes = [(np.full(s, 1.0 / s), a, m, o)
              for a, s, m, o in zip(chosen, sizes, modes, origins) if s > 1]
    return _separable(x, passes, float(cval), output, backend)


def _positive(value: Any, name: str) -> int:
    v = _int(value, name)
    if v < 1:
        raise ArgumentError(f"{name}={value!r}; expected an int >= 1")
    return v


def gaussian_kernel1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """SciPy's 1-D Gaussian (or its ``order``-th derivative) on ``-radius..radius``,
    normalised to sum 1 before differentiating, in correlation order."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    phi /= phi.sum()
    if order == 0:
        return phi
    # phi^(n)(x) = q_n(x) phi(x), with q_{n+1} = q_n' - x q_n / sigma^2.
    q = np.zeros(order + 1)
    q[0] = 1
    step = np.diag(np.arange(1, order + 1, dtype=np.float64), 1) + np.diag(
        np.full(order, -1 / (sigma * sigma)), -1)
    for _ in range(order):
        q = step @ q
    return ((x[:, None] ** np.arange(order + 1)) @ q * phi)[::-1]


def gaussian_filter(input: Any, sigma: Any, order: Any = 0, output: Any = None,
                    mode: Any = "reflect", cval: float = 0.0, truncate: float = 4.0, *,
                    radius: Any = None, axes: Any = None, backend: str | None = None) -> Any:
    """A Gaussian filter (or derivatives) per axis, as ``scipy.ndimage.gaussian_filter``.

    The radius per axis is ``int(truncate * sigma + 0.5)`` unless ``radius``
    gives it. Unlike SciPy, a negative ``sigma`` is an ``ArgumentError``.
    """
    x = _input(input)
    chosen = _axes(axes, x.ndim)
    sigmas = _per_axis(sigma, len(chosen), "sigma", _sigma)
    orders = _per_axis(order, len(chosen), "order", lambda v: _order(v))
    modes = _per_axis(mode, len(chosen), "mode", _mode)
    radii = _per_axis(radius, len(chosen), "radius",
                      lambda v: None if v is None else _order(v, "radius"))
    passes = []
    for a, s, o, m, r in zip(chosen, sigmas, orders, modes, radii):
        if s == 0:
            continue  # SciPy leaves an axis of sigma 0 unfiltered
        lw = int(float(truncate) * s + 0.5) if r is None else r
        passes.append((gaussian_kernel1d(s, o, lw), a, m, 0))
    return _separable(x, passes, float(cval), output, backend)


def _sigma(value: Any) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise DTypeError(f"sigma={value!r}; expected a number") from None
    if not s >= 0 or math.isinf(s):
        raise ArgumentError(f"sigma={value!r}; expected a finite number >= 0 (SciPy ignores "
                            "negative values; clconv refuses them)")
    return s


def _order(value: Any, name: str = "order") -> int:
    v = _int(value, name)
    if v < 0:
        raise ArgumentError(f"{name}={value!r}; expected an int >= 0")
    return v


def _derivative(input: Any, axis: int, output: Any, mode: Any, cval: float, backend: Any,
                smooth: list[float]) -> Any:
    x = _input(input)
    axis = _axes(axis, x.ndim)[0]
    modes = _per_axis(mode, x.ndim, "mode", _mode)
    passes = [(np.array([-1.0, 0.0, 1.0]), axis, modes[axis], 0)]
    passes += [(np.array(smooth), a, modes[a], 0) for a in range(x.ndim) if a != axis]
    return _separable(x, passes, float(cval), output, backend)


def sobel(input: Any, axis: int = -1, output: Any = None, mode: Any = "reflect",
          cval: float = 0.0, *, backend: str | None = None) -> Any:
    """The Sobel derivative along ``axis`` (smoothing [1, 2, 1] on the others), as
    ``scipy.ndimage.sobel``."""
    return _derivative(input, axis, output, mode, cval, backend, [1.0, 2.0, 1.0])


def prewitt(input: Any, axis: int = -1, output: Any = None, mode: Any = "reflect",
            cval: float = 0.0, *, backend: str | None = None) -> Any:
    """The Prewitt derivative along ``axis`` (smoothing [1, 1, 1] on the others), as
    ``scipy.ndimage.prewitt``."""
    return _derivative(input, axis, output, mode, cval, backend, [1.0, 1.0, 1.0])


def laplace(input: Any, output: Any = None, mode: Any = "reflect", cval: float = 0.0, *,
            axes: Any = None, backend: str | None = None) -> Any:
    """The discrete Laplacian: the sum over axes of [1, -2, 1] along each, as
    ``scipy.ndimage.laplace`` (each axis' second derivative written into the output
    dtype before the sum, as SciPy does)."""
    x = _input(input)
    chosen = _axes(axes, x.ndim)
    modes = _per_axis(mode, len(chosen), "mode", _mode)
    if _is_dask(x):
        return _lazily(x, dict.fromkeys(chosen, 1), dict(zip(chosen, modes)), output,
                       lambda b: laplace(b, output, mode, cval, axes=axes, backend=backend))
    dtype, target = _output(output, x)
    device = is_device_array(x)
    if not chosen:
        return _finish(to_host(x) if device else np.array(x), dtype, target, device, backend)
    total = None
    for a, m in zip(chosen, modes):
        part = _separable(x, [(np.array([1.0, -2.0, 1.0]), a, m, 0)], float(cval), dtype,
                          backend)
        part = to_host(part)
        total = part if total is None else _cast(total.astype(np.float64) + part, dtype)
    return _finish(total, dtype, target, device, backend)
