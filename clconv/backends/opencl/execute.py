"""Running plans: operands, transfers, scratch, enqueue, events and driver errors.

:func:`run` binds a :class:`.plan.Plan`'s named buffers (``x``, ``y``,
``w``, ``b`` and its scratch) and enqueues its steps on one queue; the
forward and backward passes and every path go through it. The transfer
helpers make host arrays device buffers (in place on unified-memory CPU
devices), read results back and give device results their events;
:class:`driver_errors` turns the driver's failures into clconv's documented
exception classes.
"""

from __future__ import annotations

import ctypes
import math
import mmap
from typing import Any, NamedTuple

import numpy as np

from ..._spec import ConvSpec
from ...errors import AllocationError, ArgumentError, BackendUnavailable
from .context import DeviceContext
from .plan import Plan

# Below this many bytes a host array is copied rather than used in place: a
# blocking copy costs one synchronisation, a map/unmap two, and the copy
# itself is negligible.
ZERO_COPY_MIN = 256 * 1024
# A read-only array this large is used in place, even unaligned (see
# host_operand): creating a buffer that copies it costs more from here on,
# while one over host memory costs the same at any size.
IN_PLACE_MIN = 16 * 1024


class Operand(NamedTuple):
    """A device buffer seen as an array: element offset and element strides per axis.

    ``mapped``: the buffer uses a host array's memory in place (``USE_HOST_PTR``),
    so the host sees the device's writes by mapping it (:func:`read_back`).
    A named tuple: a small call builds several, and a frozen dataclass costs
    three times as much to create.
    """

    buffer: Any
    offset: int
    strides: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    mapped: bool = False

    @classmethod
    def of(cls, array: Any) -> Operand:
        """Describe a ``pyopencl.array.Array`` (any strides, offset, dtype)."""
        size = array.dtype.itemsize
        if array.offset % size or any(s % size for s in array.strides):
            raise ArgumentError(
                f"device array with strides {array.strides} / offset {array.offset} bytes; "
                f"expected multiples of its itemsize {size}")
        return cls(array.base_data, array.offset // size,
                   tuple(s // size for s in array.strides), tuple(array.shape),
                   np.dtype(array.dtype))

    @classmethod
    def whole(cls, buffer: Any, shape: tuple[int, ...], dtype: Any) -> Operand:
        """A C-contiguous array of ``shape`` at the start of ``buffer``."""
        dtype = np.dtype(dtype)
        strides, step = [], 1
        for n in reversed(shape):
            strides.append(step)
            step *= n
        return cls(buffer, 0, tuple(reversed(strides)), tuple(shape), dtype)


def run(dctx: DeviceContext, queue: Any, plan: Plan, bound: dict[str, Any],
        allocate: Any) -> None:
    """Enqueue ``plan``'s steps on ``queue`` with its buffers bound.

    ``bound`` maps names to :class:`Operand` objects, raw buffers or ``None``;
    the plan's scratch buffers are allocated here (pyopencl keeps them alive
    until the kernels that use them are done).
    """
    if plan.scratch or plan.constants:
        bound = dict(bound)
        for s in plan.scratch:
            bound[s.name] = allocate(s.nbytes)
        for name, table in plan.constants:
            bound[name] = constant_buffer(dctx, table)
    for step in plan.steps:
        buffers, offsets = [], []
        for i, offset, name in step.slots:
            value = bound[name]
            operand = isinstance(value, Operand)
            if offset:
                offsets.append((i, value.offset if operand else 0))
            else:
                buffers.append((i, value.buffer if operand else value))
        dctx.program(step.program).kernel(step.kernel).enqueue(
            queue, step, tuple(buffers), tuple(offsets))


def constant_buffer(dctx: DeviceContext, table: np.ndarray) -> Any:
    """A read-only device copy of a plan's constant ``table``, made once per table.

    The entry holds ``table`` itself, so its ``id`` stays unique while the entry
    lives; a plan's tables are never written after the plan is built. Saves a
    buffer creation per call (the gemm path's group table runs on every
    transposed convolution).
    """
    import pyopencl as cl

    def build() -> tuple[np.ndarray, Any]:
        data = np.ascontiguousarray(table)
        if not data.nbytes:  # a buffer cannot be empty; no kernel reads this one
            return table, cl.Buffer(dctx.context, cl.mem_flags.READ_ONLY, size=1)
        return table, cl.Buffer(dctx.context, cl.mem_flags.READ_ONLY
                                | cl.mem_flags.COPY_HOST_PTR, hostbuf=data)

    return dctx.memo(("constant", id(table)), build)[1]


def host_buffer(dctx: DeviceContext, queue: Any, array: np.ndarray, allocate: Any,
                writable: bool = False, in_place: bool = False) -> Any:
    """A device buffer holding a C-contiguous host ``array``.

    ``in_place``: the caller keeps ``array`` alive until the kernels that use the
    buffer are done (it waits for them before returning). Only then, on
    unified-memory CPU devices, an array that starts on the device's
    ``zero_copy_align`` is used in place (``USE_HOST_PTR``, no copy): read-only
    ones from :data:`IN_PLACE_MIN` bytes, results from :data:`ZERO_COPY_MIN`
    (a result must be mapped before the host reads it, see :func:`read_back`).
    Otherwise small read-only arrays are copied when the buffer is created
    (``COPY_HOST_PTR``: no queue command) and any other goes to a pooled buffer
    by a non-blocking upload (pyopencl keeps ``array`` alive until the copy is
    done). Kernels must not assume more alignment than the element size,
    except for packed weights, which :func:`aligned_empty` allocates.
    """
    return _placed(dctx, queue, array, allocate, writable, in_place)[0]


def _placed(dctx: DeviceContext, queue: Any, array: np.ndarray, allocate: Any,
            writable: bool, in_place: bool) -> tuple[Any, bool]:
    """:func:`host_buffer`'s buffer, and whether it uses ``array``'s memory in place."""
    import pyopencl as cl

    minimum = ZERO_COPY_MIN if writable else IN_PLACE_MIN
    if (in_place and dctx.host_unified and array.nbytes >= minimum and array.flags.writeable
            and array.ctypes.data % dctx.zero_copy_align == 0):
        flags = cl.mem_flags.USE_HOST_PTR | (
            cl.mem_flags.READ_WRITE if writable else cl.mem_flags.READ_ONLY)
        return cl.Buffer(dctx.context, flags, hostbuf=array), True
    if not writable and 0 < array.nbytes < IN_PLACE_MIN:
        return cl.Buffer(dctx.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR,
                         hostbuf=array), False
    buf = allocate(array.nbytes)
    if array.nbytes and not writable:
        cl.enqueue_copy(queue, buf, array, is_blocking=False)
    return buf, False


def page_view(dctx: DeviceContext, array: np.ndarray) -> tuple[Any, int] | None:
    """Bytes from the ``zero_copy_align`` boundary at or before ``array``'s first
    byte to its last, and ``array``'s element offset in them; ``None`` when the
    device cannot use host memory in place or the boundary could lie on another
    page (which need not be mapped).

    A read-only operand need not be aligned itself: the kernels take an element
    offset, and the bytes before the array lie on the page of its first byte.
    The view keeps ``array`` alive as long as the buffer made from it.
    """
    align = dctx.zero_copy_align
    # The size first: reading the address (``ctypes``) costs most of a small call's check.
    if not dctx.host_unified or array.nbytes < IN_PLACE_MIN or align > mmap.PAGESIZE:
        return None
    start = array.ctypes.data
    skip = start % align
    if skip % array.dtype.itemsize:
        return None
    view = (ctypes.c_uint8 * (skip + array.nbytes)).from_address(start - skip)
    view.owner = array
    return view, skip // array.dtype.itemsize


def host_operand(dctx: DeviceContext, queue: Any, array: np.ndarray, allocate: Any,
                 writable: bool = False, in_place: bool = False) -> Operand:
    """An :class:`Operand` for a C-contiguous host ``array``: with ``in_place`` (see
    :func:`host_buffer`), read-only ones in place on unified memory wherever they
    start (see :func:`page_view`); others as :func:`host_buffer` places them."""
    import pyopencl as cl

    size = array.dtype.itemsize
    strides = tuple(s // size for s in array.strides)
    page = None if writable or not in_place else page_view(dctx, array)
    if page is not None:
        flags = cl.mem_flags.USE_HOST_PTR | cl.mem_flags.READ_ONLY
        return Operand(cl.Buffer(dctx.context, flags, hostbuf=page[0]), page[1], strides,
                       array.shape, array.dtype, True)
    buffer, mapped = _placed(dctx, queue, array, allocate, writable, in_place)
    return Operand(buffer, 0, strides, array.shape, array.dtype, mapped)


def upload(queue: Any, array: Any, allocate: Any) -> Any:
    """A device array with ``array``'s data (device arrays pass through), asynchronous:
    pyopencl keeps the host array alive until the copy is done."""
    import pyopencl.array as cla

    if isinstance(array, np.ndarray):
        return cla.to_device(queue, np.ascontiguousarray(array), allocator=allocate,
                             async_=True)
    return array


def read_back(queue: Any, operand: Operand, out: np.ndarray) -> None:
    """Make the device's writes to ``operand`` (from :func:`host_operand` for
    ``out``) visible in the host array ``out``.

    A buffer over ``out`` itself (``operand.mapped``) is mapped and unmapped
    (no copy on unified memory); any other buffer is copied into ``out``.
    """
    import pyopencl as cl

    if not out.nbytes:
        return
    if operand.mapped:
        mapped, _ = cl.enqueue_map_buffer(queue, operand.buffer, cl.map_flags.READ, 0,
                                          out.shape, out.dtype, is_blocking=True)
        if mapped.ctypes.data != out.ctypes.data:  # a driver that mapped a copy
            out[...] = mapped
        # The unmap is only enqueued: a read map writes nothing back, and
        # waiting for it would cost a second synchronisation.
        mapped.base.release(queue)
    else:
        cl.enqueue_copy(queue, out, operand.buffer, is_blocking=True)


def read_all(queue: Any, arrays: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """Device arrays as new host arrays: every read started, then one wait."""
    import pyopencl as cl

    results = tuple(np.empty(a.shape, a.dtype) for a in arrays)
    events = [cl.enqueue_copy(queue, r, a.data, is_blocking=False)
              for r, a in zip(results, arrays) if r.size]
    if events:
        cl.wait_for_events(events)
    return results


def mark_complete(queue: Any, *arrays: Any) -> None:
    """Give each device result the event of the work enqueued so far on ``queue``.

    A marker on the in-order queue completes after every command before it,
    so ``array.finish()`` waits for the whole computation, and pyopencl
    operations on other queues (which wait for ``array.events``) order after it.
    """
    import pyopencl as cl

    marker = cl.enqueue_marker(queue)
    for array in arrays:
        array.add_event(marker)


def aligned_empty(shape: tuple[int, ...], dtype: Any, align: int = 128) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    raw = np.empty(count * dtype.itemsize + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


class driver_errors:
    """Turn the driver's errors during a call into clconv's documented classes.

    Out-of-memory errors (the driver's, or the host's own ``MemoryError``)
    become :class:`clconv.AllocationError`; any other pyopencl error (a device
    lost or reset mid-run, a driver failure) becomes
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

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
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
