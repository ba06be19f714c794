"""The backward pass of the NumPy reference backend.

For the forward ``y = correlate(pad(x), w) + b`` (see :mod:`.numpy_`):

* ``grad_bias`` is ``grad_output`` summed over batch and positions;
* ``grad_weight[f, c, t]`` sums ``grad_output[n, f, o] * pad(x)[n, c, o*s + t*d]``
  over batch and positions: ``grad_output @ cols^T`` on bounded im2col chunks;
* ``grad_input`` is first the gradient with respect to the *padded* input
  (``w^T @ grad_output`` on the same chunks, scattered back tap by tap into
  strided slices: col2im),
  then folded back through the padding with the adjoint of ``numpy.pad``'s
  index map: every padded pixel is a copy of one source pixel (or a
  constant), so its gradient is added to that source pixel. The index map is
  :mod:`clconv._borders`' (``numpy.pad``'s rule, periodic), so the fold is
  exact for every border mode and any padding width, also wider than the input.

Groups with a single input channel (depthwise layers) use elementwise
products per tap instead, like the forward. Loops run over kernel taps,
chunks and spatial axes, never over pixels. Half
precision accumulates in float32; every other dtype in its own precision.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any

import numpy as np

from .._borders import padded_source
from .._spec import ConvSpec
from ..errors import AllocationError
from .numpy_ import (
    IM2COL_CHUNK_BYTES,
    TAP_PATH_MAX_FILTERS,
    accumulator_dtype,
    flip_kernel,
    pad_input,
    to_host,
)

__all__ = ["backward_host", "conv_backward", "unpad_adjoint"]


def unpad_adjoint(grad_padded: np.ndarray, spec: ConvSpec, first_axis: int) -> np.ndarray:
    """The adjoint of ``numpy.pad`` on the spatial axes starting at ``first_axis``.

    ``grad_padded`` has the padded spatial size on those axes; the result has
    the input's spatial size. Gradients of border pixels accumulate into the
    source pixels they copy; constant border pixels have no source.
    """
    g = grad_padded
    for axis, (n, b, a) in enumerate(zip(spec.in_size, spec.pad_before, spec.pad_after),
                                     start=first_axis):
        if b == 0 and a == 0:
            continue
        moved = np.moveaxis(g, axis, 0)
        folded = moved[b:b + n].copy()
        if spec.border != "constant":
            index = padded_source(n, b, a, spec.border)
            border = np.r_[0:b, b + n:b + n + a]
            np.add.at(folded, index[border], moved[border])
        g = np.moveaxis(folded, 0, axis)
    return g


def _tap_slices(tap: tuple[int, ...], spec: ConvSpec, rows: tuple[int, int] | None = None,
                ) -> tuple[slice, ...]:
    """The strided slice of the padded input that kernel tap ``tap`` reads.

    ``rows=(r0, r1)`` restricts the first output axis to positions ``r0:r1``.
    """
    starts = [0] * spec.ndim
    ends = list(spec.out_size)
    if rows is not None:
        starts[0], ends[0] = rows
    return tuple(slice(t * d + r0 * s, t * d + (r1 - 1) * s + 1, s)
                 for t, d, r0, r1, s in zip(tap, spec.dilation, starts, ends, spec.stride))


def _taps(spec: ConvSpec) -> list[tuple[int, ...]]:
    return list(product(*(range(k) for k in spec.kernel_size)))


def _backward_taps(xp_g, w_g, gy_g, spec, grad_xp, grad_w) -> None:
    """One input channel per group: elementwise products per tap (depthwise layers).
    ``grad_w`` None: the input gradient only (``xp_g`` may then be None too)."""
    every = (slice(None),) * 2
    gx1 = grad_xp[:, 0]                                         # (G, N, *padded)
    reduce_axes = tuple(range(1, 2 + spec.ndim))
    for tap in _taps(spec):
        window = every + _tap_slices(tap, spec)
        w_t = w_g[(slice(None), slice(None), 0, *tap)]          # (G, Fg)
        for f in range(spec.out_per_group):
            gy_f = gy_g[:, f]                                   # (G, N, *out)
            if grad_w is not None:
                view = xp_g[:, 0][window]                       # (G, N, *out)
                grad_w[(slice(None), f, 0, *tap)] = (gy_f * view).sum(axis=reduce_axes)
            gx1[window] += w_t[:, f].reshape(-1, *(1,) * (1 + spec.ndim)) * gy_f


def _backward_im2col(xp_g, w_g, gy_g, spec, grad_xp, grad_w) -> None:
    """Dense groups: im2col chunks (over batch and the first output axis), two matmuls each.

    grad_w += grad_output @ cols^T and cols_grad = w^T @ grad_output, then
    cols_grad is scattered back tap by tap (col2im). ``grad_w`` None: the input
    gradient only (no columns are gathered; ``xp_g`` may be None).
    """
    g, cg, fg, n = spec.groups, spec.in_per_group, spec.out_per_group, spec.batch
    taps = _taps(spec)
    ntaps = len(taps)
    w_t = w_g.reshape(g, fg, cg * ntaps).swapaxes(1, 2)        # (G, Cg*K, Fg)
    gw = np.zeros((g, fg, cg * ntaps), dtype=gy_g.dtype)
    rows, rest = spec.out_size[0], math.prod(spec.out_size[1:])
    row_bytes = g * cg * ntaps * rest * gy_g.dtype.itemsize
    rows_per_chunk = max(1, min(rows, IM2COL_CHUNK_BYTES // max(row_bytes, 1)))
    batch_per_chunk = max(1, min(n, IM2COL_CHUNK_BYTES // max(row_bytes * rows, 1)))
    every = (slice(None),) * 2
    for n0 in range(0, n, batch_per_chunk):
        nb = min(batch_per_chunk, n - n0)
        lead = every + (slice(n0, n0 + nb),)
        for r0 in range(0, rows, rows_per_chunk):
            rb = min(rows_per_chunk, rows - r0)
            chunk_out = (nb, rb, *spec.out_size[1:])
            gy_c = gy_g[lead + (slice(r0, r0 + rb),)].reshape(g, fg, -1)
            if grad_w is not None:
                cols = np.empty((g, cg, ntaps, *chunk_out), dtype=gy_g.dtype)
                for i, tap in enumerate(taps):
                    cols[:, :, i] = xp_g[lead + _tap_slices(tap, spec, (r0, r0 + rb))]
                gw += np.matmul(gy_c, cols.reshape(g, cg * ntaps, -1).swapaxes(1, 2))
            cols_grad = np.matmul(w_t, gy_c).reshape(g, cg, ntaps, *chunk_out)
            for i, tap in enumerate(taps):
                # Within one tap the strided slice has no repeated positions: += is exact.
                grad_xp[lead + _tap_slices(tap, spec, (r0, r0 + rb))] += cols_grad[:, :, i]
    if grad_w is not None:
        grad_w[...] = gw.reshape(grad_w.shape)


def conv_backward(xp: np.ndarray | None, w: np.ndarray, gy: np.ndarray, spec: ConvSpec,
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Gradients of a correlation of the padded channels-first input ``xp`` with ``w``.

    ``xp`` is ``(N, C, *padded)``, ``w`` the (already flipped, if the spec
    says so) ``(F, C // groups, *kernel)``, ``gy`` is ``(N, F, *out)``, all in
    the accumulation dtype. Returns ``(grad_xp, grad_w, grad_b)`` where
    ``grad_xp`` is the gradient with respect to the padded input. ``xp`` None:
    the input gradient alone (the transposed convolution), ``grad_w`` None.
    """
    n, g, cg, fg = spec.batch, spec.groups, spec.in_per_group, spec.out_per_group
    out, padded = spec.out_size, spec.padded_size
    acc = gy.dtype

    grad_b = gy.sum(axis=(0, *range(2, 2 + spec.ndim)))
    # Group-major layouts (G, channels, N, *spatial): every group is one matmul batch.
    gy_g = np.ascontiguousarray(gy.reshape(n, g, fg, *out).swapaxes(0, 1).swapaxes(1, 2))
    xp_g = None if xp is None else xp.reshape(n, g, cg, *padded).swapaxes(0, 1).swapaxes(1, 2)
    w_g = w.reshape(g, fg, cg, *spec.kernel_size)
    grad_xp = np.zeros((g, cg, n, *padded), dtype=acc)
    grad_w = None if xp is None else np.empty((g, fg, cg, *spec.kernel_size), dtype=acc)
    if cg == 1 and fg <= TAP_PATH_MAX_FILTERS:
        _backward_taps(xp_g, w_g, gy_g, spec, grad_xp, grad_w)
    else:
        _backward_im2col(xp_g, w_g, gy_g, spec, grad_xp, grad_w)
    grad_xp = grad_xp.swapaxes(1, 2).swapaxes(0, 1).reshape(n, g * cg, *padded)
    if grad_w is not None:
        grad_w = grad_w.reshape(g * fg, cg, *spec.kernel_size)
    return grad_xp, grad_w, grad_b


