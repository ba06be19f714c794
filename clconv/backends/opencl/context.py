"""One OpenCL context, queue and memory pool per device per process.

Created lazily on first use and shared by every backend object that selects
the same device (``opencl`` and ``opencl:0:0`` may be the same device).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any

from .devices import DeviceInfo, Found
from .program import BuiltProgram, get_program

_contexts: dict[tuple[int, int], DeviceContext] = {}
_lock = threading.Lock()


class DeviceContext:
    """The per-device OpenCL state: context, in-order queue, pooled allocator."""

    def __init__(self, found: Found) -> None:
        import pyopencl as cl
        import pyopencl.tools as cl_tools

        self.info: DeviceInfo = found.info
        self.device = found.device
        self.context = found.context  # the one the health probe ran in
        self.queue = cl.CommandQueue(self.context, self.device)
        self._pool = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(self.queue))
        self._pool_lock = threading.Lock()

    def allocate(self, nbytes: int) -> Any:
        """A pooled buffer of ``nbytes`` (for arrays used on :attr:`queue` only)."""
        with self._pool_lock:
            return self._pool.allocate(max(int(nbytes), 1))

    def buffer(self, nbytes: int) -> Any:
        """A plain (unpooled) buffer of ``nbytes`` that remembers being released.

        Used for uploads and for results on a caller's own queue: a buffer the
        caller released must be refused, and querying a released handle can
        crash the driver, so the flag is the only safe check.
        """
        import pyopencl as cl

        return _tracked_buffer_class()(self.context, cl.mem_flags.READ_WRITE,
                                       size=max(int(nbytes), 1))

    def memory_stats(self) -> dict[str, int]:
        """The memory pool's counters: live buffers and cached (held) ones.

        ``active_blocks`` / ``active_bytes``: pooled buffers in use right now
        (back to their earlier value once every result and temporary of a call
        is released); ``held_blocks`` / ``held_bytes``: freed buffers the pool
        keeps for reuse (returned to the driver by :meth:`free_pool`).
        Buffers of device-array calls on a caller's own queue are not pooled
        and not counted.
        """
        with self._pool_lock:
            pool = self._pool
            return {"active_blocks": int(pool.active_blocks),
                    "active_bytes": int(pool.active_bytes),
                    "held_blocks": int(pool.held_blocks),
                    "held_bytes": int(pool.managed_bytes) - int(pool.active_bytes)}

    def free_pool(self) -> None:
        """Give cached pool buffers back to the driver."""
        with self._pool_lock:
            self._pool.free_held()

    def program(self, filename: str, defines: Mapping[str, Any] | tuple[tuple[str, Any], ...],
                extra_options: tuple[str, ...] = ()) -> BuiltProgram:
        """``filename`` built for this device with ``defines`` (cached; a mapping or
        its items sorted by name)."""
        return get_program(self.context, self.device, filename, defines, extra_options)


@functools.cache
def _tracked_buffer_class() -> type:
    import pyopencl as cl

    class TrackedBuffer(cl.Buffer):
        """A ``pyopencl.Buffer`` whose :meth:`release` leaves ``released = True``."""

        released = False

        def release(self) -> None:
            self.released = True
            super().release()

    return TrackedBuffer


def is_released(buffer: Any) -> bool:
    """True for a :meth:`DeviceContext.buffer` the caller released."""
    return bool(getattr(buffer, "released", False))


def device_context(found: Found) -> DeviceContext:
    """The process-wide :class:`DeviceContext` of a working device."""
    with _lock:
        ctx = _contexts.get((found.p, found.d))
        if ctx is None:
            ctx = DeviceContext(found)
            _contexts[(found.p, found.d)] = ctx
        return ctx
