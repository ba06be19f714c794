"""Trainable convolution layers: Conv1d/2d/3d and ConvTranspose1d/2d/3d (API.md section 4).

A layer owns its ``weight`` and ``bias`` (NumPy arrays, initialised like
PyTorch's default), runs the forward pass with :func:`clconv.conv2d` & co.,
keeps what the backward pass needs, and ``layer.backward(grad_output)``
returns dL/dinput and sets ``grad_weight`` and ``grad_bias``. Optimisers are
left to the user: update ``layer.weight`` / ``layer.bias`` in place or assign
new arrays.

>>> import numpy as np, clconv
>>> layer = clconv.Conv2d(3, 8, 3, padding=1, seed=0, backend="numpy")
>>> y = layer(np.ones((2, 3, 5, 5), dtype=np.float32))
>>> gx = layer.backward(np.ones_like(y))
>>> y.shape, gx.shape, layer.grad_weight.shape, layer.grad_bias.shape
((2, 8, 5, 5), (2, 3, 5, 5), (8, 3, 3, 3), (8,))
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._normalize import (
    ConvCall,
    TransposeCall,
    as_operand,
    border_mode,
    cast_host,
    channels_last,
    explicit_padding,
    host_memory_limit,
    int_tuple,
    normalize_conv,
    normalize_conv_transpose,
)
from .backends import get_backend, is_device_array, to_host
from .backward import run_backward
from .errors import AllocationError, ArgumentError, DTypeError, ShapeError
from .transpose import run_transpose

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d"]

PARAM_DTYPES = ("float16", "float32", "float64")


def _count(value: Any, name: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ShapeError(f"{name}={value!r}; expected an int >= 1")
    return int(value)


def _param_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in PARAM_DTYPES:
        raise DTypeError(f"dtype={dtype!r}; expected 'float16', 'float32' or 'float64'")
    return dt


class _ConvNd:
    """Shared implementation of Conv1d/Conv2d/Conv3d (``ndim`` spatial dims)."""

    ndim: int = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, backend: Any = None, seed: Any = None,
                 dtype: Any = "float32", data_format: str = "channels_first") -> None:
        nd = self.ndim
        rng = self._common(in_channels, out_channels, kernel_size, stride, dilation, groups,
                           bias, backend, seed, dtype, data_format)
        explicit_padding(padding, nd)  # validates; normalize_conv resolves it per input
        self.padding = padding.lower() if isinstance(padding, str) else padding
        border_mode(padding_mode)
        self.padding_mode = padding_mode.lower()
        self.fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        self._init_parameters(
            (self.out_channels, self.in_channels // self.groups, *self.kernel_size),
            self.out_channels, rng, bias)
        self._call: ConvCall | None = None

    def _common(self, in_channels: Any, out_channels: Any, kernel_size: Any, stride: Any,
                dilation: Any, groups: Any, bias: Any, backend: Any, seed: Any, dtype: Any,
                data_format: Any) -> np.random.Generator:
        """Validate and set the arguments every layer shares; the initialisation RNG."""
        nd = self.ndim
        self.in_channels = _count(in_channels, "in_channels")
        self.out_channels = _count(out_channels, "out_channels")
        self.groups = _count(groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ShapeError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}; expected a common divisor")
        self.kernel_size = int_tuple(kernel_size, nd, "kernel_size", 1)
        self.stride = int_tuple(stride, nd, "stride", 1)
        self.dilation = int_tuple(dilation, nd, "dilation", 1)
        channels_last(data_format)
        self.data_format = data_format.lower()
        if not isinstance(bias, (bool, np.bool_)):
            raise ArgumentError(f"bias={bias!r}; expected True or False")
        self.dtype = _param_dtype(dtype)
        self.backend = backend
        if backend is not None:
            get_backend(backend)  # an unknown or unusable backend fails here, not later
        try:
            return np.random.default_rng(seed)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"seed={seed!r}; expected None, an int or a "
                                f"numpy.random.Generator ({exc})") from None

    def _init_parameters(self, shape: tuple[int, ...], bias_size: int,
                         rng: np.random.Generator, bias: bool) -> None:
        """Weight and bias uniform in +-1/sqrt(fan_in), as PyTorch initialises them."""
        bound = 1.0 / math.sqrt(self.fan_in)
        # The float64 draw and the weight are both held while initialising.
        need = math.prod(shape) * (8 + self.dtype.itemsize)
        if need > host_memory_limit():
            raise AllocationError(
                f"kernel_size={self.kernel_size} with {self.in_channels} input and "
                f"{self.out_channels} output channels: the weight {shape} needs about "
                f"{need / 2**30:.3g} GiB to initialise; expected at most "
                f"{host_memory_limit() / 2**30:.3g} GiB (physical memory, or "
                "CLCONV_MAX_HOST_BYTES)")
        self.weight: np.ndarray = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.bias: np.ndarray | None = (
            rng.uniform(-bound, bound, bias_size).astype(self.dtype) if bias else None)
        self.grad_weight: Any = None
        self.grad_bias: Any = None
        self._backend_obj: Any = None

    # ------------------------------------------------------------ passes

    def forward(self, x: Any) -> Any:
        """The convolution of ``x`` (batched or unbatched); keeps what backward needs."""
        x = as_operand(x, "input")
        if is_device_array(x):
            if x.dtype != self.dtype:
                x = x.astype(self.dtype)
        else:
            x = cast_host(x, self.dtype)
        call = normalize_conv(self.ndim, x, self.weight, self.bias, self.stride, self.padding,
                              self.dilation, self.groups, self.padding_mode, self.data_format,
                              False)
        backend = get_backend(self.backend)
        y = backend.conv_forward(call.x, call.weight, call.bias, call.spec)
        self._call, self._backend_obj = call, backend
        return y[0] if call.unbatched else y

    __call__ = forward

    def backward(self, grad_output: Any) -> Any:
        """dL/dinput for ``grad_output`` = dL/dy of the last forward pass.

        Sets ``grad_weight`` (the weight's shape) and ``grad_bias`` (``(F,)``,
        or None without a bias). ``grad_output`` must have the last output's
        shape, else :class:`~clconv.ShapeError`.
        """
        if self._call is None:
            raise ArgumentError("backward() called before any forward pass; "
                                "expected layer(x) first")
        grad_input, self.grad_weight, grad_bias = run_backward(
            self._call, grad_output, self._backend_obj)
        self.grad_bias = grad_bias if self.bias is not None else None
        return grad_input

    def parameters(self) -> dict[str, np.ndarray]:
        """The trainable arrays by name: ``weight`` and, if present, ``bias``."""
        params = {"weight": self.weight}
        if self.bias is not None:
            params["bias"] = self.bias
        return params

    def gradients(self) -> dict[str, Any]:
        """The gradients of :meth:`parameters` from the last backward pass, by name."""
        grads = {"weight": self.grad_weight}
        if self.bias is not None:
            grads["bias"] = self.grad_bias
        return grads

    def __repr__(self) -> str:
        nd = self.ndim
        parts = [f"{self.in_channels}", f"{self.out_channels}",
                 f"kernel_size={self.kernel_size}"]
        if self.stride != (1,) * nd:
            parts.append(f"stride={self.stride}")
        if self.padding != 0:
            parts.append(f"padding={self.padding!r}")
        if self.dilation != (1,) * nd:
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias is None:
            parts.append("bias=False")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode!r}")
        if self.data_format != "channels_first":
            parts.append(f"data_format={self.data_format!r}")
        if self.dtype != np.float32:
            parts.append(f"dtype={self.dtype.name!r}")
        if self.backend is not None:
            parts.append(f"backend={getattr(self.backend, 'name', self.backend)!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


_CLASS_DOC = """A {n}-D convolution layer with trainable weight and bias.

    ``{name}(in_channels, out_channels, kernel_size, stride=1, padding=0,
    dilation=1, groups=1, bias=True, padding_mode="zeros", *, backend=None,
    seed=None, dtype="float32")``: the arguments of ``torch.nn.{name}``
    (``padding`` also takes ``(before, after)`` pairs and ``"valid"``,
    ``"same"``, ``"full"`` as in :func:`clconv.conv{n}d`). ``weight`` is
    ``(out_channels, in_channels // groups, *kernel_size)``, ``bias``
    ``(out_channels,)`` or None; both are uniform in
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, ``fan_in = in_channels // groups *
    prod(kernel_size)``, drawn from ``numpy.random.default_rng(seed)``.
    ``dtype`` is the parameters' dtype; inputs are cast to it.
    ``data_format="channels_last"`` takes ``(N, {sp}, C)`` inputs.
    Bad arguments raise at construction.

    ``layer(x)`` runs the forward pass on ``x`` ``(N, C, {sp})`` or unbatched
    ``(C, {sp})``; ``layer.backward(grad_output)`` returns dL/dx and sets
    ``layer.grad_weight`` and ``layer.grad_bias`` (None without a bias).
    """


class Conv1d(_ConvNd):
    ndim = 1
    __doc__ = _CLASS_DOC.format(n=1, name="Conv1d", sp="L")


class Conv2d(_ConvNd):
    ndim = 2
    __doc__ = _CLASS_DOC.format(n=2, name="Conv2d", sp="H, W")


class Conv3d(_ConvNd):
    ndim = 3
    __doc__ = _CLASS_DOC.format(n=3, name="Conv3d", sp="D, H, W")


class _ConvTransposeNd(_ConvNd):
    """Shared implementation of ConvTranspose1d/2d/3d: the adjoint of the convolution layer
    with the same stride, padding, dilation and groups."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, *, backend: Any = None, seed: Any = None,
                 dtype: Any = "float32", data_format: str = "channels_first") -> None:
        nd = self.ndim
        rng = self._common(in_channels, out_channels, kernel_size, stride, dilation, groups,
                           bias, backend, seed, dtype, data_format)
        if isinstance(padding, str):
            raise ArgumentError(f"padding={padding!r}; a transposed convolution takes no "
                                "string padding (as in PyTorch): expected an int or one int "
                                "per spatial dim")
        explicit_padding(padding, nd)
        self.padding = padding
        self.output_padding = int_tuple(output_padding, nd, "output_padding", 0)
        for axis, (op, s, d) in enumerate(zip(self.output_padding, self.stride,
                                              self.dilation)):
            if op >= max(s, d):
                raise ShapeError(f"output_padding={output_padding!r}: {op} on spatial axis "
                                 f"{axis}; expected less than max(stride, dilation) = "
                                 f"{max(s, d)}")
        self.padding_mode = "zeros"
        self.fan_in = self.out_channels // self.groups * math.prod(self.kernel_size)
        self._init_parameters(
            (self.in_channels, self.out_channels // self.groups, *self.kernel_size),
            self.out_channels, rng, bias)
        self._tcall: TransposeCall | None = None
        self._in_size: tuple[int, ...] = ()

    def forward(self, x: Any) -> Any:
        """The transposed convolution of ``x``; keeps what backward needs."""
        x = as_operand(x, "input")
        x = (x.astype(self.dtype) if x.dtype != self.dtype else x) if is_device_array(x) \
            else cast_host(x, self.dtype)
        call = normalize_conv_transpose(self.ndim, x, self.weight, self.bias, self.stride,
                                        self.padding, self.output_padding, self.groups,
                                        self.dilation, self.data_format)
        backend = get_backend(self.backend)
        y = run_transpose(call, backend)
        self._tcall, self._backend_obj = call, backend
        shape = (1, *x.shape) if call.unbatched else tuple(x.shape)
        self._in_size = shape[1:-1] if call.spec.channels_last else shape[2:]
        return y

    __call__ = forward

    def backward(self, grad_output: Any) -> Any:
        """dL/dinput for ``grad_output`` = dL/dy of the last forward pass.

        dL/dinput is the forward convolution of ``grad_output`` (the adjoint's
        adjoint); ``grad_weight`` is that convolution's weight gradient for
        the layer's input; ``grad_bias`` sums ``grad_output`` over batch and
        positions (None without a bias).
        """
        call = self._tcall
        if call is None:
            raise ArgumentError("backward() called before any forward pass; "
                                "expected layer(x) first")
        spec = call.spec
        gy = as_operand(grad_output, "grad_output")
        expected = spec.input_shape[1:] if call.unbatched else spec.input_shape
        if tuple(gy.shape) != tuple(expected):
            raise ShapeError(f"grad_output has shape {tuple(gy.shape)}; expected "
                             f"{tuple(expected)}, the shape of the last output")
        if call.unbatched:
            gy = gy.reshape((1, *gy.shape))
        gy = cast_host(gy, np.dtype(spec.dtype))
        be = self._backend_obj
        grad_x = be.conv_forward(gy, call.weight, None, spec)
        self.grad_weight = be.conv_backward(gy, call.weight, call.x, spec)[1]
        # The forward convolution may reach past the input where output_padding
        # extended the result: those positions are not the layer's input.
        if tuple(spec.out_size) != tuple(self._in_size):
            keep = tuple(slice(0, n) for n in self._in_size)
            grad_x = grad_x[(slice(None), *keep, slice(None)) if spec.channels_last
                            else (slice(None), slice(None), *keep)]
        self.grad_bias = None
        if self.bias is not None:  # per output channel: every axis but the channels'
            channel_axis = len(spec.input_shape) - 1 if spec.channels_last else 1
            axes = tuple(i for i in range(len(spec.input_shape)) if i != channel_axis)
            self.grad_bias = to_host(gy).astype(np.float64).sum(axis=axes).astype(spec.dtype)
        return grad_x[0] if call.unbatched else grad_x

    def __repr__(self) -> str:
        text = super().__repr__()
        if any(self.output_padding):
            text = text[:-1] + f", output_padding={self.output_padding})"
        return text


_TRANSPOSE_DOC = """A {n}-D transposed convolution layer (the adjoint of ``Conv{n}d``).

    ``ConvTranspose{n}d(in_channels, out_channels, kernel_size, stride=1,
    padding=0, output_padding=0, groups=1, bias=True, dilation=1, *,
    backend=None, seed=None, dtype="float32")``: the arguments of
    ``torch.nn.ConvTranspose{n}d`` in its order (``groups`` before
    ``dilation``). ``weight`` is ``(in_channels, out_channels // groups,
    *kernel_size)``, ``bias`` ``(out_channels,)`` or None; both uniform in
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` with ``fan_in = out_channels //
    groups * prod(kernel_size)``, drawn from ``numpy.random.default_rng(seed)``.
    ``layer(x)`` computes :func:`clconv.conv_transpose{n}d`;
    ``layer.backward(grad_output)`` returns dL/dx and sets ``grad_weight``
    and ``grad_bias``.
    """


class ConvTranspose1d(_ConvTransposeNd):
    ndim = 1
    __doc__ = _TRANSPOSE_DOC.format(n=1)


class ConvTranspose2d(_ConvTransposeNd):
    ndim = 2
    __doc__ = _TRANSPOSE_DOC.format(n=2)


class ConvTranspose3d(_ConvTransposeNd):
    ndim = 3
    __doc__ = _TRANSPOSE_DOC.format(n=3)
