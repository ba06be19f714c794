"""conv_transpose1d / 2d / 3d: the adjoint of conv1d / 2d / 3d, on any backend.

A transposed convolution of ``x`` with ``weight`` is the gradient of the
forward convolution (same stride, padding, dilation and groups) with respect
to its input, for ``grad_output = x``: normalise once into that forward
spec, run the backend's ``conv_transpose`` primitive (the input-gradient
kernels alone, bias added where the result is written), and restore the
user's batched or unbatched form.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._normalize import TransposeCall, normalize_conv, normalize_conv_transpose
from .backends import get_backend, has_device_memory, is_device_array
from .functional import run_conv

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "run_transpose"]


@dataclass(frozen=True)
class _AxisPhases:
    """One spatial axis of a transposed convolution split into its ``stride`` phases.

    Output ``o`` with ``(o + pad_before) % stride == r`` only meets taps ``t``
    with ``t % stride == r``, at input ``(o + pad_before - t) / stride``: per
    phase a correlation with the reversed sub-kernel ``kernel[r]`` (tap
    indices; -1 pads a shorter phase with zero taps at its end). Every phase
    reads the window ``first + m + j`` (``m < steps``, ``j < taps``); phase
    ``r``'s outputs are steps ``shift[r] .. shift[r] + count[r]``, written to
    positions ``start[r]``, ``start[r] + stride``, ...
    """

    stride: int
    first: int
    taps: int
    steps: int
    kernel: tuple[tuple[int, ...], ...]
    shift: tuple[int, ...]
    start: tuple[int, ...]
    count: tuple[int, ...]

    @property
    def zero_taps(self) -> bool:
        """Whether a phase that has outputs is padded with zero taps."""
        return any(-1 in row for row, c in zip(self.kernel, self.count) if c)


def _axis_phases(n: int, k: int, stride: int, pad_before: int, out: int) -> _AxisPhases:
    rows, offsets, starts, counts = [], [], [], []
    for r in range(stride):
        taps = [t for t in range(k) if t % stride == r][::-1]
        start = (r - pad_before) % stride
        counts.append(max(0, -(-(out - start) // stride)))
        offsets.append((start + pad_before - r) // stride - (len(taps) - 1))
        rows.append(taps)
        starts.append(start)
    width = max(len(t) for t in rows)
    first = min(offsets)
    shifts = [o - first for o in offsets]
    return _AxisPhases(stride, first, width, max(c + sh for c, sh in zip(counts, shifts)),
                       tuple(tuple(t + [-1] * (width - len(t))) for t in rows),
                       tuple(shifts), tuple(starts), tuple(counts))


def _phase_plan(call: TransposeCall) -> list[_AxisPhases] | None:
    """The phase split of a host transposed convolution, or None where the backend's
    primitive must run instead: device operands, dilation, and non-finite values that
    the split's extra zero products would spread (0 * inf is nan)."""
    spec = call.spec
    if is_device_array(call.x) or any(d != 1 for d in spec.dilation) or not (
            spec.batch and spec.in_channels):
        return None
    axes = [_axis_phases(n, k, s, pb, o) for n, k, s, pb, o in zip(
        call.in_size, spec.kernel_size, spec.stride, spec.pad_before, spec.in_size)]
    if any(a.first >= n or a.first + a.steps + a.taps - 1 <= 0
           for a, n in zip(axes, call.in_size)):
        return None  # the window misses the input (outputs of bias only)
    # The window's zero padding meets every weight; zero taps meet every input.
    if not np.isfinite(np.asarray(call.weight)).all():
        return None
    if any(a.zero_taps for a in axes) and not np.isfinite(call.x).all():
        return None
    return axes


