"""filter2d: one 2-D kernel over every channel of an image (API.md section 3).

An ``(H, W)`` or ``(H, W, C)`` image is handed to :func:`clconv.conv2d` as a
channels-last depthwise convolution (``groups=C``, one filter per channel),
so every backend, dtype rule and device-array path of conv2d applies.

Rank-1 kernels (box, gaussian, sobel, prewitt, or any outer product) may run
as two 1-D passes, a column pass then a row pass, over the same explicit
padding: the padding along one axis commutes with a filter along the other,
so the numbers are those of the 2-D kernel up to float rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import kernels
from ._normalize import (
    as_operand,
    border_mode,
    check_numeric,
    explicit_padding,
    int_tuple,
    normalize_conv,
    output_size,
    resolve_padding,
    result_dtype,
)
from .backends import get_backend, has_device_memory, is_device_array, to_host
from .errors import ArgumentError, DTypeError, ShapeError
from .functional import conv2d

__all__ = ["filter2d"]


def _host_kernel(kernel: Any, params: dict[str, Any]) -> np.ndarray:
    """The kernel as a 2-D host array (names are looked up in clconv.kernels, with
    ``params``)."""
    if isinstance(kernel, str):
        return kernels.get(kernel, **params)
    if params:
        raise ArgumentError(f"kernel parameters {sorted(params)} given with an array kernel; "
                            "expected them only with a kernel name such as 'gaussian'")
    k = to_host(as_operand(kernel, "kernel"))
    if k.ndim != 2:
        raise ShapeError(f"kernel has shape {tuple(k.shape)}; expected 2 dims (kH, kW)")
    if 0 in k.shape:
        raise ShapeError(f"kernel has shape {tuple(k.shape)}; expected every size >= 1")
    return k


def rank1_factors(kernel: Any, dtype: Any = np.float32,
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(column, row)`` of a rank-1 2-D kernel (:func:`clconv.kernels.rank1_factors`), or
    None also for kernels of one row or column and all-zero ones (one pass is as good)."""
    k = np.asarray(kernel)
    if k.ndim != 2 or min(k.shape) < 2 or not np.any(k):
        return None
    return kernels.rank1_factors(k, dtype)


def _image_operand(image: Any) -> Any:
    """The image as an array-like with ``ndim``/``shape``/``dtype`` (device and dask pass)."""
    if is_device_array(image) or hasattr(image, "__dask_graph__"):
        check_numeric(image.dtype, "image")
        return image
    return as_operand(image, "image")


def result_dtype_of(dtype: Any, image_dtype: np.dtype) -> np.dtype | None:
    """filter2d's ``dtype`` argument: None (the convolution rule), ``"same"`` (the
    image's) or a real numeric dtype other than bool."""
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype.lower() == "same":
        return np.dtype(image_dtype)
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"dtype={dtype!r}; expected None, 'same' or a NumPy dtype") from None
    if out.kind not in "iuf":
        raise DTypeError(f"dtype={dtype!r}; expected 'same' or an integer or float dtype")
    return out


