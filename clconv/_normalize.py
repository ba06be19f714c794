"""User arguments -> a validated :class:`~clconv._spec.ConvSpec`.

Every ``ArgumentError``, ``ShapeError`` and ``DTypeError`` about a
convolution's arguments is raised here, once, before any backend runs.
Messages name the argument, the value seen and what was expected.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._env import setting
from ._spec import ConvSpec
from .backends import is_device_array, to_host
from .errors import AllocationError, ArgumentError, DTypeError, ShapeError

# PyTorch padding_mode names (and numpy.pad's own names) -> numpy.pad mode.
PADDING_MODES = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "constant": "constant",
    "edge": "edge",
    "wrap": "wrap",
    "symmetric": "symmetric",
}
DATA_FORMATS = ("channels_first", "channels_last")
# dtype -> its name without numpy's (Python-level, slow) ``dtype.name`` property.
_DTYPE_NAMES = {np.dtype(n): n for n in ("float16", "float32", "float64")}
PADDING_STRINGS = ("valid", "same", "full")

# No machine holds an array this large; refusing it here turns a hopeless
# request into a clear error instead of a MemoryError deep inside a backend.
MAX_ELEMENTS = 2**46
# Largest stride or dilation that still matters after canonical_steps (kernels take
# them as 32-bit ints); larger ones need a padded axis longer than 2**31 elements.
MAX_STEP = 2**31 - 1
# Overrides the host memory (bytes) a convolution may plan to use; default:
# the machine's physical memory.
HOST_MEMORY_ENV = "CLCONV_MAX_HOST_BYTES"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- operands

def result_dtype(dtype: Any, name: str = "input") -> np.dtype:
    """The dtype a convolution of data of ``dtype`` returns (API.md section 1)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return dtype if dtype.isnative else dtype.newbyteorder("=")
    if dtype.kind in "biuf":
        return np.dtype(np.float32)
    raise DTypeError(
        f"{name} has dtype {dtype}; expected a real numeric dtype "
        "(float16/32/64, integer or bool), not complex, object, string or datetime"
    )


def check_numeric(dtype: Any, name: str) -> None:
    """Raise DTypeError unless ``dtype`` is real numeric."""
    result_dtype(dtype, name)


def as_operand(obj: Any, name: str) -> Any:
    """A NumPy array in native byte order (or an untouched device array) for a user operand.

    Big-endian host data is converted here, once: kernels and the NumPy
    backend's BLAS read native numbers only.
    """
    if is_device_array(obj):
        check_numeric(obj.dtype, name)
        if not obj.dtype.isnative:
            raise DTypeError(f"{name} is a device array of non-native byte order "
                             f"({obj.dtype.str}); expected native data (upload with "
                             "clconv.to_device, which converts it)")
        return obj
    if hasattr(obj, "__dask_graph__"):
        raise ArgumentError(f"{name} is a dask array; clconv does not handle dask arrays here")
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError) as exc:
        raise ArgumentError(f"{name} could not be read as an array: {exc}") from None
    check_numeric(arr.dtype, name)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def cast_host(arr: Any, dtype: np.dtype) -> Any:
    """Cast a host array to ``dtype`` (no copy when it already has it); device arrays pass."""
    if is_device_array(arr):
        return arr
    return arr.astype(dtype, copy=False)


# ---------------------------------------------------------------- scalars

def _is_int(value: Any) -> bool:
    kind = type(value)
    if kind is int:  # the common case, without the slow ABC check
        return True
    return kind is not bool and isinstance(value, numbers.Integral)


def int_tuple(value: Any, ndim: int, name: str, minimum: int) -> tuple[int, ...]:
    """An int or one int per spatial dim, each >= ``minimum``."""
    if type(value) is int and value >= minimum:  # the common case
        return (value,) * ndim
    expected = f"an int >= {minimum} or a tuple of {ndim} such ints"
    if _is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, (tuple, list)):
        if len(value) != ndim or not all(_is_int(v) for v in value):
            raise ShapeError(f"{name}={_short(value)}; expected {expected}")
        values = tuple(int(v) for v in value)
    else:
        raise ShapeError(f"{name}={_short(value)}; expected {expected}")
    if any(v < minimum for v in values):
        raise ShapeError(f"{name}={_short(value)}; expected {expected}")
    return values


