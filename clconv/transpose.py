"""conv_transpose1d / 2d / 3d: the adjoint of conv1d / 2d / 3d, on any backend.

A transposed convolution of ``x`` with ``weight`` is the gradient of the
forward convolution (same stride, padding, dilation and groups) with respect
to its input, for ``grad_output = x``: normalise once into that forward
spec, run the backend's ``conv_transpose`` primitive (the input-gradient
kernels alone, bias added where the result is written), and restore the
user's batched or unbatched form.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._normalize import TransposeCall, normalize_conv_transpose
from ._spec import ConvSpec, contiguous_strides
from .backends import get_backend, has_device_memory, is_device_array

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "run_transpose"]


@dataclass(frozen=True)
class _AxisPhase:
    """Phase ``r`` of one spatial axis of a transposed convolution (dilation 1).

    Output ``o`` with ``(o + pad_before) % stride == r`` only meets taps ``t``
    with ``t % stride == r``, at input ``(o + pad_before - t) / stride``: a
    stride-1 correlation with the reversed sub-kernel ``taps`` over the input
    window ``first .. first + count + len(taps) - 2`` (zeros outside the
    input), whose ``count`` outputs go to ``start``, ``start + stride``, ...
    """

    taps: tuple[int, ...]
    first: int
    start: int
    count: int

    @property
    def window_end(self) -> int:
        return self.first + self.count + len(self.taps) - 1

    @property
    def kernel(self) -> slice:
        """``taps`` as a slice of the kernel axis (a view, not a copy)."""
        step = self.taps[1] - self.taps[0] if len(self.taps) > 1 else -1
        end = self.taps[-1] + step
        return slice(self.taps[0], None if end < 0 else end, step)


def _axis_phases(k: int, stride: int, pad_before: int, out: int) -> list[_AxisPhase]:
    phases = []
    for r in range(stride):
        taps = tuple(range(k)[r::stride][::-1])
        start = (r - pad_before) % stride
        count = max(0, -(-(out - start) // stride))
        first = (start + pad_before - r) // stride - (len(taps) - 1)
        phases.append(_AxisPhase(taps, first, start, count))
    return phases


@dataclass(frozen=True)
class _Phase:
    """One combination of the axes' phases: a forward convolution of ``window`` of the
    padded input with the ``kernel`` slices of the weight, into ``target`` of the
    channels-first result; ``spec`` None where it holds the bias alone (no taps, or a
    window that misses the input)."""

    spec: ConvSpec | None
    window: tuple[slice, ...]
    kernel: tuple[slice, ...]  # of the forward view of the transposed weight
    target: tuple[slice, ...]
    # window and target as element offsets and strides in the padded input and
    # the result, both C-contiguous (what conv_forward_into takes)
    x_at: int = 0
    x_strides: tuple[int, ...] = ()
    y_at: int = 0
    y_strides: tuple[int, ...] = ()


@dataclass(frozen=True)
class _PhaseSplit:
    """The phases of a transposed convolution, and the zero padding of the input that
    every window lies in: ``origin`` (<= 0) to ``end`` (>= the input size) per axis."""

    phases: tuple[_Phase, ...]
    origin: tuple[int, ...]
    end: tuple[int, ...]


@functools.lru_cache(maxsize=256)
def _phase_split(spec: ConvSpec, in_size: tuple[int, ...], has_bias: bool) -> _PhaseSplit:
    """The split of ``spec``'s input gradient, for a transposed input of ``in_size``
    (a pure function of its arguments, so calls of one shape share it)."""
    nd, everything = spec.ndim, slice(None)
    axes = [_axis_phases(k, s, pb, o) for k, s, pb, o in zip(
        spec.kernel_size, spec.stride, spec.pad_before, spec.in_size)]
    runs = [phase for phase in itertools.product(*axes) if all(p.count for p in phase)]
    busy = [phase for phase in runs if all(p.taps and p.window_end > 0 and p.first < n
                                           for p, n in zip(phase, in_size))]
    origin = tuple(min([0] + [ph[a].first for ph in busy]) for a in range(nd))
    end = tuple(max([n] + [ph[a].window_end for ph in busy]) for a, n in enumerate(in_size))
    # Element strides of the (padded or not) channels-first input and of the
    # result's channels-first view.
    padded = origin != (0,) * nd or end != in_size
    xs = contiguous_strides((spec.batch, spec.out_channels,
                   *(tuple(e - o for o, e in zip(origin, end)) if padded else spec.out_size)))
    ys = contiguous_strides(spec.input_shape)
    if spec.channels_last:
        ys = (ys[0], ys[-1], *ys[1:-1])
    phases = []
    for phase in runs:
        target = (everything, everything, *(slice(p.start, None, s)
                                            for p, s in zip(phase, spec.stride)))
        if phase not in busy:
            phases.append(_Phase(None, (), (), target))
            continue
        window = tuple(slice(p.first - o, p.window_end - o) for p, o in zip(phase, origin))
        fwd = ConvSpec(spec.batch, spec.out_channels, spec.in_channels, spec.groups,
                       tuple(w.stop - w.start for w in window),
                       tuple(len(p.taps) for p in phase), (1,) * nd, (1,) * nd, (0,) * nd,
                       (0,) * nd, tuple(p.count for p in phase), has_bias=has_bias,
                       dtype=spec.dtype)
        phases.append(_Phase(
            fwd, (everything, everything, *window),
            (everything,) * 3 + tuple(p.kernel for p in phase), target,
            sum(w.start * st for w, st in zip(window, xs[2:])), xs,
            sum(p.start * st for p, st in zip(phase, ys[2:])),
            (*ys[:2], *(st * s for st, s in zip(ys[2:], spec.stride)))))
    return _PhaseSplit(tuple(phases), origin, end)


def _phase_plan(call: TransposeCall) -> _PhaseSplit | None:
    """The phase split of a host transposed convolution, or None where the backend's
    primitive must run instead: device operands, dilation, and non-finite weights,
    which the windows' zero padding would turn into NaN (0 * inf)."""
    spec = call.spec
    if is_device_array(call.x) or any(d != 1 for d in spec.dilation) or not (
            spec.batch and spec.in_channels):
        return None
    if not np.isfinite(np.asarray(call.weight)).all():
        return None
    return _phase_split(spec, call.in_size, call.bias is not None)


