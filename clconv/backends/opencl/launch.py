"""Launch plumbing shared by the forward paths (and the backward kernels).

Operand descriptions, host buffers (zero-copy on unified-memory CPU devices)
and reading results back, build defines per dtype, the locked enqueue with
declared scalar types, work-group fitting, and the bounded memo of launch
plans (:func:`memoised`), which names programs by :class:`ProgramRef` so the
program cache's own LRU bound still holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..._spec import ConvSpec
from ...errors import ArgumentError
from .context import DeviceContext
from .limits import Limits

# numpy.pad mode -> BORDER macro value of kernels_cl/common.h.
BORDER_CODES = {"constant": 0, "edge": 1, "wrap": 2, "reflect": 3, "symmetric": 4}


# Result dtype -> ELEM_KIND macro value.
ELEM_KINDS = {"float32": 0, "float64": 1, "float16": 2}

# Storage dtype of an operand -> OpenCL C element type.
CL_TYPES = {
    "bool": "uchar", "int8": "char", "uint8": "uchar", "int16": "short", "uint16": "ushort",
    "int32": "int", "uint32": "uint", "int64": "long", "uint64": "ulong",
    "float16": "half", "float32": "float", "float64": "double",
}

_T = TypeVar("_T")

# Launch plans (programs, sizes, configs) keyed by everything they depend on.
_plans: dict[tuple, Any] = {}

MAX_LAUNCH_PLANS = 1024


def memoised(key: tuple, build: Callable[[], _T]) -> _T:
    """``build()``, once per ``key``: the key must name everything the result depends on.

    Planning a launch (configs, build defines, which program, global sizes) is
    a pure function of the problem, the limits and the operands' strides but
    costs tens of microseconds of Python, as much as a small layer's kernel
    waits for; calls of the same problem reuse it. Plans name programs by
    :class:`ProgramRef`, never hold built ones: the program cache's LRU bound
    stays the only owner.
    """
    hit = _plans.get(key)
    if hit is None:
        if len(_plans) >= MAX_LAUNCH_PLANS:
            _plans.clear()
        hit = _plans[key] = build()
    return hit


def forget_plans() -> None:
    """Drop every memoised plan (rebuilt on next use): for code that changes what
    plans are computed from beyond their keys, such as a test patching a path."""
    _plans.clear()


@dataclass(frozen=True)
class ProgramRef:
    """A program by name: its ``.cl`` file and build defines (items sorted by name)."""

    filename: str
    defines: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, filename: str, defines: dict[str, Any]) -> ProgramRef:
        return cls(filename, tuple(sorted(defines.items())))

    def get(self, dctx: DeviceContext) -> Any:
        """The built program (from the program cache; built if it was evicted)."""
        return dctx.program(self.filename, self.defines)


@dataclass(frozen=True)
class Operand:
    """A device buffer seen as an array: element offset and element strides per axis."""

    buffer: Any
    offset: int
    strides: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: np.dtype

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

    @property
    def cl_type(self) -> str:
        return CL_TYPES[self.dtype.name]


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def acc_dtype(spec: ConvSpec) -> np.dtype:
    """The accumulator dtype: float64 for float64 results, else float32."""
    return _F64 if spec.dtype == "float64" else _F32


def spatial3(values: tuple[int, ...], fill: int) -> tuple[int, ...]:
    """A spatial tuple as (D, H, W), missing leading axes set to ``fill``."""
    return (fill,) * (3 - len(values)) + tuple(values)


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of ``shape``."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def layout_strides(strides: tuple[int, ...], spec: ConvSpec) -> tuple[int, ...]:
    """``(n, c, d, h, w)`` element strides of an array in the spec's layout."""
    if spec.channels_last:
        sn, sc, sp = strides[0], strides[-1], strides[1:-1]
    else:
        sn, sc, sp = strides[0], strides[1], strides[2:]
    return (sn, sc, *spatial3(tuple(sp), 0))