def border_mode(padding_mode: Any) -> str:
    """The numpy.pad mode for a PyTorch ``padding_mode`` name."""
    key = padding_mode.lower() if isinstance(padding_mode, str) else None
    if key not in PADDING_MODES:
        raise ArgumentError(
            f"padding_mode={_short(padding_mode)}; expected one of "
            "'zeros', 'reflect', 'replicate', 'circular', 'symmetric'"
        )
    return PADDING_MODES[key]


def channels_last(data_format: Any) -> bool:
    key = data_format.lower() if isinstance(data_format, str) else None
    if key not in DATA_FORMATS:
        raise ArgumentError(
            f"data_format={_short(data_format)}; expected 'channels_first' or 'channels_last'"
        )
    return key == "channels_last"


def explicit_padding(padding: Any, ndim: int) -> tuple[tuple[int, int], ...] | str:
    """Padding as ((before, after), ...) per dim, or one of 'valid'/'same'/'full'."""
    if isinstance(padding, str):
        key = padding.lower()
        if key not in PADDING_STRINGS:
            raise ArgumentError(
                f"padding={padding!r}; expected 'valid', 'same', 'full', an int, or a tuple"
            )
        return key
    expected = (f"a non-negative int, 'valid', 'same', 'full', or a tuple of {ndim} entries "
                "each an int or a (before, after) pair")
    if _is_int(padding):
        if padding < 0:
            raise ShapeError(f"padding={padding}; expected {expected}")
        return ((int(padding), int(padding)),) * ndim
    if not isinstance(padding, (tuple, list)) or len(padding) != ndim:
        raise ShapeError(f"padding={_short(padding)}; expected {expected}")
    pairs = []
    for entry in padding:
        if _is_int(entry):
            pair = (int(entry), int(entry))
        elif (isinstance(entry, (tuple, list)) and len(entry) == 2
              and all(_is_int(v) for v in entry)):
            pair = (int(entry[0]), int(entry[1]))
        else:
            raise ShapeError(f"padding={_short(padding)}; expected {expected}")
        if min(pair) < 0:
            raise ShapeError(f"padding={_short(padding)}; expected {expected}")
        pairs.append(pair)
    return tuple(pairs)


