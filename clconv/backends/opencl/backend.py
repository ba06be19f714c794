"""The OpenCL backend object: operands in, kernels launched, results out.

Host operands (NumPy) are uploaded once per call and the result comes back
as NumPy; a device input (``pyopencl.array.Array``) gives a device result on
the input's own queue with no host round trip. Host inputs whose buffers
would not fit the device are split into pieces (see :mod:`.tiling`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..._normalize import as_operand, is_device_array
from ..._spec import ConvSpec
from ...errors import AllocationError, ArgumentError, BackendUnavailable
from . import tunecache
from .context import DeviceContext, is_released
from .conv import PATH_ENV, TUNING, choose_path
from .devices import check_not_forked
from .launch import Operand, host_operand, mark_complete, memoised, read_back
from .limits import Limits, current_limits
from .tiling import plan_pieces, take_piece


class OpenCLBackend:
    """The :class:`clconv.Backend` protocol on one OpenCL device."""

    def __init__(self, name: str, dctx: DeviceContext) -> None:
        self.name = name
        self.dctx = dctx

    def __repr__(self) -> str:
        info = self.dctx.info
        return f"<clconv OpenCLBackend {self.name}: {info.name} ({info.platform})>"

    @property
    def queue(self) -> Any:
        """The backend's own command queue (host inputs run here)."""
        return self.dctx.queue

    @property
    def context(self) -> Any:
        return self.dctx.context

    def stats(self) -> dict[str, int]:
        """Live and cached device buffers (:meth:`DeviceContext.memory_stats`) and the
        program cache's ``cache_size`` / ``cache_max_size`` / ``builds``."""
        from .program import cache_info

        info = cache_info()
        return {**self.dctx.memory_stats(), "cache_size": info["size"],
                "cache_max_size": info["max_size"], "builds": info["builds"]}

    # ------------------------------------------------------------ helpers

    def to_device(self, array: Any) -> Any:
        """Upload a host array to this backend's queue (device arrays on it pass through)."""
        import pyopencl.array as cla

        check_not_forked()
        if is_device_array(array):
            self._check_device_array(array, "array")
            return array
        host = np.ascontiguousarray(as_operand(array, "array"))  # native byte order
        return cla.to_device(self.queue, host, allocator=self.dctx.buffer)

    def _check_device_array(self, array: Any, name: str) -> None:
        if is_released(array.base_data):
            raise ArgumentError(
                f"{name} is a device array whose buffer was released; expected a live array "
                "(upload the data again with clconv.to_device)")
        if array.context != self.context:
            raise ArgumentError(
                f"{name} is a pyopencl array from another OpenCL context; expected an array "
                f"created on backend {self.name!r}'s context (use clconv.to_device(x, "
                f"backend={self.name!r}) or get_backend({self.name!r}).queue)")
        if array.queue is not None and array.queue.device != self.dctx.device:
            raise ArgumentError(
                f"{name} lives on device {array.queue.device.name.strip()!r}; backend "
                f"{self.name!r} runs on {self.dctx.info.name!r}")

    def _check_dtype(self, spec: ConvSpec) -> None:
        if spec.dtype == "float64" and not self.dctx.info.fp64:
            raise BackendUnavailable(
                f"backend {self.name!r}: device {self.dctx.info.name!r} has no cl_khr_fp64, so "
                "it cannot compute float64; use float32 input or the 'numpy' backend")

    # ------------------------------------------------------------ forward

    def conv_forward(self, x: Any, weight: Any, bias: Any, spec: ConvSpec) -> Any:
        """The convolution (cross-correlation unless ``spec.flip``) plus bias."""
        check_not_forked()
        self._check_dtype(spec)
        on_device = is_device_array(x)
        for name, operand in (("input", x), ("weight", weight), ("bias", bias)):
            if is_device_array(operand):
                self._check_device_array(operand, name)
        if on_device:
            return self._forward_device(x, weight, bias, spec)
        return self._forward_host(np.asarray(x), weight, bias, spec)

    def _plan(self, spec: ConvSpec, limits: Limits) -> tuple[Any, list]:
        """The forward path for ``spec`` and the pieces it runs in.

        Both depend only on the problem, the limits, a forced path and the
        tune cache, so they are memoised (about 25 us of Python per call for a
        1x1 layer, a tenth of the whole host side) with the forced path and
        the tune cache's identity in the key. Candidates being tuned bypass it.
        """
        if TUNING.get() is not None:
            return self._fresh_plan(spec, limits)
        table = tunecache.current_table()
        key = ("forward", self.dctx, spec, limits, os.environ.get(PATH_ENV, ""), id(table))
        hit = memoised(key, lambda: (table, *self._fresh_plan(spec, limits)))
        if hit[0] is not table:  # an id reused by a newer table: plan afresh
            return self._fresh_plan(spec, limits)
        return hit[1], hit[2]

    def _fresh_plan(self, spec: ConvSpec, limits: Limits) -> tuple[Any, list]:
        path = choose_path(spec, self.dctx, limits)
        return path, plan_pieces(spec, limits, weight_bytes=path.packed_bytes(spec, limits))

    def _empty(self, spec: ConvSpec) -> bool:
        return spec.batch == 0 or spec.out_channels == 0

    def _forward_device(self, x: Any, weight: Any, bias: Any, spec: ConvSpec) -> Any:
        import pyopencl.array as cla

        queue = x.queue if x.queue is not None else self.queue
        own_queue = queue == self.queue
        # Pooled buffers are recycled in queue order, which holds only on our queue.
        allocate = self.dctx.allocate if own_queue else self.dctx.buffer
        if self._empty(spec):
            return cla.zeros(queue, spec.output_shape, np.dtype(spec.dtype), allocator=allocate)
        limits = current_limits(self.dctx.info)
        out_bytes = math.prod(spec.output_shape) * np.dtype(spec.dtype).itemsize
        if out_bytes > limits.max_alloc:
            raise AllocationError(
                f"the result {spec.output_shape} ({out_bytes} bytes) of a device-array input "
                f"exceeds device {self.dctx.info.name!r}'s largest buffer "
                f"({limits.max_alloc} bytes); pass a host array to have it tiled")
        with _driver_errors(spec, self.dctx.info.name):
            path = choose_path(spec, self.dctx, limits)
            state = self._prepare(path, queue, weight, bias, spec, limits, allocate)
            y = cla.empty(queue, spec.output_shape, np.dtype(spec.dtype), allocator=allocate)
            path.launch(self.dctx, queue, state, Operand.of(x), Operand.of(y), spec, limits)
            mark_complete(queue, y)
        return y

    def _forward_host(self, x: np.ndarray, weight: Any, bias: Any, spec: ConvSpec) -> Any:
        import pyopencl.array as cla

        if self._empty(spec):
            return np.zeros(spec.output_shape, dtype=spec.dtype)
        limits = current_limits(self.dctx.info)
        queue = self.queue
        allocate = self.dctx.allocate
        with _driver_errors(spec, self.dctx.info.name):
            y = np.empty(spec.output_shape, dtype=spec.dtype)
            path, pieces = self._plan(spec, limits)
            state = self._prepare(path, queue, weight, bias, spec, limits, allocate)
            for piece in pieces:
                x_piece = np.ascontiguousarray(take_piece(x, spec, piece))
                y_piece = y[piece.out_index]
                if y_piece.flags.c_contiguous:
                    # Straight into the result: no temporary, no second copy
                    # (zero-copy on unified-memory CPU devices, see host_buffer).
                    x_op = host_operand(self.dctx, queue, x_piece, allocate)
                    y_op = host_operand(self.dctx, queue, y_piece, allocate, writable=True)
                    path.launch(self.dctx, queue, state, x_op, y_op, piece.spec, limits)
                    read_back(queue, y_op.buffer, y_piece)
                    continue
                x_dev = cla.to_device(queue, x_piece, allocator=allocate)
                y_dev = cla.empty(queue, piece.spec.output_shape, np.dtype(spec.dtype),
                                  allocator=allocate)
                path.launch(self.dctx, queue, state, Operand.of(x_dev), Operand.of(y_dev),
                            piece.spec, limits)
                y[piece.out_index] = y_dev.get(queue)
        return y

    def _prepare(self, path: Any, queue: Any, weight: Any, bias: Any, spec: ConvSpec,
                 limits: Any, allocate: Any) -> Any:

        # Host weights are packed by NumPy and uploaded once (pack_operands);
        # device weights are packed on the device.
        weight_op = Operand.of(weight) if is_device_array(weight) else np.asarray(weight)
        bias_op = None
        if bias is not None:
            bias_op = Operand.of(bias) if is_device_array(bias) else np.asarray(bias)
        state = path.prepare(self.dctx, queue, weight_op, bias_op, spec, limits, allocate)
        return state

    def conv_backward(self, x: Any, weight: Any, grad_output: Any, spec: ConvSpec,
                      ) -> tuple[Any, Any, Any]:
        """Gradients computed by the kernels of kernels_cl/conv_backward.cl (see .backward).

        Host operands give NumPy results; a device input gives device results
        on its own queue.
        """
        from .backward import run_backward

        check_not_forked()
        self._check_dtype(spec)
        for name, operand in (("input", x), ("weight", weight), ("grad_output", grad_output)):
            if is_device_array(operand):
                self._check_device_array(operand, name)
        return run_backward(self, x, weight, grad_output, spec)

    def saturate(self, y: Any, dtype: Any) -> Any:
        """A C-contiguous device array ``y`` converted to integer ``dtype`` on the device:
        rounded to nearest (ties to even), clamped into range, NaN to 0
        (``kernels_cl/cast.cl``)."""
        import pyopencl.array as cla

        from .launch import CL_TYPES, enqueue, round_up

        check_not_forked()
        self._check_device_array(y, "array")
        dtype = np.dtype(dtype)
        queue = y.queue if y.queue is not None else self.queue
        allocate = self.dctx.allocate if queue == self.queue else self.dctx.buffer
        out = cla.empty(queue, y.shape, dtype, allocator=allocate)
        count = int(y.size)
        if count:
            wg = min(64, current_limits(self.dctx.info).max_work_group)
            defines = {"SRC_T": CL_TYPES[y.dtype.name], "SRC_HALF": int(y.dtype == np.float16),
                       "DST_T": CL_TYPES[dtype.name], "WG": wg,
                       "NEED_FP64": int(y.dtype == np.float64)}
            with _driver_errors(None, self.dctx.info.name):
                enqueue(self.dctx.program("cast.cl", defines), "saturate", queue,
                        (round_up(count, wg),), (wg,), y.base_data,
                        np.int64(y.offset // y.dtype.itemsize), out.data, np.int64(count))
                mark_complete(queue, out)
        return out

    def conv_transpose(self, grad_output: Any, weight: Any, bias: Any, spec: ConvSpec) -> Any:
        """The transposed convolution: ``spec``'s input gradient for ``grad_output`` (the
        ``grad_input`` kernel of conv_backward.cl alone), plus ``bias`` per input channel.
        A device ``grad_output`` gives a device result on its queue."""
        from .backward import run_backward

        check_not_forked()
        self._check_dtype(spec)
        for name, operand in (("input", grad_output), ("weight", weight), ("bias", bias)):
            if is_device_array(operand):
                self._check_device_array(operand, name)
        return run_backward(self, None, weight, grad_output, spec, bias)[0]


class _driver_errors:
    """Turn the driver's errors during a call into clconv's documented classes.

    Out-of-memory errors (the driver's, or the host's own ``MemoryError``)
    become :class:`clconv.AllocationError`; any other
    pyopencl error (a device lost or reset mid-run, a driver failure) becomes
    :class:`clconv.BackendUnavailable` naming the device, with the driver's
    error chained as the cause.
    """

    def __init__(self, spec: ConvSpec | None, device: str) -> None:
        self.spec = spec
        self.device = device

    def __enter__(self) -> None:
        return None

    def _problem(self) -> str:
        s = self.spec
        if s is None:
            return "the conversion"
        return f"input {s.input_shape}, kernel {s.kernel_size}, output {s.output_shape}"

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        if isinstance(exc, MemoryError) and not isinstance(exc, AllocationError):
            # The host refused (a process memory limit below physical memory).
            raise AllocationError(f"host memory ran out for {self._problem()}: "
                                  f"{exc or 'MemoryError'}") from None
        import pyopencl as cl

        out_of_memory = isinstance(exc, cl.MemoryError) or (
            isinstance(exc, cl.Error) and getattr(exc, "code", None) in (
                cl.status_code.MEM_OBJECT_ALLOCATION_FAILURE, cl.status_code.OUT_OF_RESOURCES,
                cl.status_code.OUT_OF_HOST_MEMORY))
        if out_of_memory:
            raise AllocationError(
                f"the device ran out of memory for {self._problem()}: {exc}") from None
        if isinstance(exc, cl.Error):
            raise BackendUnavailable(
                f"OpenCL device {self.device!r} failed during the call ({exc}); the device may "
                "have been lost or reset: use another backend, or restart the process to "
                "reopen the device") from exc
        return False