def type_defines(spec: ConvSpec, operand_dtype: np.dtype, prefix: str) -> dict[str, Any]:
    """Macros for the element kind and the storage type of one operand."""
    cl_type = CL_TYPES[operand_dtype.name]
    defines: dict[str, Any] = {"ELEM_KIND": ELEM_KINDS[spec.dtype], f"{prefix}_T": cl_type,
                               f"{prefix}_HALF": int(cl_type == "half")}
    if spec.dtype == "float64" or cl_type == "double":
        defines["NEED_FP64"] = 1
    return defines


def enqueue(built: Any, name: str, queue: Any, global_size: tuple[int, ...],
            local_size: tuple[int, ...], *args: Any) -> Any:
    """Set arguments and enqueue under the kernel's lock (kernel objects are shared).

    Scalar arguments are NumPy scalars; their dtypes are declared to pyopencl
    once per kernel object (``set_scalar_arg_dtypes``), which packs them with
    ``struct``: measured on PoCL, ~15 us per scalar without the declaration
    (0.6 ms of a 40-argument launch), under 1 us for all with it.
    """
    import pyopencl as cl

    kernel, lock = built.kernel(name)
    # The Python types of the arguments identify their scalar dtypes; comparing
    # them (one C-level map) is cheaper than building the dtype list per call.
    types = tuple(map(type, args))
    with lock:
        if getattr(kernel, "_clconv_types", None) != types:
            dtypes = tuple(np.dtype(t) if issubclass(t, np.generic) else None for t in types)
            if getattr(kernel, "_clconv_dtypes", None) != dtypes:
                kernel.set_scalar_arg_dtypes(list(dtypes))
                kernel._clconv_dtypes = dtypes
            kernel._clconv_types = types
        kernel.set_args(*args)
        return cl.enqueue_nd_range_kernel(queue, kernel, global_size, local_size)


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def host_unified(dctx: DeviceContext) -> bool:
    """True for CPU devices that share host memory (PoCL): host arrays are used in place.

    There a buffer created with ``USE_HOST_PTR`` is the NumPy array itself
    (measured on PoCL: mapping it returns the same pointer, even unaligned),
    which saves the upload and download copies (a 24 MB memcpy took ~10 ms).
    """
    cached = getattr(dctx, "_clconv_host_unified", None)
    if cached is None:
        import pyopencl as cl

        dev = dctx.device
        cached = bool(dev.type & cl.device_type.CPU) and bool(
            getattr(dev, "host_unified_memory", False))
        dctx._clconv_host_unified = cached
    return cached


# Below this many bytes a host array is copied rather than used in place: a
# blocking copy costs one synchronisation (~45 us on PoCL), a map/unmap two
# (~75 us), and the copy itself is negligible.
ZERO_COPY_MIN = 256 * 1024


def host_buffer(dctx: DeviceContext, queue: Any, array: np.ndarray, allocate: Any,
                writable: bool = False) -> Any:
    """A device buffer holding a C-contiguous host ``array``.

    On unified-memory CPU devices, arrays of at least :data:`ZERO_COPY_MIN`
    bytes are used in place (``USE_HOST_PTR``, no copy; results written there
    must be mapped before the host reads them, see :func:`read_back`; the
    kernels must not assume more alignment than the element size, except for
    packed weights, which :func:`aligned_empty` allocates). Small inputs are
    copied when the buffer is created (``COPY_HOST_PTR``: no queue command,
    ~1 us); larger ones go to a pooled buffer by a non-blocking upload
    (pyopencl keeps ``array`` alive until the copy is done).
    """
    import pyopencl as cl

    if (host_unified(dctx) and array.nbytes >= ZERO_COPY_MIN and array.flags.writeable):
        flags = cl.mem_flags.USE_HOST_PTR | (
            cl.mem_flags.READ_WRITE if writable else cl.mem_flags.READ_ONLY)
        return cl.Buffer(dctx.context, flags, hostbuf=array)
    if not writable and 0 < array.nbytes < ZERO_COPY_MIN:
        return cl.Buffer(dctx.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR,
                         hostbuf=array)
    buf = allocate(array.nbytes)
    if array.nbytes and not writable:
        cl.enqueue_copy(queue, buf, array, is_blocking=False)
    return buf