def resolve_padding(padding: tuple | str, in_size, kernel_size, stride, dilation):
    """Turn 'valid'/'same'/'full' into explicit (before, after) pairs."""
    if not isinstance(padding, str):
        return padding
    pairs = []
    for n, k, s, d in zip(in_size, kernel_size, stride, dilation):
        extent = (k - 1) * d + 1
        if padding == "valid":
            pairs.append((0, 0))
        elif padding == "full":
            pairs.append((extent - 1, extent - 1))
        else:  # "same", TensorFlow rule: out = ceil(n / s), odd pixel after
            out = -(-n // s)
            total = max((out - 1) * s + extent - n, 0)
            pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


def output_size(in_size, kernel_size, stride, dilation, pads) -> tuple[int, ...]:
    """floor((n + before + after - dilation*(k-1) - 1) / stride) + 1 per dim; ShapeError below 1."""
    out = []
    for axis, (n, k, s, d, (b, a)) in enumerate(
            zip(in_size, kernel_size, stride, dilation, pads)):
        padded = n + b + a
        extent = d * (k - 1) + 1
        if extent > padded:
            raise ShapeError(
                f"kernel extent {extent} (kernel size {k}, dilation {d}) on spatial axis {axis} "
                f"is larger than the padded input size {padded} (input {n}, padding ({b}, {a})); "
                "expected a kernel that fits the padded input"
            )
        out.append((padded - extent) // s + 1)
    return tuple(out)


def canonical_steps(in_size, kernel_size, stride, dilation, pads):
    """Equivalent small strides and dilations for values that cannot matter.

    A stride that leaves one output position is never used (replaced by 1), a
    stride larger than the padded input is replaced by the padded size, and the
    dilation of a size-1 kernel axis is never used (replaced by 1). All are
    valid (any int >= 1): same output size, same numbers, and no backend has to
    carry integers wider than the arrays themselves.
    """
    strides, dilations = [], []
    for n, k, s, d, (b, a) in zip(in_size, kernel_size, stride, dilation, pads):
        padded, extent = n + b + a, (k - 1) * d + 1
        single = (padded - extent) // s == 0  # one output position: the stride is unused
        strides.append(1 if single else min(s, padded))
        dilations.append(1 if k == 1 else d)
    return tuple(strides), tuple(dilations)


def env_bytes(name: str) -> int | None:
    """A byte count from environment variable ``name``: None when unset, empty or
    infinite (``inf``, ``1e400``: no limit); ArgumentError for anything but a positive
    number."""
    raw = (setting(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= 1:  # also NaN and -inf
        raise ArgumentError(f"environment variable {name}={raw!r}; expected a positive "
                            "number of bytes (or inf for no limit)")
    return None if math.isinf(value) else int(value)


def host_memory_limit() -> int:
    """Bytes of host memory one convolution may need: ``CLCONV_MAX_HOST_BYTES``, else the
    machine's physical memory (2**49 when the platform does not say)."""
    limit = env_bytes(HOST_MEMORY_ENV)
    return _physical_memory() if limit is None else limit


@functools.lru_cache(maxsize=1)
def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such key
        return 2**49


def check_host_memory(padded_elems: int, out_elems: int, dtype: np.dtype,
                      detail: Callable[[], str]) -> None:
    """AllocationError, before anything is allocated, when the padded input plus the output
    (in the accumulator precision, as the NumPy reference holds them) exceed
    :func:`host_memory_limit`: such a request could only fail or swap the machine to death.
    ``detail()`` describes the problem in the message (formatted only then)."""
    item = 8 if dtype == np.float64 else 4
    need = (padded_elems + out_elems) * item
    limit = host_memory_limit()
    if need > limit:
        raise AllocationError(
            f"the convolution needs about {need / 2**30:.3g} GiB of host memory for the padded "
            f"input ({padded_elems} elements) and the output ({out_elems} elements) ({detail()}); "
            f"expected at most {limit / 2**30:.3g} GiB (physical memory, or "
            f"{HOST_MEMORY_ENV}); use less padding, a smaller input or a dask array")


# ---------------------------------------------------------------- conv

@dataclass(frozen=True)
class ConvCall:
    """A validated convolution: the spec and the operands in the spec's layout."""

    spec: ConvSpec
    x: Any
    weight: Any
    bias: Any
    unbatched: bool


def _rank_error(name: str, value_shape, expected: str) -> ShapeError:
    return ShapeError(f"{name} has shape {tuple(value_shape)}; expected {expected}")


def _input_layout(x: Any, ndim: int, last: bool, op: str,
                  ) -> tuple[bool, int, int, tuple[int, ...]]:
    """``(unbatched, batch, channels, spatial size)`` of an ``op`` input; ShapeError for a
    wrong rank, zero channels or an empty spatial axis."""
    layout = "(N, *spatial, C)" if last else "(N, C, *spatial)"
    if x.ndim not in (ndim + 1, ndim + 2):
        raise _rank_error("input", x.shape,
                          f"{ndim + 2} dims {layout} or {ndim + 1} dims unbatched for {op}")
    unbatched = x.ndim == ndim + 1
    shape = (1, *x.shape) if unbatched else tuple(x.shape)
    batch, channels, in_size = ((shape[0], shape[-1], shape[1:-1]) if last
                                else (shape[0], shape[1], shape[2:]))
    if channels == 0:
        raise ShapeError(f"input has shape {tuple(x.shape)} with 0 channels; expected >= 1")
    if 0 in in_size:
        raise ShapeError(f"input has shape {tuple(x.shape)} with an empty spatial axis; "
                         "expected every spatial size >= 1")
    return unbatched, batch, channels, tuple(in_size)


def _groups(groups: Any, channels: int) -> int:
    """``groups`` as an int >= 1 that divides the input's ``channels``, else ShapeError."""
    if not _is_int(groups) or groups < 1:
        raise ShapeError(f"groups={_short(groups)}; expected an int >= 1")
    groups = int(groups)
    if channels % groups:
        raise ShapeError(f"groups={groups} does not divide the input's {channels} channels; "
                         "expected a divisor of the channel count")
    return groups


def _conv_weight(w: Any, b: Any, ndim: int, groups: Any, channels: int,
                 ) -> tuple[int, int, tuple[int, ...]]:
    """``(filters, groups, kernel size)`` of a conv weight and bias checked against an
    input of ``channels`` channels; ShapeError for any mismatch."""
    if w.ndim != ndim + 2:
        raise _rank_error("weight", w.shape, f"{ndim + 2} dims (F, C // groups, *kernel)")
    filters, per_group, kernel_size = w.shape[0], w.shape[1], tuple(w.shape[2:])
    groups = _groups(groups, channels)
    if filters % groups:
        raise ShapeError(f"groups={groups} does not divide weight's {filters} filters "
                         f"(weight shape {tuple(w.shape)}); expected a divisor of the filter count")
    if per_group * groups != channels:
        hint = ""
        if w.shape[-2] * groups == channels:  # a (*kernel, C // groups, F) weight: Keras, TF
            order = (ndim + 1, ndim, *range(ndim))
            hint = (f"; weights are always (F, C // groups, *kernel) whatever data_format is: "
                    f"a Keras/TensorFlow (*kernel, C, F) weight needs weight.transpose{order}")
        raise ShapeError(
            f"weight has shape {tuple(w.shape)}: {per_group} input channels per group, but the "
            f"input has {channels} channels and groups={groups}; expected weight.shape[1] == "
            f"{channels // groups}{hint}")
    if 0 in kernel_size:
        raise ShapeError(f"weight has shape {tuple(w.shape)} with an empty kernel axis; "
                         "expected every kernel size >= 1")
    if b is not None and tuple(b.shape) != (filters,):
        raise ShapeError(f"bias has shape {tuple(b.shape)}; expected ({filters},), one per filter")
    return filters, groups, kernel_size


def _conv_geometry(x_shape: tuple[int, ...], ndim: int, in_size: tuple[int, ...],
                   kernel_size: tuple[int, ...], stride: Any, padding: Any, dilation: Any,
                   ) -> tuple[tuple[int, ...], tuple[int, ...], tuple, tuple[int, ...]]:
    """``(strides, dilations, pads, output size)``: the user's steps and padding made
    explicit, checked, and reduced to the equivalent small steps."""
    strides = int_tuple(stride, ndim, "stride", 1)
    dilations = int_tuple(dilation, ndim, "dilation", 1)
    pads = resolve_padding(explicit_padding(padding, ndim), in_size, kernel_size, strides,
                           dilations)
    out = output_size(in_size, kernel_size, strides, dilations, pads)
    strides, dilations = canonical_steps(in_size, kernel_size, strides, dilations, pads)
    for name, steps in (("stride", strides), ("dilation", dilations)):
        if max(steps) > MAX_STEP:
            raise ShapeError(
                f"{name}={_short(stride if name == 'stride' else dilation)} with padding "
                f"{pads} on input {x_shape}: a step above {MAX_STEP} that still "
                f"matters (the padded input is longer than that); expected steps up to "
                f"{MAX_STEP}, or less padding")
    return strides, dilations, pads, out


def _check_elements(x_shape: tuple[int, ...], batch: int, channels: int, filters: int,
                    in_size: tuple[int, ...], pads: tuple, out: tuple[int, ...],
                    dtype: np.dtype, check_memory: bool) -> None:
    """AllocationError for a padded input or output beyond :data:`MAX_ELEMENTS`, or
    (with ``check_memory``) beyond the host memory."""
    padded = math.prod(n + a + c for n, (a, c) in zip(in_size, pads))
    padded_elems = batch * channels * padded
    out_elems = batch * filters * math.prod(out)
    # Empty batches and zero filters count as one: NumPy cannot even describe an empty
    # array whose other axes multiply past its index range.
    largest = max(max(batch, 1) * channels * padded,
                  max(batch, 1) * max(filters, 1) * math.prod(out))
    if largest > MAX_ELEMENTS:
        raise AllocationError(
            f"the convolution needs {largest} elements "
            f"(input {x_shape}, padding {pads}, output {out}); expected at most "
            f"{MAX_ELEMENTS}")
    if check_memory:
        check_host_memory(padded_elems, out_elems, dtype,
                          lambda: f"input {x_shape}, padding {pads}, output {out}")


# Validated calls by what decides their spec: operand shapes and dtypes (NumPy
# operands only), the other arguments with their types and the host-memory
# limit's setting, so that a repeated call skips validation. Bounded, oldest
# entry out first.
_CALLS: dict[tuple, tuple] = {}
MAX_CALLS = 256
_KEY_SCALARS = frozenset({int, float, bool, str, type(None)})


def _frozen(value: Any) -> Any:
    """``value`` with the type of every element (True is not 1 here); ``TypeError``
    for anything but plain scalars and tuples of them."""
    kind = type(value)
    if kind in _KEY_SCALARS:
        return kind, value
    if kind is tuple:
        return (tuple, *map(_frozen, value))
    raise TypeError


def _call_key(ndim: int, operands: tuple[Any, ...], args: tuple[Any, ...]) -> tuple | None:
    """The cache key of a call whose operands are NumPy arrays (or None), else None."""
    shapes = []
    for op in operands:
        if op is None:
            shapes.append(None)
        elif type(op) is np.ndarray:
            shapes.append((op.shape, op.dtype))
        else:
            return None
    try:
        return ndim, *shapes, *map(_frozen, args)
    except TypeError:
        return None


def normalize_conv(ndim: int, input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
                   dilation: Any, groups: Any, padding_mode: Any, data_format: Any,
                   flip: Any, *, fill_value: float = 0.0,
                   check_memory: bool = True) -> ConvCall:
    """Validate conv{ndim}d arguments and build the :class:`ConvSpec`.

    ``check_memory=False`` skips the host-memory check (for lazy dask inputs,
    which never hold the whole input or output at once). A call with the same
    operand shapes and dtypes and the same arguments as an earlier valid one
    reuses its spec.
    """
    key = _call_key(ndim, (input, weight, bias), (
        stride, padding, dilation, groups, padding_mode, data_format, flip, fill_value,
        check_memory and setting(HOST_MEMORY_ENV)))  # the memory check's limit
    hit = None if key is None else _CALLS.get(key)
    if hit is not None:
        spec, unbatched, ready = hit
        x = input.reshape((1, *input.shape)) if unbatched else input
        if ready:  # the key pins the operands' dtypes: nothing to convert
            return ConvCall(spec, x, weight, bias, unbatched)
        dtype = np.dtype(spec.dtype)
        return ConvCall(spec, cast_host(as_operand(x, "input"), dtype),
                        cast_host(as_operand(weight, "weight"), dtype),
                        None if bias is None else cast_host(as_operand(bias, "bias"), dtype),
                        unbatched)
    call = _normalize_conv(ndim, input, weight, bias, stride, padding, dilation, groups,
                           padding_mode, data_format, flip, fill_value, check_memory)
    if key is not None:
        if len(_CALLS) >= MAX_CALLS:
            _CALLS.pop(next(iter(_CALLS), None), None)
        # Ready: every operand already is the spec's native dtype, so that a hit
        # passes the caller's arrays on as they are.
        ready = all(op is None or op.dtype == call.spec.dtype and op.dtype.isnative
                    for op in (input, weight, bias))
        _CALLS[key] = (call.spec, call.unbatched, ready)
    return call


def _normalize_conv(ndim: int, input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
                    dilation: Any, groups: Any, padding_mode: Any, data_format: Any,
                    flip: Any, fill_value: float, check_memory: bool) -> ConvCall:
    last = channels_last(data_format)
    border = border_mode(padding_mode)
    if not isinstance(flip, (bool, np.bool_)):
        raise ArgumentError(f"flip={_short(flip)}; expected True or False")
    x = as_operand(input, "input")
    w = as_operand(weight, "weight")
    b = None if bias is None else as_operand(bias, "bias")
    dtype = result_dtype(x.dtype, "input")

    unbatched, batch, channels, in_size = _input_layout(x, ndim, last, f"conv{ndim}d")
    filters, groups, kernel_size = _conv_weight(w, b, ndim, groups, channels)
    x_shape = tuple(x.shape)
    strides, dilations, pads, out = _conv_geometry(x_shape, ndim, in_size, kernel_size,
                                                   stride, padding, dilation)
    _check_elements(x_shape, batch, channels, filters, in_size, pads, out, dtype, check_memory)

    spec = ConvSpec(
        batch=batch, in_channels=channels, out_channels=filters, groups=groups,
        in_size=tuple(in_size), kernel_size=kernel_size, stride=strides, dilation=dilations,
        pad_before=tuple(p[0] for p in pads), pad_after=tuple(p[1] for p in pads),
        out_size=out, border=border, fill_value=float(fill_value), flip=bool(flip),
        has_bias=b is not None, dtype=_DTYPE_NAMES.get(dtype) or dtype.name,
        channels_last=last,
    )
    if unbatched:
        x = x.reshape((1, *x.shape))
    return ConvCall(spec, cast_host(x, dtype), cast_host(w, dtype),
                    None if b is None else cast_host(b, dtype), unbatched)


# ---------------------------------------------------------------- transposed conv

@dataclass(frozen=True)
class TransposeCall:
    """A validated transposed convolution, as the input gradient of a forward one.

    ``spec`` describes the forward convolution whose input has the transposed
    convolution's output shape; ``x`` (batched, in the spec's dtype) plays
    that convolution's ``grad_output``, zero-extended at the end of a spatial
    axis where ``output_padding`` reaches past the last full stride.
    """

    spec: ConvSpec
    x: Any
    weight: Any
    bias: Any
    unbatched: bool
    in_size: tuple[int, ...]  # the transposed convolution's input size, before extension


def normalize_conv_transpose(ndim: int, input: Any, weight: Any, bias: Any, stride: Any,
                             padding: Any, output_padding: Any, groups: Any, dilation: Any,
                             data_format: Any) -> TransposeCall:
    """Validate conv_transpose{ndim}d arguments (PyTorch's semantics, API.md section 1b).

    A call with the same operand shapes and dtypes and the same arguments as an
    earlier valid one reuses its spec (the call cache of :func:`normalize_conv`).
    """
    key = _call_key(ndim, (input, weight, bias), (
        "transpose", stride, padding, output_padding, groups, dilation, data_format,
        setting(HOST_MEMORY_ENV)))
    hit = None if key is None else _CALLS.get(key)
    if hit is not None:
        spec, unbatched, in_size = hit
        dtype = np.dtype(spec.dtype)
        x = input.reshape((1, *input.shape)) if unbatched else input
        return TransposeCall(spec, cast_host(_grown(x, spec, in_size), dtype),
                             cast_host(as_operand(weight, "weight"), dtype),
                             None if bias is None else cast_host(as_operand(bias, "bias"), dtype),
                             unbatched, in_size)
    call = _normalize_conv_transpose(ndim, input, weight, bias, stride, padding,
                                     output_padding, groups, dilation, data_format)
    if key is not None:
        if len(_CALLS) >= MAX_CALLS:
            _CALLS.pop(next(iter(_CALLS), None), None)
        _CALLS[key] = (call.spec, call.unbatched, call.in_size)
    return call


def _grown(xb: Any, spec: ConvSpec, in_size: tuple[int, ...]) -> Any:
    """The batched transposed input zero-extended at the end of each spatial axis where
    output_padding reaches past the last full stride (the gradient is zero there)."""
    grown = tuple(f - n for f, n in zip(spec.out_size, in_size))
    if not any(grown):
        return xb
    space = [(0, g) for g in grown]
    widths = [(0, 0), *space, (0, 0)] if spec.channels_last else [(0, 0), (0, 0), *space]
    return np.pad(to_host(xb), widths)


def _normalize_conv_transpose(ndim: int, input: Any, weight: Any, bias: Any, stride: Any,
                              padding: Any, output_padding: Any, groups: Any, dilation: Any,
                              data_format: Any) -> TransposeCall:
    last = channels_last(data_format)
    x = as_operand(input, "input")
    w = as_operand(weight, "weight")
    b = None if bias is None else as_operand(bias, "bias")
    dtype = result_dtype(x.dtype, "input")
    unbatched, batch, channels, in_size = _input_layout(x, ndim, last,
                                                        f"conv_transpose{ndim}d")
    shape = (1, *x.shape) if unbatched else tuple(x.shape)
    if w.ndim != ndim + 2:
        raise _rank_error("weight", w.shape, f"{ndim + 2} dims (C, F // groups, *kernel)")
    groups = _groups(groups, channels)
    if w.shape[0] != channels:
        raise ShapeError(
            f"weight has shape {tuple(w.shape)}: {w.shape[0]} input channels, but the input "
            f"has {channels}; expected weight.shape[0] == {channels} (a transposed "
            "convolution's weight is (C, F // groups, *kernel))")
    kernel_size = tuple(w.shape[2:])
    if 0 in kernel_size:
        raise ShapeError(f"weight has shape {tuple(w.shape)} with an empty kernel axis; "
                         "expected every kernel size >= 1")
    filters = w.shape[1] * groups
    if b is not None and tuple(b.shape) != (filters,):
        raise ShapeError(f"bias has shape {tuple(b.shape)}; expected ({filters},), one per "
                         "output channel")
    strides = int_tuple(stride, ndim, "stride", 1)
    dilations = int_tuple(dilation, ndim, "dilation", 1)
    if isinstance(padding, str):
        raise ArgumentError(f"padding={padding!r}; a transposed convolution takes no string "
                            "padding (as in PyTorch): expected an int, or one int or "
                            "(before, after) pair per spatial dim")
    pads = explicit_padding(padding, ndim)
    extra = int_tuple(output_padding, ndim, "output_padding", 0)
    for axis, (op, s, d) in enumerate(zip(extra, strides, dilations)):
        if op >= max(s, d):
            raise ShapeError(
                f"output_padding={_short(output_padding)}: {op} on spatial axis {axis}; "
                f"expected less than max(stride, dilation) = {max(s, d)}")
    out = tuple((n - 1) * s - pb - pa + d * (k - 1) + op + 1 for n, s, (pb, pa), d, k, op
                in zip(in_size, strides, pads, dilations, kernel_size, extra))
    for axis, size in enumerate(out):
        if size < 1:
            raise ShapeError(
                f"the output size on spatial axis {axis} is {size} (input {in_size[axis]}, "
                f"kernel {kernel_size[axis]}, stride {strides[axis]}, dilation "
                f"{dilations[axis]}, padding {pads[axis]}, output_padding {extra[axis]}); "
                "expected at least 1: use less padding")
    # The forward convolution whose input gradient this is: input (N, F, *out).
    dummy_shape = (batch, *out, filters) if last else (batch, filters, *out)
    dummy = np.broadcast_to(np.zeros((), dtype), dummy_shape)
    spec = normalize_conv(ndim, dummy, cast_host(w, dtype), None, strides, pads, dilations,
                          groups, "zeros", data_format, False).spec
    xb = _grown(x.reshape(shape), spec, tuple(in_size))
    return TransposeCall(spec, cast_host(xb, dtype), cast_host(w, dtype),
                         None if b is None else cast_host(b, dtype), unbatched, tuple(in_size))
