"""NumPy / SciPy compatible wrappers: ``convolve``, ``convolve2d``, ``correlate2d``.

They reproduce ``numpy.convolve`` and ``scipy.signal.convolve2d`` /
``correlate2d``: operand swapping, the alignment of ``same`` for even
kernels, the ``fill``/``wrap``/``symm`` boundaries, and NumPy's result dtypes
(``numpy.result_type`` of the inputs, exact integers, complex inputs), by
translating each call into real convolutions on the chosen backend. The
convolution layers keep their own dtype rule (float32 for integer input):
they are deep-learning operations, these are drop-ins for NumPy and SciPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._normalize import as_operand, normalize_conv
from .backends import to_host
from .errors import ArgumentError, DTypeError, ShapeError
from .functional import run_conv

__all__ = ["convolve", "convolve2d", "correlate2d"]

_MODES = ("full", "same", "valid")
# scipy.signal boundary names -> numpy.pad mode
_BOUNDARIES = {"fill": "constant", "pad": "constant", "wrap": "wrap", "circular": "wrap",
               "symm": "symmetric", "symmetric": "symmetric"}
# Largest |partial sum| a float32 accumulation of integers keeps exact.
FLOAT32_EXACT = 2**24


def _mode(mode: Any) -> str:
    key = mode.lower() if isinstance(mode, str) else None
    if key not in _MODES:
        raise ArgumentError(f"mode={mode!r}; expected 'full', 'same' or 'valid'")
    return key


def _boundary(boundary: Any) -> str:
    key = boundary.lower() if isinstance(boundary, str) else None
    if key not in _BOUNDARIES:
        raise ArgumentError(f"boundary={boundary!r}; expected 'fill', 'wrap' or 'symm'")
    return _BOUNDARIES[key]


def _fill(fillvalue: Any, dtype: np.dtype) -> complex:
    """The fill value as SciPy accepts it for a result of ``dtype``: one number; complex
    only for a complex result; for integers finite and in range, truncated toward zero."""
    try:
        value = np.asarray(fillvalue)
    except (TypeError, ValueError):
        raise ArgumentError(f"fillvalue={fillvalue!r}; expected a number") from None
    if value.size == 0:
        raise ArgumentError(f"fillvalue={fillvalue!r}: `fillvalue` cannot be an empty array")
    if value.size != 1:
        raise ArgumentError(f"fillvalue={fillvalue!r}: `fillvalue` must be scalar or an array "
                            "with one element")
    if value.dtype.kind not in "biufc":
        raise ArgumentError(f"fillvalue={fillvalue!r}; expected a number")
    number = complex(value.reshape(()).item())
    if dtype.kind != "c" and value.dtype.kind == "c":
        raise ArgumentError(f"fillvalue={fillvalue!r}: could not cast `fillvalue` directly to "
                            f"the output type {dtype} (a complex value for a real result)")
    if dtype.kind in "biu":
        info = np.iinfo(np.int64 if dtype.kind == "b" else dtype)
        if not np.isfinite(number.real) or not info.min <= int(number.real) <= info.max:
            raise ArgumentError(f"fillvalue={fillvalue!r}: could not cast `fillvalue` directly "
                                f"to the output type {dtype}")
        return complex(int(number.real))
    return number


def _pads(kernel_shape, mode: str, before_same) -> tuple[tuple[int, int], ...]:
    if mode == "valid":
        return tuple((0, 0) for _ in kernel_shape)
    if mode == "full":
        return tuple((k - 1, k - 1) for k in kernel_shape)
    return tuple((before_same(k), k - 1 - before_same(k)) for k in kernel_shape)


# Below this every float64 partial sum of integers is exact.
FLOAT64_EXACT = 2**53


def _compute_dtype(result: np.dtype, a: np.ndarray, b: np.ndarray, fill: complex,
                   ) -> np.dtype | None:
    """The real dtype the convolutions run in for a result of dtype ``result``.

    Floating results run in their own precision (complex ones in their
    parts'). Integer and bool results must be exact: every partial sum is at
    most ``max(|a|, |fill|) * sum(|b|)``, so float32 while that stays below
    2**24, float64 below 2**53, and None beyond (integer arithmetic on the
    host, wrapping around as NumPy's does).
    """
    if result.kind == "c":
        return np.dtype(np.float32 if result == np.complex64 else np.float64)
    if result.kind == "f":
        return result
    with np.errstate(over="ignore"):
        peak = max(float(np.max(np.abs(a.astype(np.float64)))), abs(fill.real))
        bound = peak * float(np.sum(np.abs(b.astype(np.float64))))
    if bound < FLOAT32_EXACT:
        return np.dtype(np.float32)
    return np.dtype(np.float64) if bound < FLOAT64_EXACT else None


def _integer_taps(signal: np.ndarray, kernel: np.ndarray, pads, border: str, fill: complex,
                  flip: bool, result: np.dtype) -> np.ndarray:
    """Partial sums beyond 2**53: NumPy integer arithmetic, one shifted slice per tap, in
    64 bits (wrapping modulo 2**64, so the final cast wraps as NumPy's own sums do)."""
    acc = np.uint64 if result == np.uint64 else np.int64
    extra = {"constant_values": int(fill.real)} if border == "constant" else {}
    padded = np.pad(signal.astype(acc), pads, mode=border, **extra)
    k = kernel[(slice(None, None, -1),) * kernel.ndim] if flip else kernel
    out_shape = tuple(p - n + 1 for p, n in zip(padded.shape, k.shape))
    out = np.zeros(out_shape, acc)
    with np.errstate(over="ignore"):
        for tap in np.ndindex(*k.shape):
            window = tuple(slice(t, t + o) for t, o in zip(tap, out_shape))
            out += acc(k[tap]) * padded[window]
    return out.astype(result)


def _to_result(y: np.ndarray, result: np.dtype) -> np.ndarray:
    """Real results (exact integers for integer dtypes) in ``result``: integers wrap
    around as NumPy's integer arithmetic does; bool is 'any product true'."""
    if result.kind == "b":
        return y != 0
    if result.kind in "iu":
        return np.rint(y).astype(np.int64).astype(result)
    return y.astype(result, copy=False)


def _products(signals: list[np.ndarray], kernels: list[np.ndarray], fills: list[float],
              pads, border: str, flip: bool, dtype: np.dtype, backend) -> np.ndarray:
    """``y[i, j]``: ``signals[i]`` (padded with ``fills[i]``) convolved with ``kernels[j]``.

    One backend call with the signals as the batch and the kernels as the
    filters (one call per signal when their fill values differ).
    """
    x = np.stack(signals).astype(dtype, copy=False)[:, None]
    w = np.stack(kernels).astype(dtype, copy=False)[:, None]
    rows = [list(range(len(signals)))] if len(set(fills)) == 1 else [
        [i] for i in range(len(signals))]
    parts = []
    for batch in rows:
        call = normalize_conv(x.ndim - 2, x[batch], w, None, 1, pads, 1, 1, border,
                              "channels_first", flip, fill_value=fills[batch[0]])
        parts.append(np.asarray(run_conv(call, backend)))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _run(signal: np.ndarray, kernel: np.ndarray, pads, border: str, fill: complex, flip: bool,
         result: np.dtype, backend) -> np.ndarray:
    """``signal`` convolved with ``kernel`` as a result of dtype ``result``; complex parts
    through real convolutions: (ar + i ai)(br + i bi) = ar br - ai bi + i (ar bi + ai br)."""
    dtype = _compute_dtype(result, signal, kernel, fill)
    if dtype is None:
        return _integer_taps(signal, kernel, pads, border, fill, flip, result)
    if result.kind != "c":
        y = _products([signal], [kernel], [fill.real], pads, border, flip, dtype, backend)
        return _to_result(y[0, 0], result)
    complex_signal = np.iscomplexobj(signal) or bool(fill.imag)
    signals, fills = [signal.real], [fill.real]
    if complex_signal:
        signals.append(signal.imag if np.iscomplexobj(signal) else np.zeros_like(signal))
        fills.append(fill.imag)
    complex_kernel = np.iscomplexobj(kernel)
    kernels = [kernel.real, kernel.imag] if complex_kernel else [kernel.real]
    y = _products(signals, kernels, fills, pads, border, flip, dtype, backend).astype(result)
    out = y[0, 0].copy()
    if complex_kernel:
        out += 1j * y[0, 1]
    if complex_signal:
        out += 1j * y[1, 0]
        if complex_kernel:
            out -= y[1, 1]
    return out


def _host_operand(value: Any, name: str) -> np.ndarray:
    """A native-order host array of a real or complex numeric dtype (device arrays are
    read back: the wrappers return NumPy arrays)."""
    try:
        arr = to_host(value)
    except (ValueError, TypeError) as exc:
        raise ArgumentError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype.kind not in "biufc":
        raise DTypeError(f"{name} has dtype {arr.dtype}; expected a numeric dtype (bool, "
                         "integer, float or complex), not object, string or datetime")
    if arr.dtype.kind == "c":
        return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    return as_operand(arr, name)


def _operands(first: np.ndarray, second: np.ndarray, ndim: int, names: tuple[str, str]):
    """Both operands checked for rank and size, and NumPy's result dtype."""
    for arr, name in ((first, names[0]), (second, names[1])):
        if arr.ndim != ndim:
            raise ShapeError(f"{name} has shape {tuple(arr.shape)}; expected {ndim} dims")
        if 0 in arr.shape:
            raise ShapeError(f"{name} has shape {tuple(arr.shape)}; expected a non-empty array")
    return np.result_type(first.dtype, second.dtype)


def convolve(a: Any, v: Any, mode: str = "full", *, backend: str | None = None) -> Any:
    """Discrete linear convolution of two 1-D sequences, as ``numpy.convolve``.

    When ``v`` is longer than ``a`` the two are swapped, as NumPy does. The
    result dtype is ``numpy.result_type(a, v)``. Integer and bool inputs give
    exact results: they are accumulated in float32 while every partial sum
    stays below 2**24, else in float64 (exact below 2**53, which a device
    without fp64 cannot do: ``BackendUnavailable``), then wrapped into the
    integer dtype as NumPy's integer arithmetic does; sums beyond 2**53 run
    in 64-bit integer arithmetic on the host, wrapping as NumPy's do. Complex inputs are
    computed from real convolutions of their parts (in one backend call).

    >>> import clconv
    >>> clconv.convolve([0, 0, 0, 1, 2, 3, 2, 1, 0, 0], [1, 2, 3, 2, 1], backend="numpy")
    array([ 0,  0,  0,  1,  4, 10, 16, 19, 16, 10,  4,  1,  0,  0])
    """
    mode = _mode(mode)
    a, v = _host_operand(a, "a"), _host_operand(v, "v")
    a, v = (x.reshape(1) if x.ndim == 0 else x for x in (a, v))
    result = _operands(a, v, 1, ("a", "v"))
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    return _run(a, v, _pads(v.shape, mode, lambda k: k // 2), "constant", 0j, True, result,
                backend)


def _conv2d_signal(in1, in2, mode, boundary, fillvalue, backend, *, correlate: bool):
    mode = _mode(mode)
    border = _boundary(boundary)
    a, b = _host_operand(in1, "in1"), _host_operand(in2, "in2")
    result = _operands(a, b, 2, ("in1", "in2"))
    fill = _fill(fillvalue, result)
    swapped = False
    if mode == "valid":
        fits = all(m >= n for m, n in zip(a.shape, b.shape))
        if not fits:
            if all(n >= m for m, n in zip(a.shape, b.shape)):
                a, b, swapped = b, a, True
            else:
                raise ShapeError(
                    f"in1 has shape {tuple(a.shape)} and in2 {tuple(b.shape)}; for mode 'valid' "
                    "expected one to be at least as large as the other in every dimension")
    if correlate and np.iscomplexobj(b):
        b = b.conj()  # SciPy correlates with the conjugate of (the possibly swapped) in2
    before = (lambda k: (k - 1) // 2) if correlate else (lambda k: k // 2)
    y = _run(a, b, _pads(b.shape, mode, before), border, fill, not correlate, result, backend)
    if swapped and correlate:
        y = y[::-1, ::-1]
    return y


def convolve2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
               fillvalue: float = 0, *, backend: str | None = None) -> Any:
    """2-D convolution, as ``scipy.signal.convolve2d``.

    ``mode`` is ``full``, ``same`` or ``valid``; ``boundary`` is ``fill``
    (with ``fillvalue``, cast to the result dtype as SciPy does: a complex
    value for a real result, or one outside an integer range, is an
    ``ArgumentError``), ``wrap`` or ``symm``. The result dtype is
    ``numpy.result_type(in1, in2)``, integers exact and complex inputs
    computed as in :func:`convolve`.

    >>> import numpy as np, clconv
    >>> clconv.convolve2d(np.eye(3), np.ones((2, 2)), mode="valid", backend="numpy")
    array([[2., 1.],
           [1., 2.]])
    """
    return _conv2d_signal(in1, in2, mode, boundary, fillvalue, backend, correlate=False)


def correlate2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
                fillvalue: float = 0, *, backend: str | None = None) -> Any:
    """2-D cross-correlation, as ``scipy.signal.correlate2d``.

    Same arguments and dtype rules as :func:`convolve2d`; the kernel is not
    flipped, and a complex ``in2`` is conjugated, as SciPy does.

    >>> import numpy as np, clconv
    >>> clconv.correlate2d(np.eye(3), np.array([[1, 0], [0, 0]]), mode="valid", backend="numpy")
    array([[1., 0.],
           [0., 1.]])
    """
    return _conv2d_signal(in1, in2, mode, boundary, fillvalue, backend, correlate=True)
