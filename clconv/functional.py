"""conv1d / conv2d / conv3d: normalise once, run the backend, restore the user's form."""

from __future__ import annotations

from typing import Any

from ._dask import conv_dask, is_dask_array
from ._normalize import ConvCall, normalize_conv
from .backends import get_backend

__all__ = ["conv1d", "conv2d", "conv3d"]


def _restore(call: ConvCall, y: Any) -> Any:
    return y[0] if call.unbatched else y


def run_conv(call: ConvCall, backend: Any = None) -> Any:
    """Run a validated convolution on ``backend``; return the user's batched/unbatched form."""
    be = get_backend(backend)
    return _restore(call, be.conv_forward(call.x, call.weight, call.bias, call.spec))


def _convnd(ndim: int, input, weight, bias, stride, padding, dilation, groups, padding_mode,
            data_format, flip, backend):
    if is_dask_array(input):
        return conv_dask(ndim, input, weight, bias, stride, padding, dilation, groups,
                         padding_mode, data_format, flip, backend)
    call = normalize_conv(ndim, input, weight, bias, stride, padding, dilation, groups,
                          padding_mode, data_format, flip)
    return run_conv(call, backend)


_DOC = """{n}-D convolution (cross-correlation unless ``flip=True``) over ``input``.

    Semantics follow ``torch.nn.functional.conv{n}d`` (see API.md section 1):

    Args:
        input: ``(N, C, {sp})`` or unbatched ``(C, {sp})``; with
            ``data_format="channels_last"``, ``(N, {sp}, C)`` or ``({sp}, C)``.
            NumPy arrays, anything ``numpy.asarray`` reads, or
            ``pyopencl.array.Array`` on the OpenCL backend.
        weight: ``(F, C // groups, {k})``.
        bias: ``(F,)`` or None.
        stride, dilation: an int or one int per spatial dim, each >= 1.
        padding: an int, one entry per spatial dim (an int or a
            ``(before, after)`` pair), or ``"valid"``, ``"same"`` (TensorFlow
            rule), ``"full"``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        flip: flip the kernel on every spatial axis (true convolution).
        backend: a backend name such as ``"numpy"`` or ``"opencl:cpu"``;
            None uses the current default.

    Returns:
        The result in the input's layout; float64 stays float64, float16
        stays float16, everything else becomes float32.

    Example:
        >>> import numpy as np, clconv
        >>> x = np.arange({ex_size}, dtype=np.float32).reshape({ex_shape})
        >>> w = np.ones({ex_w}, dtype=np.float32)
        >>> clconv.conv{n}d(x, w, backend="numpy").shape
        {ex_out}
    """


def conv1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, *, padding_mode: str = "zeros",
           data_format: str = "channels_first", flip: bool = False,
           backend: str | None = None) -> Any:
    return _convnd(1, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                   data_format, flip, backend)


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, *, padding_mode: str = "zeros",
           data_format: str = "channels_first", flip: bool = False,
           backend: str | None = None) -> Any:
    return _convnd(2, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                   data_format, flip, backend)


def conv3d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, *, padding_mode: str = "zeros",
           data_format: str = "channels_first", flip: bool = False,
           backend: str | None = None) -> Any:
    return _convnd(3, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                   data_format, flip, backend)


conv1d.__doc__ = _DOC.format(n=1, sp="L", k="kL", ex_size=10, ex_shape="(1, 1, 10)",
                             ex_w="(2, 1, 3)", ex_out="(1, 2, 8)")
conv2d.__doc__ = _DOC.format(n=2, sp="H, W", k="kH, kW", ex_size=48, ex_shape="(1, 3, 4, 4)",
                             ex_w="(8, 3, 3, 3)", ex_out="(1, 8, 2, 2)")
conv3d.__doc__ = _DOC.format(n=3, sp="D, H, W", k="kD, kH, kW", ex_size=64,
                             ex_shape="(1, 1, 4, 4, 4)", ex_w="(1, 1, 3, 3, 3)",
                             ex_out="(1, 1, 2, 2, 2)")
