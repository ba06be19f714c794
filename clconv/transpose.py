"""conv_transpose1d / 2d / 3d: the adjoint of conv1d / 2d / 3d, on any backend.

A transposed convolution of ``x`` with ``weight`` is the gradient of the
forward convolution (same stride, padding, dilation and groups) with respect
to its input, for ``grad_output = x``: normalise once into that forward
spec, run the backend's ``conv_transpose`` primitive (the input-gradient
kernels alone, bias added where the result is written), and restore the
user's batched or unbatched form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._normalize import TransposeCall, is_device_array, normalize_conv_transpose
from .backends import get_backend

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "run_transpose"]


def run_transpose(call: TransposeCall, backend: Any = None) -> Any:
    """Run a validated transposed convolution; the user's batched/unbatched form."""
    be = get_backend(backend)
    spec = call.spec
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
        # output_padding past the last full stride made the operand a host array.
        y = get_backend(backend).to_device(y)
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
