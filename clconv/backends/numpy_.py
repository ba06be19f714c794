"""The NumPy reference backend: clarity first, then speed.

Forward: pad with ``numpy.pad`` (whose modes define clconv's border rules),
then either

* contract an im2col matrix, built in bounded chunks, with the weights by
  BLAS (dense layers), or
* accumulate one strided view per kernel tap when each group has a single
  input channel (depthwise layers, single-channel image filters),

without Python loops over pixels. Half precision accumulates in float32;
every other dtype in its own precision.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any

import numpy as np

from .._spec import ConvSpec
from ..errors import AllocationError, BackendUnavailable
from . import to_host as _read_back

# Bytes of one im2col chunk; bounds the memory of big convolutions.
IM2COL_CHUNK_BYTES = 16 * 2**20
# Output bytes summed at a time on the tap path (partial sums stay in cache).
TAP_CHUNK_BYTES = 2 * 2**20
# Groups with one input channel and at most this many filters use the tap path.
TAP_PATH_MAX_FILTERS = 4


def to_host(array: Any) -> Any:
    """A NumPy view of a host array, a copy of any backend's device array; None stays None."""
    return None if array is None else _read_back(array)


def accumulator_dtype(spec: ConvSpec) -> np.dtype:
    return np.dtype(np.float64 if spec.dtype == "float64" else np.float32)


