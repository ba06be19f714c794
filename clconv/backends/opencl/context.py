"""The per-device state: context, queue, memory pool, limits, and every cache.

One :class:`DeviceContext` per device per process, created on first use and
shared by every backend object that selects the device (``opencl`` and
``opencl:0:0`` may be the same one). It owns the only caches of the OpenCL
backend, each bounded: built programs (:class:`.build.ProgramCache`), plans
and path choices (:meth:`DeviceContext.memo`), and this device's entries of
the tune cache (:mod:`.tuning`). Nothing else in the package keeps state
between calls.

Two environment variables shape :meth:`DeviceContext.limits`, read at call
time:

* ``CLCONV_MAX_ALLOC`` (bytes; ``inf`` for none) lowers the largest single
  buffer, so tests can exercise tiling on small arrays.
* ``CLCONV_STRICT_LIMITS=1`` caps work-groups at :data:`STRICT_WORK_GROUP`
  items and local memory at :data:`STRICT_LOCAL_MEM` bytes, like a small GPU,
  and plans GPU-shaped work-groups (:attr:`Limits.group_items`), so that the
  kernels are launched as a GPU would run them.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..._env import setting
from ..._normalize import env_bytes
from ..._spec import HashedOnce
from .._base import DeviceInfo
from .build import BuiltProgram, ProgramCache, ProgramRef
from .device import Found
from .host_memory import keep_freed_memory

_T = TypeVar("_T")

STRICT_WORK_GROUP = 256
# Work-items per group that the paths plan on GPUs and accelerators: a compute
# unit runs a group's items in SIMD lanes (32-64 wide), so groups of one item
# would leave most lanes idle. CPU devices loop over a group's items, so
# there each path keeps its CPU shape.
GPU_GROUP_ITEMS = 64
STRICT_LOCAL_MEM = 32 * 1024
# Share of global memory one piece of work may use: leaves room for the
# caller's own arrays and the driver.
MEMORY_FRACTION = 0.5
# Plans and choices kept per device (the oldest dropped first).
MAX_MEMO = 1024


@dataclass(frozen=True)
class Limits(HashedOnce):
    """What one launch / one piece of work may use on a device."""

    __hash__ = HashedOnce.__hash__

    max_alloc: int
    memory_budget: int
    max_work_group: int
    local_mem: int
    strict: bool
    group_items: int = 1  # items per work-group the paths aim for (1: CPU shapes)
    vector_width: int = 1  # the device's native floats per vector (blocking choices)
    # Whether a block of output columns is best stored as one vector per filter
    # (the gemm path's VSTORE): Intel's CPU compiler turns the lane-by-lane
    # stores into a slow gather of scalars; PoCL's does not gain from it.
    vector_stores: bool = False
    # Whether the CPU runtime runs each work-group as one task on one thread
    # (Intel's): a task per work-item costs more than most paths' work-items
    # do, so the paths put neighbouring work-items (which read the same input
    # lines) in one group. PoCL's work-groups gain less from that.
    group_tasks: bool = False
    # Whether the compiler also vectorises kernels of one output per work-item
    # across work-items on a device of the "vector" style (Intel's CPU runtime).
    lanes_vectorised: bool = False


def strict_mode() -> bool:
    """True when ``CLCONV_STRICT_LIMITS`` asks for GPU-sized limits."""
    return os.environ.get("CLCONV_STRICT_LIMITS", "").strip().lower() in ("1", "true", "yes", "on")


def compute_limits(info: DeviceInfo) -> Limits:
    """``info``'s limits, lowered by ``CLCONV_MAX_ALLOC`` and strict mode."""
    max_alloc = info.max_alloc
    override = env_bytes("CLCONV_MAX_ALLOC")
    if override is not None:
        max_alloc = min(max_alloc, override)
    strict = strict_mode()
    wg = info.max_work_group_size or 1
    local = info.local_mem
    if strict:
        wg = min(wg, STRICT_WORK_GROUP)
        local = min(local, STRICT_LOCAL_MEM)
    group_items = min(GPU_GROUP_ITEMS, wg) if strict or info.type != "cpu" else 1
    intel_cpu = info.type == "cpu" and "intel" in info.platform.lower()
    return Limits(max_alloc=max_alloc, memory_budget=int(info.global_mem * MEMORY_FRACTION),
                  max_work_group=wg, local_mem=local, strict=strict, group_items=group_items,
                  vector_width=info.native_float_width, vector_stores=intel_cpu,
                  group_tasks=intel_cpu, lanes_vectorised=intel_cpu)


