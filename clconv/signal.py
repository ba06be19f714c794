"""NumPy / SciPy compatible wrappers: ``convolve``, ``convolve2d``, ``correlate2d``.

They reproduce the edge rules of ``numpy.convolve`` and
``scipy.signal.convolve2d`` / ``correlate2d`` (operand swapping, the
alignment of ``same`` for even kernels, the ``fill``/``wrap``/``symm``
boundaries) by translating each call into an explicit convolution spec.
"""

from __future__ import annotations

from typing import Any

from ._normalize import as_operand, cast_host, normalize_conv, result_dtype
from .errors import ArgumentError, ShapeError
from .functional import run_conv

__all__ = ["convolve", "convolve2d", "correlate2d"]

_MODES = ("full", "same", "valid")
# scipy.signal boundary names -> numpy.pad mode
_BOUNDARIES = {"fill": "constant", "pad": "constant", "wrap": "wrap", "circular": "wrap",
               "symm": "symmetric", "symmetric": "symmetric"}


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


def _fill(fillvalue: Any) -> float:
    try:
        value = complex(fillvalue)
    except (TypeError, ValueError):
        raise ArgumentError(f"fillvalue={fillvalue!r}; expected a real number") from None
    if value.imag:
        raise ArgumentError(f"fillvalue={fillvalue!r}; expected a real number")
    return value.real


def _pads(kernel_shape, mode: str, before_same) -> tuple[tuple[int, int], ...]:
    if mode == "valid":
        return tuple((0, 0) for _ in kernel_shape)
    if mode == "full":
        return tuple((k - 1, k - 1) for k in kernel_shape)
    return tuple((before_same(k), k - 1 - before_same(k)) for k in kernel_shape)


def _run(signal, kernel, pads, border, fill, flip, dtype, backend):
    ndim = signal.ndim
    call = normalize_conv(ndim, signal.reshape((1, 1, *signal.shape)),
                          kernel.reshape((1, 1, *kernel.shape)), None, 1, pads, 1, 1,
                          border, "channels_first", flip, fill_value=fill)
    y = run_conv(call, backend)
    return y.reshape(y.shape[2:])


def _operands(first, second, ndim: int, names: tuple[str, str]):
    a = as_operand(first, names[0])
    b = as_operand(second, names[1])
    dtype = result_dtype(a.dtype, names[0])
    for arr, name in ((a, names[0]), (b, names[1])):
        if arr.ndim != ndim:
            raise ShapeError(f"{name} has shape {tuple(arr.shape)}; expected {ndim} dims")
        if 0 in arr.shape:
            raise ShapeError(f"{name} has shape {tuple(arr.shape)}; expected a non-empty array")
    return cast_host(a, dtype), cast_host(b, dtype), dtype


def convolve(a: Any, v: Any, mode: str = "full", *, backend: str | None = None) -> Any:
    """Discrete linear convolution of two 1-D sequences, as ``numpy.convolve``.

    When ``v`` is longer than ``a`` the two are swapped, as NumPy does. The
    result dtype follows ``a`` (float64 and float16 kept, others float32).

    >>> import clconv
    >>> clconv.convolve([0, 0, 0, 1, 2, 3, 2, 1, 0, 0], [1, 2, 3, 2, 1], backend="numpy")
    array([ 0.,  0.,  0.,  1.,  4., 10., 16., 19., 16., 10.,  4.,  1.,  0.,  0.],
          dtype=float32)
    """
    mode = _mode(mode)
    a = as_operand(a, "a")
    v = as_operand(v, "v")
    if a.ndim == 0:
        a = a.reshape(1)
    if v.ndim == 0:
        v = v.reshape(1)
    a, v, dtype = _operands(a, v, 1, ("a", "v"))
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    return _run(a, v, _pads(v.shape, mode, lambda k: k // 2), "constant", 0.0, True, dtype,
                backend)


def _conv2d_signal(in1, in2, mode, boundary, fillvalue, backend, *, correlate: bool):
    mode = _mode(mode)
    border = _boundary(boundary)
    fill = _fill(fillvalue)
    a, b, dtype = _operands(in1, in2, 2, ("in1", "in2"))
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
    before = (lambda k: (k - 1) // 2) if correlate else (lambda k: k // 2)
    y = _run(a, b, _pads(b.shape, mode, before), border, fill, not correlate, dtype, backend)
    if swapped and correlate:
        y = y[::-1, ::-1]
    return y


def convolve2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
               fillvalue: float = 0, *, backend: str | None = None) -> Any:
    """2-D convolution, as ``scipy.signal.convolve2d``.

    ``mode`` is ``full``, ``same`` or ``valid``; ``boundary`` is ``fill``
    (with ``fillvalue``), ``wrap`` or ``symm``. The dtype follows ``in1``.

    >>> import numpy as np, clconv
    >>> clconv.convolve2d(np.eye(3), np.ones((2, 2)), mode="valid", backend="numpy")
    array([[2., 1.],
           [1., 2.]])
    """
    return _conv2d_signal(in1, in2, mode, boundary, fillvalue, backend, correlate=False)


def correlate2d(in1: Any, in2: Any, mode: str = "full", boundary: str = "fill",
                fillvalue: float = 0, *, backend: str | None = None) -> Any:
    """2-D cross-correlation, as ``scipy.signal.correlate2d``.

    Same arguments as :func:`convolve2d`; the kernel is not flipped.

    >>> import numpy as np, clconv
    >>> clconv.correlate2d(np.eye(3), np.array([[1, 0], [0, 0]]), mode="valid", backend="numpy")
    array([[1., 0.],
           [0., 1.]])
    """
    return _conv2d_signal(in1, in2, mode, boundary, fillvalue, backend, correlate=True)