def pad_input(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Pad the spatial axes of a channels-first ``x`` as the spec says."""
    pads = [(0, 0), (0, 0), *zip(spec.pad_before, spec.pad_after)]
    if not any(spec.pad_before) and not any(spec.pad_after):
        return x
    if spec.border == "constant":  # what np.pad does, without its per-call overhead
        out = np.full((*x.shape[:2], *spec.padded_size), spec.fill_value, dtype=x.dtype)
        out[(slice(None), slice(None),
             *(slice(b, b + n) for b, n in zip(spec.pad_before, spec.in_size)))] = x
        return out
    return np.pad(x, pads, mode=spec.border)


def _tap_slices(tap, spec: ConvSpec) -> tuple[slice, ...]:
    """The strided slice of the padded input that kernel tap ``tap`` reads."""
    return tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                 for t, d, o, s in zip(tap, spec.dilation, spec.out_size, spec.stride))


def _correlate_taps(xp: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """One input channel per group: sum over taps of weight * shifted view.

    Big outputs are summed in blocks of output rows of about
    ``TAP_CHUNK_BYTES`` so that the partial sums stay in cache across taps.
    """
    n, g, fg, nd = spec.batch, spec.groups, spec.out_per_group, spec.ndim
    xg = xp.reshape(n, g, 1, *xp.shape[2:])
    wg = w.reshape(g, fg, *spec.kernel_size)
    taps = list(product(*(range(k) for k in spec.kernel_size)))
    out_size = spec.out_size
    y = np.empty((n, g, fg, *out_size), dtype=xp.dtype)
    rows = out_size[0]
    row_bytes = n * g * fg * math.prod(out_size[1:]) * xp.dtype.itemsize
    rows_per_chunk = max(1, min(rows, TAP_CHUNK_BYTES // max(row_bytes, 1)))
    term = np.empty((n, g, fg, rows_per_chunk, *out_size[1:]), dtype=xp.dtype)
    s0, d0 = spec.stride[0], spec.dilation[0]
    lead = (slice(None), slice(None), slice(None))
    for r0 in range(0, rows, rows_per_chunk):
        rb = min(rows_per_chunk, rows - r0)
        block, partial = y[:, :, :, r0:r0 + rb], term[:, :, :, :rb]
        for i, tap in enumerate(taps):
            wt = wg[(slice(None), slice(None), *tap)].reshape(1, g, fg, *(1,) * nd)
            first = tap[0] * d0 + r0 * s0
            window = (slice(first, first + (rb - 1) * s0 + 1, s0), *_tap_slices(tap, spec)[1:])
            if i == 0:  # the first tap initialises the sum
                np.multiply(wt, xg[lead + window], out=block)
            else:
                np.multiply(wt, xg[lead + window], out=partial)
                block += partial
    return y.reshape(n, g * fg, *out_size)


def _correlate_im2col(xp: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Dense path: im2col chunks (over batch and first output axis) times the weights.

    The column matrix of a chunk is ``(N, G, Cg, taps, rows, *rest)``: it is
    filled by one strided copy per kernel tap (each a plain shifted view of
    the padded input), then contracted with the ``(G, Fg, Cg * taps)``
    weights by one batched BLAS ``matmul``. A 1x1 kernel at stride 1 needs no
    column matrix at all: the input is already one.
    """
    n, g, cg, fg = spec.batch, spec.groups, spec.in_per_group, spec.out_per_group
    taps = list(product(*(range(k) for k in spec.kernel_size)))
    wmat = w.reshape(g, fg, cg * len(taps))
    xg = xp.reshape(n, g, cg, *xp.shape[2:])
    lead = (slice(None), slice(None), slice(None))
    out_size, pixels = spec.out_size, math.prod(spec.out_size)

    if len(taps) == 1 and all(s == 1 for s in spec.stride):
        cols = xg[lead + _tap_slices(taps[0], spec)].reshape(n, g, cg, pixels)
        return np.matmul(wmat, cols).reshape(n, g * fg, *out_size)

    rows, rest = out_size[0], math.prod(out_size[1:])
    row_bytes = g * cg * len(taps) * rest * xp.dtype.itemsize
    rows_per_chunk = max(1, min(rows, IM2COL_CHUNK_BYTES // max(row_bytes, 1)))
    batch_per_chunk = max(1, min(n, IM2COL_CHUNK_BYTES // max(row_bytes * rows, 1)))
    cols = np.empty((batch_per_chunk, g, cg, len(taps), rows_per_chunk, *out_size[1:]),
                    dtype=xp.dtype)
    s0, d0 = spec.stride[0], spec.dilation[0]
    chunked = batch_per_chunk < n or rows_per_chunk < rows
    y = np.empty((n, g, fg, *out_size), dtype=xp.dtype) if chunked else None
    for n0 in range(0, n, batch_per_chunk):
        nb = min(batch_per_chunk, n - n0)
        for r0 in range(0, rows, rows_per_chunk):
            rb = min(rows_per_chunk, rows - r0)
            part = (cols[:nb] if rb == rows_per_chunk else
                    np.empty((nb, g, cg, len(taps), rb, *out_size[1:]), dtype=xp.dtype))
            for i, tap in enumerate(taps):
                first = tap[0] * d0 + r0 * s0
                window = (slice(first, first + (rb - 1) * s0 + 1, s0),
                          *_tap_slices(tap, spec)[1:])
                part[:, :, :, i] = xg[(slice(n0, n0 + nb), slice(None), slice(None), *window)]
            res = np.matmul(wmat, part.reshape(nb, g, cg * len(taps), rb * rest))
            if not chunked:
                return res.reshape(n, g * fg, *out_size)
            y[n0:n0 + nb, :, :, r0:r0 + rb] = res.reshape(nb, g, fg, rb, *out_size[1:])
    return y.reshape(n, g * fg, *out_size)


def correlate(xp: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Cross-correlate a padded channels-first input with ``w``: ``(N, F, *out)``."""
    if spec.in_per_group == 1 and spec.out_per_group <= TAP_PATH_MAX_FILTERS:
        return _correlate_taps(xp, w, spec)
    return _correlate_im2col(xp, w, spec)


def flip_kernel(w: np.ndarray, ndim: int) -> np.ndarray:
    return w[(Ellipsis, *(slice(None, None, -1),) * ndim)]


class NumpyBackend:
    """Reference implementation of the :class:`clconv.Backend` protocol on the host."""

    name = "numpy"
    # Two 1-D passes do kH + kW taps per pixel instead of kH * kW, but sweep the
    # image twice through an intermediate array: on the host that extra sweep
    # costs about what a 5x5 kernel's saved taps gain, so from 25 taps on it pays.
    separable_min_taps = 25

    def __repr__(self) -> str:
        return "<clconv NumpyBackend>"

    def owns(self, obj: Any) -> bool:
        """Always False: this backend has no device memory."""
        return False

    def to_host(self, array: Any) -> np.ndarray:
        """``array`` as a NumPy array (another backend's device array is read back)."""
        return _read_back(array)

    # NaN and Inf are data: they propagate to the outputs silently, as on every backend.
    @np.errstate(over="ignore", invalid="ignore")
    def conv_forward(self, x: Any, weight: Any, bias: Any, spec: ConvSpec) -> np.ndarray:
        if spec.batch == 0 or spec.out_channels == 0:
            return np.zeros(spec.output_shape, dtype=spec.dtype)
        acc = accumulator_dtype(spec)
        x = to_host(x)
        if spec.channels_last:
            x = np.moveaxis(x, -1, 1)
        w = to_host(weight).astype(acc, copy=False)
        if spec.flip:
            w = flip_kernel(w, spec.ndim)
        try:
            y = correlate(pad_input(x.astype(acc, copy=False), spec), w, spec)
        except MemoryError as exc:
            raise AllocationError(
                f"the NumPy backend ran out of host memory for input {spec.input_shape}, "
                f"kernel {spec.kernel_size}, output {spec.output_shape}: {exc}") from None
        if bias is not None:
            y += to_host(bias).astype(acc, copy=False).reshape(-1, *(1,) * spec.ndim)
        if spec.channels_last:
            y = np.moveaxis(y, 1, -1)
        return np.ascontiguousarray(y, dtype=spec.dtype)

    @np.errstate(over="ignore", invalid="ignore")
    def conv_backward(self, x: Any, weight: Any, grad_output: Any, spec: ConvSpec,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(grad_input, grad_weight, grad_bias)``; the maths is in :mod:`.numpy_backward`."""
        from .numpy_backward import backward_host  # imports this module, so lazily

        return backward_host(x, weight, grad_output, spec)

    @np.errstate(over="ignore", invalid="ignore")
    def conv_transpose(self, grad_output: Any, weight: Any, bias: Any, spec: ConvSpec,
                       ) -> np.ndarray:
        """The transposed convolution: ``spec``'s input gradient for ``grad_output``, plus
        ``bias`` per input channel of ``spec``."""
        from .numpy_backward import transpose_host

        return transpose_host(grad_output, weight, bias, spec)


def factory(option: str | None) -> NumpyBackend:
    """Registry factory: the NumPy backend takes no option."""
    if option:
        raise BackendUnavailable(f"backend 'numpy:{option}': the NumPy backend takes no option")
    return NumpyBackend()