class DeviceContext:
    """The per-device OpenCL state and the owner of every cache of the backend."""

    def __init__(self, found: Found) -> None:
        import pyopencl as cl
        import pyopencl.tools as cl_tools

        self.info: DeviceInfo = found.info
        self.device = found.device
        self.context = found.context  # the one the health probe ran in
        self.queue = cl.CommandQueue(self.context, self.device)
        self.programs = ProgramCache(self.context, self.device)
        # Unified-memory CPU devices use host arrays in place (see execute.host_buffer).
        self.host_unified = bool(self.device.type & cl.device_type.CPU) and bool(
            getattr(self.device, "host_unified_memory", False))
        if self.host_unified:  # its kernels write fresh host results in place
            keep_freed_memory()
        # The alignment a host array needs to be used in place: Intel's CPU runtime
        # works on an unaligned USE_HOST_PTR array through a slow internal copy
        # (benchmarks/README.md), PoCL uses any array in place.
        self.zero_copy_align = 4096 if "intel" in self.info.platform.lower() else 1
        self.tune_key = "|".join((self.device.name.strip(), self.device.driver_version.strip()))
        self._pool = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(self.queue))
        self._pool_lock = threading.Lock()
        self._memo: OrderedDict[Hashable, Any] = OrderedDict()
        self._memo_lock = threading.Lock()
        self._limits: tuple[tuple[str | None, str | None], Limits] | None = None
        # Bumped when the tune cache changes, so that memoised entries and
        # choices of the older cache are never used again (see .tuning).
        self.tune_generation = 0

    # ------------------------------------------------------------ memory

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

    def allocator(self, queue: Any) -> Callable[[int], Any]:
        """How to allocate buffers used on ``queue``: pooled buffers are recycled in
        queue order, which holds only on this context's own queue."""
        return self.allocate if queue == self.queue else self.buffer

    def memory_stats(self) -> dict[str, int]:
        """The memory pool's counters: live buffers and cached (held) ones.

        ``active_blocks`` / ``active_bytes``: pooled buffers in use right now
        (back to their earlier value once every result and temporary of a call
        is released); ``held_blocks`` / ``held_bytes``: freed buffers the pool
        keeps for reuse. Buffers of device-array calls on a caller's own queue
        are not pooled and not counted.
        """
        with self._pool_lock:
            pool = self._pool
            return {"active_blocks": int(pool.active_blocks),
                    "active_bytes": int(pool.active_bytes),
                    "held_blocks": int(pool.held_blocks),
                    "held_bytes": int(pool.managed_bytes) - int(pool.active_bytes)}

    # ------------------------------------------------------------ caches

    def program(self, ref: ProgramRef) -> BuiltProgram:
        """The built program ``ref`` names (cached)."""
        return self.programs.get(ref)

    def limits(self) -> Limits:
        """This device's limits under the current environment (see the module doc)."""
        key = (setting("CLCONV_MAX_ALLOC"), setting("CLCONV_STRICT_LIMITS"))
        hit = self._limits
        if hit is None or hit[0] != key:
            hit = self._limits = (key, compute_limits(self.info))
        return hit[1]

    def memo(self, key: Hashable, build: Callable[[], _T]) -> _T:
        """``build()``, once per ``key`` (which must name everything the result depends on).

        Planning a call (path, configuration, build defines, sizes) is a pure
        function of the problem, the limits and the operands' layouts, but costs
        tens of microseconds of Python, as much as a small layer's kernel; calls
        of the same problem reuse it. Bounded: past :data:`MAX_MEMO` entries the
        oldest goes (a hit does not reorder: that would hash the key again on
        every call, and a plan rebuilt now and then costs little).
        """
        hit = self._memo.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        value = build()
        with self._memo_lock:
            self._memo[key] = value
            while len(self._memo) > MAX_MEMO:
                self._memo.popitem(last=False)
        return value

    def forget_tuned(self) -> None:
        """The tune cache changed: read it again, choose paths afresh."""
        with self._memo_lock:
            self.tune_generation += 1

    def forget(self) -> None:
        """Drop every plan, choice and built program (they are rebuilt on next use)."""
        with self._memo_lock:
            self._memo.clear()
        self.programs.clear()


_MISSING = object()


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


_contexts: dict[tuple[int, int], DeviceContext] = {}
_lock = threading.Lock()


def device_context(found: Found) -> DeviceContext:
    """The process-wide :class:`DeviceContext` of a working device."""
    with _lock:
        ctx = _contexts.get((found.p, found.d))
        if ctx is None:
            ctx = _contexts[(found.p, found.d)] = DeviceContext(found)
        return ctx


def live_contexts() -> list[DeviceContext]:
    """Every device context created in this process."""
    with _lock:
        return list(_contexts.values())