def _run_phases(call: TransposeCall, axes: list[_AxisPhases], backend: Any) -> np.ndarray:
    """A host transposed convolution (dilation 1) as ONE forward convolution.

    Every phase of every axis becomes a group of filters (reversed
    sub-kernels), so the backend's fast forward paths run the transposed
    convolution's multiply-adds (plus zero taps where phases differ in
    length), and the phases' outputs are interleaved into the result.
    """
    spec = call.spec
    nd, last = spec.ndim, spec.channels_last
    x = call.x if not last else np.moveaxis(call.x, -1, 1)
    x = x[(slice(None), slice(None), *(slice(0, n) for n in call.in_size))]
    crop, pads = [], []
    for a, n in zip(axes, call.in_size):
        lo, hi = a.first, a.first + a.steps + a.taps - 1
        crop.append(slice(max(lo, 0), min(hi, n)))
        pads.append((max(-lo, 0), max(hi - n, 0)))
    x = x[(slice(None), slice(None), *crop)]
    g, cg, fg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    # Transposed weight (C, F // g, *k) -> forward filters (g, Fg, Cg, *k), one zero tap added.
    w = np.asarray(call.weight).reshape(g, cg, fg, *spec.kernel_size).swapaxes(1, 2)
    w = np.pad(w, [(0, 0)] * 3 + [(0, 1)] * nd)
    index = np.ix_(*(np.asarray([t for row in a.kernel for t in row]) for a in axes))
    wk = w[(slice(None),) * 3 + index]          # (g, Fg, Cg, *(stride * taps))
    for axis, a in enumerate(axes):
        wk = wk.reshape(*wk.shape[:3 + 2 * axis], a.stride, a.taps, *wk.shape[4 + 2 * axis:])
    order = [0, *range(3, 3 + 2 * nd, 2), 1, 2, *range(4, 4 + 2 * nd, 2)]
    phases = list(itertools.product(*(range(a.stride) for a in axes)))
    wk = wk.transpose(order).reshape(g * len(phases) * fg, cg, *(a.taps for a in axes))
    bias = None
    if call.bias is not None:
        bias = np.broadcast_to(np.asarray(call.bias).reshape(g, 1, fg),
                               (g, len(phases), fg)).reshape(-1)
    fwd = normalize_conv(nd, x, wk, bias, 1, tuple(pads), 1, g, "zeros", "channels_first",
                         False)
    z = np.asarray(run_conv(fwd, backend))
    z = z.reshape(spec.batch, g, len(phases), fg, *z.shape[2:])
    y = np.empty(spec.input_shape, dtype=spec.dtype)
    yc = np.moveaxis(y, -1, 1) if last else y
    for p, phase in enumerate(phases):
        target = (slice(None), slice(None), *(slice(a.start[r], None, a.stride)
                                              for a, r in zip(axes, phase)))
        source = (slice(None), slice(None), *(slice(a.shift[r], a.shift[r] + a.count[r])
                                              for a, r in zip(axes, phase)))
        zp = z[:, :, p].reshape(spec.batch, spec.in_channels, *z.shape[4:])
        yc[target] = zp[source]
    return y


def run_transpose(call: TransposeCall, backend: Any = None) -> Any:
    """Run a validated transposed convolution; the user's batched/unbatched form.

    Host inputs with dilation 1 run as one forward convolution of the stride
    phases (the backends' fastest paths); device inputs and dilated kernels
    run the backend's ``conv_transpose`` primitive (the input-gradient kernels).
    """
    be = get_backend(backend)
    spec = call.spec
    axes = _phase_plan(call)
    if axes is not None:
        y = _run_phases(call, axes, be)
        return y[0] if call.unbatched else y
    primitive = getattr(be, "conv_transpose", None)
    if primitive is not None:
        y = primitive(call.x, call.weight, call.bias, spec)
    else:  # a plug-in with conv_backward only: its grad_input on a zero input, plus bias
        zeros = np.zeros(spec.input_shape, dtype=spec.dtype)
        y = np.asarray(be.conv_backward(zeros, call.weight, call.x, spec)[0])
        if call.bias is not None:
            b = np.asarray(call.bias)
            y = (y + (b if spec.channels_last else b.reshape(-1, *(1,) * spec.ndim))).astype(
                spec.dtype)
    return y[0] if call.unbatched else y


