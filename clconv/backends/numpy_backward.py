"""The backward pass of the NumPy reference backend.

For the forward ``y = correlate(pad(x), w) + b`` (see :mod:`.numpy_`):

* ``grad_bias`` is ``grad_output`` summed over batch and positions;
* ``grad_weight[f, c, t]`` sums ``grad_output[n, f, o] * pad(x)[n, c, o*s + t*d]``
  over batch and positions: one BLAS product per kernel tap;
* ``grad_input`` is first the gradient with respect to the *padded* input
  (each tap scatters ``w[:, :, t]^T @ grad_output`` into its strided slice),
  then folded back through the padding with the adjoint of ``numpy.pad``'s
  index map: every padded pixel is a copy of one source pixel (or a
  constant), so its gradient is added to that source pixel. The index map is
  taken from ``numpy.pad`` itself, so the fold is exact for every border mode
  and any padding width, also wider than the input.

Loops run over kernel taps and spatial axes, never over pixels. Half
precision accumulates in float32; every other dtype in its own precision.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any

import numpy as np

from .._spec import ConvSpec
from ..errors import AllocationError
from .numpy_ import accumulator_dtype, flip_kernel, pad_input, to_host

__all__ = ["backward_host", "conv_backward", "unpad_adjoint"]


def _pad_index_map(n: int, before: int, after: int, border: str) -> np.ndarray:
    """Source index of every padded position along one axis (-1: a constant)."""
    if border == "constant":
        return np.pad(np.arange(n), (before, after), mode="constant", constant_values=-1)
    return np.pad(np.arange(n), (before, after), mode=border)


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
            index = _pad_index_map(n, b, a, spec.border)
            border = np.r_[0:b, b + n:b + n + a]
            np.add.at(folded, index[border], moved[border])
        g = np.moveaxis(folded, 0, axis)
    return g


def _tap_slices(tap: tuple[int, ...], spec: ConvSpec) -> tuple[slice, ...]:
    """The strided slice of the padded input that kernel tap ``tap`` reads."""
    return tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                 for t, d, o, s in zip(tap, spec.dilation, spec.out_size, spec.stride))


def conv_backward(xp: np.ndarray, w: np.ndarray, gy: np.ndarray, spec: ConvSpec,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of a correlation of the padded channels-first input ``xp`` with ``w``.

    ``xp`` is ``(N, C, *padded)``, ``w`` the (already flipped, if the spec
    says so) ``(F, C // groups, *kernel)``, ``gy`` is ``(N, F, *out)``, all in
    the accumulation dtype. Returns ``(grad_xp, grad_w, grad_b)`` where
    ``grad_xp`` is the gradient with respect to the padded input.
    """
    n, g, cg, fg = spec.batch, spec.groups, spec.in_per_group, spec.out_per_group
    out, padded = spec.out_size, spec.padded_size
    positions = n * math.prod(out)
    acc = gy.dtype

    grad_b = gy.sum(axis=(0, *range(2, 2 + spec.ndim)))
    # Group-major layouts so that each tap is one batched (over groups) matmul.
    gy_g = np.ascontiguousarray(
        gy.reshape(n, g, fg, *out).swapaxes(0, 1).swapaxes(1, 2)).reshape(g, fg, positions)
    xp_g = xp.reshape(n, g, cg, *padded).swapaxes(0, 1).swapaxes(1, 2)  # (G, Cg, N, *padded)
    w_g = w.reshape(g, fg, cg, *spec.kernel_size)

    grad_xp = np.zeros((g, cg, n, *padded), dtype=acc)
    grad_w = np.empty((g, fg, cg, *spec.kernel_size), dtype=acc)
    lead = (slice(None),) * 3
    for tap in product(*(range(k) for k in spec.kernel_size)):
        window = lead + _tap_slices(tap, spec)
        cols = xp_g[window].reshape(g, cg, positions)              # copies the strided view
        grad_w[(slice(None),) * 3 + tap] = np.matmul(gy_g, cols.swapaxes(1, 2))
        w_t = w_g[(slice(None),) * 3 + tap]                          # (G, Fg, Cg)
        # Within one tap the strided slice has no repeated positions, so += is exact.
        grad_xp[window] += np.matmul(w_t.swapaxes(1, 2), gy_g).reshape(g, cg, n, *out)

    grad_xp = grad_xp.swapaxes(1, 2).swapaxes(0, 1).reshape(n, g * cg, *padded)
    return grad_xp, grad_w.reshape(g * fg, cg, *spec.kernel_size), grad_b


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
    acc = accumulator_dtype(spec)
    x = to_host(x).astype(acc, copy=False)
    gy = to_host(grad_output).astype(acc, copy=False)
    if spec.channels_last:
        x, gy = np.moveaxis(x, -1, 1), np.moveaxis(gy, -1, 1)
    w = to_host(weight).astype(acc, copy=False)
    if spec.flip:
        w = flip_kernel(w, spec.ndim)
    try:
        grad_xp, grad_w, grad_b = conv_backward(pad_input(x, spec), w, gy, spec)
        grad_x = unpad_adjoint(grad_xp, spec, first_axis=2)
    except MemoryError as exc:
        raise AllocationError(
            f"the NumPy backend ran out of host memory for the backward pass of input "
            f"{spec.input_shape}, kernel {spec.kernel_size}, output {spec.output_shape}: "
            f"{exc}") from None
    if spec.flip:
        grad_w = flip_kernel(grad_w, spec.ndim)
    if spec.channels_last:
        grad_x = np.moveaxis(grad_x, 1, -1)
    return (np.ascontiguousarray(grad_x, dtype=spec.dtype),
            np.ascontiguousarray(grad_w, dtype=spec.dtype),
            grad_b.astype(spec.dtype))