def _run_phases(call: TransposeCall, split: _PhaseSplit, backend: Any) -> np.ndarray:
    """A host transposed convolution (dilation 1) as one forward convolution per phase.

    Each combination of the axes' phases is a stride-1 convolution of a window
    of the input with a reversed sub-kernel, on the backend's fast forward
    paths, written into its strided part of the result (in one go by a
    backend's ``conv_forward_into``). Phases without taps, or whose window
    misses the input, hold the bias alone.
    """
    spec = call.spec
    nd, last = spec.ndim, spec.channels_last
    # The input, channels first (and contiguous, as the forward paths read a
    # window of it in place), cropped to its size before extension; zero-padded
    # once where a window reaches past it, so that no phase pads its own.
    base = np.ascontiguousarray(np.moveaxis(call.x, -1, 1) if last else call.x)
    x = base[(slice(None), slice(None), *(slice(0, n) for n in call.in_size))]
    if split.origin != (0,) * nd or split.end != call.in_size:
        base = np.zeros((*x.shape[:2], *(e - o for o, e in zip(split.origin, split.end))),
                        x.dtype)
        base[(slice(None), slice(None), *(slice(-o, n - o) for o, n in zip(
            split.origin, call.in_size)))] = x
        x = base
    empty = getattr(backend, "empty_result", None)
    y = (empty or np.empty)(spec.input_shape, spec.dtype)
    yc = np.moveaxis(y, -1, 1) if last else y
    # Transposed weight (C, F // g, *k) -> forward filters (g, Fg, Cg, *k): views
    # (copies only where groups > 1), which the backend packs where they lie.
    g, cg, fg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    w = np.asarray(call.weight).reshape(g, cg, fg, *spec.kernel_size).swapaxes(1, 2)
    bias = None if call.bias is None else np.asarray(call.bias)
    busy = [(p, w[p.kernel].reshape(g * fg, cg, *p.spec.kernel_size))
            for p in split.phases if p.spec is not None]
    into = getattr(backend, "conv_forward_into", None)
    if into is None or not into(y, base, [(p.spec, p.x_at, p.x_strides, weight, bias, p.y_at,
                                           p.y_strides) for p, weight in busy]):
        for p, weight in busy:
            yc[p.target] = backend.conv_forward(x[p.window], weight, bias, p.spec)
    for p in split.phases:
        if p.spec is None:
            yc[p.target] = 0 if bias is None else bias.reshape(-1, *(1,) * nd)
    return y


def run_transpose(call: TransposeCall, backend: Any = None) -> Any:
    """Run a validated transposed convolution; the user's batched/unbatched form.

    Host inputs with dilation 1 run as one forward convolution of the stride
    phases (the backends' fastest paths); device inputs and dilated kernels
    run the backend's ``conv_transpose`` primitive (the input-gradient kernels).
    """
    be = get_backend(backend)
    spec = call.spec
    split = _phase_plan(call)
    if split is not None:
        y = _run_phases(call, split, be)
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