def host_operand(dctx: DeviceContext, queue: Any, array: np.ndarray, allocate: Any,
                 writable: bool = False) -> Operand:
    """An :class:`Operand` for a C-contiguous host array (see :func:`host_buffer`)."""
    size = array.dtype.itemsize
    return Operand(host_buffer(dctx, queue, array, allocate, writable), 0,
                   tuple(s // size for s in array.strides), tuple(array.shape), array.dtype)


def read_back(queue: Any, buffer: Any, out: np.ndarray) -> None:
    """Make the device's writes to ``buffer`` visible in the host array ``out``.

    A ``USE_HOST_PTR`` buffer of ``out`` itself is mapped and unmapped (no copy
    on unified memory); any other buffer is copied into ``out``.
    """
    import pyopencl as cl

    if not out.nbytes:
        return
    if buffer.flags & cl.mem_flags.USE_HOST_PTR:
        mapped, _ = cl.enqueue_map_buffer(queue, buffer, cl.map_flags.READ, 0, out.shape,
                                          out.dtype, is_blocking=True)
        if mapped.ctypes.data != out.ctypes.data:  # a driver that mapped a copy
            out[...] = mapped
        # The unmap is only enqueued: a read map writes nothing back, and
        # waiting for it would cost a second synchronisation.
        mapped.base.release(queue)
    else:
        cl.enqueue_copy(queue, out, buffer, is_blocking=True)


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


def fast_dtype(spec: ConvSpec) -> bool:
    """Result dtypes of the fast kernels: float32/float16 (float accumulation)
    and float64 (double; the backend refuses it on devices without fp64)."""
    return spec.dtype in ("float32", "float16", "float64")


def work_group(items: int, limit: int, wanted: int) -> int:
    """The largest power of two <= ``wanted`` that fits ``items`` and ``limit``."""
    wg = 1
    while wg * 2 <= min(wanted, limit) and wg * 2 <= max(items, 1):
        wg *= 2
    return wg


def gpu_group(limits: Limits, x_items: int, wide: int) -> tuple[int, int]:
    """A work-group of ``limits.group_items`` items for GPU-like devices.

    Up to ``wide`` items along dimension 0 (fewer when only ``x_items``
    exist there), the rest along dimension 1.
    """
    items = limits.group_items
    wg_x = work_group(x_items, items, wide)
    return wg_x, max(items // wg_x, 1)


def fitted_program(dctx: DeviceContext, filename: str, kernel: str, defines: dict[str, Any],
                   wg_x: int, wg_y: int, limit: int) -> tuple[ProgramRef, int, int]:
    """``(program, wg_x, wg_y)``: ``filename`` built with the largest work-group,
    starting from ``wg_x`` x ``wg_y`` and halving (``wg_y`` first), that both
    ``limit`` and the built ``kernel`` allow (a kernel may allow less than the
    device maximum: registers on GPUs)."""
    while True:
        ref = ProgramRef.of(filename, {**defines, "WG_X": wg_x, "WG_Y": wg_y})
        prg = ref.get(dctx)
        if wg_x * wg_y <= min(limit, prg.max_work_group(kernel, dctx.device)) or (
                wg_x * wg_y == 1):
            return ref, wg_x, wg_y
        if wg_y > 1:
            wg_y //= 2
        else:
            wg_x //= 2


def with_overrides(path: Any, cfg: Any) -> Any:
    """``cfg`` (a path's config dataclass) with the path instance's tuned parameters."""
    overrides = path.overrides
    if not overrides:
        return cfg
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items()
                                       if k in cfg.__dataclass_fields__})