def backward_host(x: Any, weight: Any, grad_output: Any, spec: ConvSpec,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``NumpyBackend.conv_backward``: operands as the Backend protocol hands them over.

    Returns ``(grad_input, grad_weight, grad_bias)`` in the layouts of ``x``,
    ``weight`` and ``(F,)``, with dtype ``spec.dtype``.
    """
    if spec.batch == 0 or spec.out_channels == 0:
        return (np.zeros(spec.input_shape, dtype=spec.dtype),
                np.zeros(spec.weight_shape, dtype=spec.dtype),
                np.zeros((spec.out_channels,), dtype=spec.dtype))
    grad_x, grad_w, grad_b = _gradients(x, weight, grad_output, spec)
    if spec.flip:
        grad_w = flip_kernel(grad_w, spec.ndim)
    return (grad_x, np.ascontiguousarray(grad_w, dtype=spec.dtype), grad_b.astype(spec.dtype))


def transpose_host(grad_output: Any, weight: Any, bias: Any, spec: ConvSpec) -> np.ndarray:
    """``NumpyBackend.conv_transpose``: the input gradient alone, plus ``bias`` per input
    channel of ``spec`` (the transposed convolution's output channels)."""
    if spec.batch == 0 or spec.in_channels == 0:
        return np.zeros(spec.input_shape, dtype=spec.dtype)
    grad_x = _gradients(None, weight, grad_output, spec)[0]
    if bias is not None:
        b = to_host(bias).astype(accumulator_dtype(spec), copy=False)
        grad_x = grad_x + (b if spec.channels_last else b.reshape(-1, *(1,) * spec.ndim))
        grad_x = np.ascontiguousarray(grad_x, dtype=spec.dtype)
    return grad_x


def _gradients(x: Any, weight: Any, grad_output: Any, spec: ConvSpec):
    """``(grad_x in the spec's layout and dtype, grad_w (flipped if the spec flips),
    grad_b)``; ``x`` None: ``grad_w`` None."""
    acc = accumulator_dtype(spec)
    gy = to_host(grad_output).astype(acc, copy=False)
    if x is not None:
        x = to_host(x).astype(acc, copy=False)
    if spec.channels_last:
        gy = np.moveaxis(gy, -1, 1)
        x = None if x is None else np.moveaxis(x, -1, 1)
    w = to_host(weight).astype(acc, copy=False)
    if spec.flip:
        w = flip_kernel(w, spec.ndim)
    try:
        grad_xp, grad_w, grad_b = conv_backward(None if x is None else pad_input(x, spec), w,
                                                gy, spec)
        grad_x = unpad_adjoint(grad_xp, spec, first_axis=2)
    except MemoryError as exc:
        raise AllocationError(
            f"the NumPy backend ran out of host memory for the backward pass of input "
            f"{spec.input_shape}, kernel {spec.kernel_size}, output {spec.output_shape}: "
            f"{exc}") from None
    if spec.channels_last:
        grad_x = np.moveaxis(grad_x, 1, -1)
    return np.ascontiguousarray(grad_x, dtype=spec.dtype), grad_w, grad_b
