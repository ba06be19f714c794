"""conv_backward: the gradients of conv1d/2d/3d, on any backend.

The same path as the forward: normalise the arguments once (with
:func:`~clconv._normalize.normalize_conv`), check ``grad_output`` against the
forward output, run the backend's ``conv_backward`` primitive, and restore the
user's batched or unbatched form.
"""

from __future__ import annotations

from typing import Any

from ._normalize import ConvCall, as_operand, cast_host, normalize_conv, result_dtype
from .backends import get_backend
from .errors import ShapeError

__all__ = ["conv_backward", "prepare_backward", "run_backward"]


def _spatial_dims(weight: Any) -> int:
    """1, 2 or 3 spatial dims, read from the weight's rank."""
    rank = len(weight.shape)
    if rank not in (3, 4, 5):
        raise ShapeError(
            f"weight has shape {tuple(weight.shape)}; expected 3, 4 or 5 dims "
            "(F, C // groups, *kernel) for a 1-, 2- or 3-D convolution")
    return rank - 2


def check_grad_output(call: ConvCall, grad_output: Any) -> Any:
    """``grad_output`` validated against the forward output, batched, in the spec's dtype."""
    gy = as_operand(grad_output, "grad_output")
    spec = call.spec
    expected = spec.output_shape[1:] if call.unbatched else spec.output_shape
    if tuple(gy.shape) != tuple(expected):
        raise ShapeError(
            f"grad_output has shape {tuple(gy.shape)}; expected {tuple(expected)}, the shape "
            "of the forward output for this input, weight and arguments")
    if call.unbatched:
        gy = gy.reshape((1, *gy.shape))
    return cast_host(gy, result_dtype(spec.dtype))


def run_backward(call: ConvCall, grad_output: Any, backend: Any = None,
                 ) -> tuple[Any, Any, Any]:
    """Gradients of a validated convolution; ``grad_input`` in the user's batched form."""
    gy = check_grad_output(call, grad_output)
    grad_input, grad_weight, grad_bias = get_backend(backend).conv_backward(
        call.x, call.weight, gy, call.spec)
    if call.unbatched:
        grad_input = grad_input[0]
    return grad_input, grad_weight, grad_bias


def prepare_backward(input: Any, weight: Any, stride: Any = 1, padding: Any = 0,
                     dilation: Any = 1, groups: Any = 1, *, padding_mode: Any = "zeros",
                     data_format: Any = "channels_first", flip: Any = False) -> ConvCall:
    """Validate the forward arguments of a backward call (the dims come from ``weight``)."""
    w = as_operand(weight, "weight")
    return normalize_conv(_spatial_dims(w), input, w, None, stride, padding, dilation, groups,
                          padding_mode, data_format, flip)


def conv_backward(input: Any, weight: Any, grad_output: Any, stride: Any = 1,
                  padding: Any = 0, dilation: Any = 1, groups: int = 1, *,
                  padding_mode: str = "zeros", flip: bool = False,
                  data_format: str = "channels_first", backend: str | None = None,
                  ) -> tuple[Any, Any, Any]:
    """Gradients of ``conv{1,2,3}d(input, weight, bias, ...)`` for ``grad_output``.

    The arguments are those of the forward call (API.md section 1); the number
    of spatial dims is read from ``weight`` (``(F, C // groups, *kernel)``).
    ``grad_output`` is dL/dy and must have exactly the forward output's shape
    (batched or unbatched like ``input``, in ``data_format``), else
    :class:`~clconv.ShapeError`.

    Returns:
        ``(grad_input, grad_weight, grad_bias)``: dL/dinput in the input's
        shape and layout, dL/dweight in the weight's shape, and dL/dbias of
        shape ``(F,)`` (the sum of ``grad_output`` over batch and positions),
        all in the forward's result dtype. Padding modes other than zeros
        route the input gradient back through the padding into the source
        pixels.

    Example:
        >>> import numpy as np, clconv
        >>> x = np.ones((1, 1, 4), dtype=np.float32)
        >>> w = np.ones((1, 1, 3), dtype=np.float32)
        >>> gx, gw, gb = clconv.conv_backward(x, w, np.ones((1, 1, 2)), backend="numpy")
        >>> gx.tolist(), gw.tolist(), gb.tolist()
        ([[[1.0, 2.0, 2.0, 1.0]]], [[[2.0, 2.0, 2.0]]], [2.0])
    """
    call = prepare_backward(input, weight, stride, padding, dilation, groups,
                            padding_mode=padding_mode, data_format=data_format, flip=flip)
    return run_backward(call, grad_output, backend)