def _transpose(ndim: int, input, weight, bias, stride, padding, output_padding, groups,
               dilation, data_format, backend):
    call = normalize_conv_transpose(ndim, input, weight, bias, stride, padding, output_padding,
                                    groups, dilation, data_format)
    y = run_transpose(call, backend)
    if is_device_array(input) and not is_device_array(y):
        # output_padding past the last full stride made the operand a host array; a
        # backend without device memory returns host arrays for device input anyway.
        be = get_backend(backend)
        if has_device_memory(be):
            y = be.to_device(y)
    return y


_DOC = """{n}-D transposed convolution of ``input`` with ``weight``, as
    ``torch.nn.functional.conv_transpose{n}d`` (API.md section 1b).

    The adjoint of :func:`clconv.conv{n}d` with the same ``stride``,
    ``padding``, ``dilation`` and ``groups``: the gradient of that
    convolution with respect to its input. It upsamples: each input position
    scatters ``weight`` into the output ``stride`` positions apart.

    Args:
        input: ``(N, C, {sp})`` or unbatched ``(C, {sp})``; with
            ``data_format="channels_last"``, ``(N, {sp}, C)`` or ``({sp}, C)``.
        weight: ``(C, F // groups, {k})`` (note: input channels first, as in
            PyTorch; the same array as the weight of the forward convolution).
        bias: ``(F,)`` or None.
        stride, dilation: an int or one int per spatial dim, each >= 1.
        padding: an int, or one entry per spatial dim (an int or a
            ``(before, after)`` pair): positions removed from each side of the
            full result. String paddings are not accepted.
        output_padding: an int or one int per spatial dim, each >= 0 and
            below ``max(stride, dilation)``: positions added at the end of the
            full result before ``padding`` crops it (to pick among the input
            sizes a strided convolution maps to the same output size).
        groups: input and output channels split into this many groups.
        backend: a backend name or None for the current default.

    Returns:
        ``(N, F, {sp_out})`` in the input's layout, each size
        ``(n - 1) * stride - before - after + dilation * (k - 1) + output_padding + 1``;
        the dtype rule of :func:`clconv.conv{n}d`.

    Example:
        >>> import numpy as np, clconv
        >>> x = np.array([[[1.0, 2.0, 3.0]]], dtype=np.float32)      # (N, C, L)
        >>> w = np.array([[[1.0, 10.0]]], dtype=np.float32)           # (C, F, k)
        >>> clconv.conv_transpose1d(x, w, stride=2, backend="numpy").tolist()
        [[[1.0, 10.0, 2.0, 20.0, 3.0, 30.0]]]
    """


def conv_transpose1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1, *, data_format: str = "channels_first",
                     backend: str | None = None) -> Any:
    return _transpose(1, input, weight, bias, stride, padding, output_padding, groups,
                      dilation, data_format, backend)


def conv_transpose2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1, *, data_format: str = "channels_first",
                     backend: str | None = None) -> Any:
    return _transpose(2, input, weight, bias, stride, padding, output_padding, groups,
                      dilation, data_format, backend)


def conv_transpose3d(input: Any, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1, *, data_format: str = "channels_first",
                     backend: str | None = None) -> Any:
    return _transpose(3, input, weight, bias, stride, padding, output_padding, groups,
                      dilation, data_format, backend)


conv_transpose1d.__doc__ = _DOC.format(n=1, sp="L", k="kL", sp_out="L_out")
conv_transpose2d.__doc__ = _DOC.format(n=2, sp="H, W", k="kH, kW", sp_out="H_out, W_out")
conv_transpose3d.__doc__ = _DOC.format(n=3, sp="D, H, W", k="kD, kH, kW",
                                       sp_out="D_out, H_out, W_out")