def saturate_host(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round to nearest (ties to even), clamp into ``dtype``'s range, NaN to 0."""
    if dtype.kind == "f":
        return y.astype(dtype)
    info = np.iinfo(dtype)
    with np.errstate(invalid="ignore"):
        v = np.nan_to_num(np.rint(y.astype(np.float64)), nan=0.0, posinf=info.max,
                          neginf=info.min)
    return np.clip(v, info.min, info.max).astype(dtype)


def filter2d(image: Any, kernel: Any, *, stride: Any = 1, padding: Any = "same",
             padding_mode: str = "reflect", flip: bool = False, dtype: Any = None,
             backend: str | None = None, **kernel_params: Any) -> Any:
    """Apply one 2-D ``kernel`` to every channel of ``image`` independently.

    Args:
        image: ``(H, W)``, ``(H, W, C)`` or a batch ``(N, H, W, C)``; a NumPy
            array (or anything ``numpy.asarray`` reads), a
            ``pyopencl.array.Array`` on the OpenCL backend (the result is then
            a device array too), or a dask array.
        kernel: a 2-D array ``(kH, kW)``, or a name from :mod:`clconv.kernels`
            (its parameters as keywords: ``filter2d(img, "gaussian", size=7,
            sigma=2)``).
        stride: an int or ``(sH, sW)``.
        padding: ``"same"`` (default: output ``ceil(H / sH) x ceil(W / sW)``),
            ``"valid"``, ``"full"``, an int, or one entry per axis as in
            :func:`clconv.conv2d`.
        padding_mode: ``"reflect"`` (default), ``"zeros"``, ``"replicate"``
            or ``"circular"`` (PyTorch names; numpy.pad ``reflect``,
            ``constant``, ``edge``, ``wrap``).
        flip: False computes cross-correlation (``scipy.ndimage.correlate``);
            True flips the kernel: true convolution (``scipy.ndimage.convolve``).
        dtype: None keeps the convolution rule below; ``"same"`` (the image's
            dtype) or a NumPy dtype gives that dtype: integers rounded to the
            nearest (ties to even) and saturated into range, NaN giving 0, as
            ``cv2.filter2D(image, -1, kernel)`` does for 8- and 16-bit images.
            On OpenCL the conversion runs on the device, so only the integer
            result is read back.
        backend: a backend name, or None for the current default.

    Returns:
        The filtered image in the image's layout (``(H', W')``,
        ``(H', W', C)`` or ``(N, H', W', C)``); with ``dtype=None`` float64
        stays float64, float16 stays float16, everything else (uint8, uint16,
        int, bool, float32) becomes float32.

    Example:
        >>> import numpy as np, clconv
        >>> img = np.zeros((5, 5), dtype=np.uint8); img[:, 2:] = 255
        >>> clconv.filter2d(img, clconv.kernels.get("sobel_x"), backend="numpy")[2]
        array([   0., 1020., 1020.,    0.,    0.], dtype=float32)
    """
    x = _image_operand(image)
    k = _host_kernel(kernel, kernel_params)
    if not isinstance(flip, (bool, np.bool_)):
        raise ArgumentError(f"flip={flip!r}; expected True or False")
    out_dtype = result_dtype_of(dtype, np.dtype(x.dtype))
    grey = x.ndim == 2
    x, (height, width), channels = _as_channels_last(x)

    # Validate and resolve once, so both paths see the same explicit padding.
    border_mode(padding_mode)
    strides = int_tuple(stride, 2, "stride", 1)
    pads = resolve_padding(explicit_padding(padding, 2), (height, width), k.shape, strides,
                           (1, 1))
    if height and width:
        output_size((height, width), k.shape, strides, (1, 1), pads)

    def depthwise(taps: np.ndarray, axis_pads, axis_strides, operand: Any) -> Any:
        weight = np.broadcast_to(taps, (channels, 1, *taps.shape))
        return conv2d(operand, weight, None, axis_strides, axis_pads, 1, channels,
                      padding_mode=padding_mode, data_format="channels_last", flip=flip,
                      backend=backend)

    compute = result_dtype(x.dtype, "image")
    be = get_backend(backend)
    # An integer result on a device backend: the float result stays on the device
    # and is converted there (only the small integer result is read back).
    on_device = (out_dtype is not None and out_dtype.kind in "iu"
                 and hasattr(be, "saturate") and has_device_memory(be)
                 and not hasattr(x, "__dask_graph__"))
    host_in = not is_device_array(x)
    factors = None
    # Where two 1-D passes pay off is the backend's to say (the Backend protocol's
    # ``separable_min_taps``); a backend that does not say runs one pass.
    threshold = getattr(be, "separable_min_taps", None)
    if threshold is not None and k.size >= threshold and compute.itemsize >= 4:
        # float16 results keep the one-pass path: two passes would round twice.
        factors = rank1_factors(k, compute)

    steps = _pass_list(k, factors, compute, strides, pads)

    def passes(operand: Any) -> Any:
        y = operand
        for taps, axis_strides, axis_pads in steps:
            y = depthwise(taps, axis_pads, axis_strides, y)
        if grey:
            y = y.reshape(y.shape[0], y.shape[1])
        if out_dtype is None:
            return y
        return _saturated(y, out_dtype, be, on_device, host_in)

    fused = getattr(be, "conv_forward_saturated", None)
    if on_device and host_in and fused is not None:
        y = _fused_passes(fused, x, steps, compute, out_dtype, channels, padding_mode, flip)
        if y is not None:
            return y.reshape(y.shape[0], y.shape[1]) if grey else y
    if on_device and host_in:
        host = np.ascontiguousarray(x)
        view = getattr(be, "host_view", None)  # the host memory itself, where shared
        if view is None:
            return passes(be.to_device(host))
        with view(host) as device_x:
            return passes(device_x)
    return passes(x)


def _pass_list(k: np.ndarray, factors: Any, compute: np.dtype, strides: tuple[int, int],
               pads: Any) -> list[tuple[np.ndarray, tuple[int, int], Any]]:
    """``(taps, strides, padding)`` of each pass: the kernel in one, or its ``(column,
    row)`` factors as a pass along H and then one along W."""
    if factors is None:
        return [(k, strides, pads)]
    column, row = factors
    return [(column.astype(compute).reshape(-1, 1), (strides[0], 1), (pads[0], (0, 0))),
            (row.astype(compute).reshape(1, -1), (1, strides[1]), ((0, 0), pads[1]))]


def _fused_passes(fused: Any, x: np.ndarray, passes: list[tuple[Any, ...]],
                  compute: np.dtype, out_dtype: np.dtype, channels: int, padding_mode: str,
                  flip: bool) -> np.ndarray | None:
    """A host image filtered by the backend's ``conv_forward_saturated``: the kernel
    reads the image in its own dtype and the last of ``passes`` (:func:`_pass_list`)
    stores the integer result itself, the others float. None where the backend
    cannot (the caller runs the float pipeline)."""
    y = x
    for i, (taps, axis_strides, axis_pads) in enumerate(passes):
        # The spec from a stand-in of the compute dtype: the image is read as it is.
        stand_in = np.broadcast_to(np.zeros((), compute), y.shape)
        call = normalize_conv(2, stand_in, np.broadcast_to(taps, (channels, 1, *taps.shape)),
                              None, axis_strides, axis_pads, 1, channels, padding_mode,
                              "channels_last", flip)
        last = i == len(passes) - 1
        y = fused(y[None] if call.unbatched else y, call.weight, None, call.spec,
                  out_dtype if last else compute)
        if y is None:
            return None
        y = y[0] if call.unbatched else y
    return y


def _as_channels_last(x: Any) -> tuple[Any, tuple[int, int], int]:
    """``(image as (H, W, C) or (N, H, W, C), (H, W), C)``; ShapeError for other ranks
    and for images without channels."""
    if x.ndim not in (2, 3, 4):
        raise ShapeError(f"image has shape {tuple(x.shape)}; expected (H, W), (H, W, C) or "
                         "a batch (N, H, W, C)")
    height, width = x.shape[-3:-1] if x.ndim == 4 else x.shape[:2]
    channels = 1 if x.ndim == 2 else x.shape[-1]
    if channels == 0:
        raise ShapeError(f"image has shape {tuple(x.shape)} with 0 channels; expected >= 1")
    if x.ndim == 2:
        x = x.reshape(height, width, 1)
    return x, (height, width), channels


def _saturated(y: Any, out_dtype: np.dtype, be: Any, on_device: bool, host_in: bool) -> Any:
    """The float result ``y`` converted to the integer ``out_dtype`` where it lives: on
    the device (read back for host inputs), lazily for dask, else on the host."""
    if on_device:
        y = be.saturate(y, out_dtype)
        return to_host(y) if host_in else y
    if hasattr(y, "__dask_graph__"):
        return y.map_blocks(saturate_host, out_dtype, dtype=out_dtype)
    if is_device_array(y):
        host = saturate_host(to_host(y), out_dtype)
        return be.to_device(host) if has_device_memory(be) else host
    return saturate_host(np.asarray(y), out_dtype)
