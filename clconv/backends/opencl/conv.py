"""Forward convolution kernels: operand description, the path registry, the direct path.

A *path* is one way of computing a forward convolution on the device (one
set of kernels plus its launch planning). :data:`FORWARD_PATHS` lists them
best first; :func:`choose_path` takes the first whose ``supports`` accepts the
problem (``CLCONV_OPENCL_PATH`` can force one). The order is the heuristic:

=============  ==============================================================
``tiny``       <= 65536 multiply-adds: one launch of the direct kernel
``pointwise``  1x1, stride 1, no padding: conv_gemm.cl over flattened pixels
``gemm``       >= 4 filters per group: register-blocked implicit GEMM
               (16 filters x 6 columns per work-item), pad pre-pass
``separable``  rank-1 kernels of >= 121 taps, 1 filter per group, large outputs:
               a column pass and a row pass of conv_rows.cl (weights checked
               in ``prepare``; other weights run on ``rows``)
``rows``       1 filter per group, W stride 1 or 2: row-blocked float8 kernel
``direct``     everything else (strided one-filter groups, few filters per group, ...)
=============  ==============================================================

Every fast path can hand a piece to ``direct`` (same packed weights) when
its scratch does not fit. Every path computes float32, float16 (float
accumulation) and float64 (double, with narrower register blocks).

A path works in two steps so that tiled execution prepares weights once:
``prepare(...)`` packs weight and bias on the device, ``launch(...)`` runs
one piece (a batch slice or spatial tile) with the prepared operands.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from ..._spec import ConvSpec
from ...errors import ArgumentError
from .context import DeviceContext
from .limits import Limits
from .tunecache import tuned_choice

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
WG_PACK = 64

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


# Host weights of at least this many bytes are packed on the device (pack.cl)
# instead of by NumPy: 512x512x3x3 float32 (9.4 MB) took 1.2 ms to pack plus
# page faults on a fresh array per call in NumPy, 0.76 ms in pack.cl into a
# pooled buffer (PoCL, 2 threads); a GPU packs it faster still.
DEVICE_PACK_MIN = 1 << 20

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


def pack_host_weights(weight: np.ndarray, spec: ConvSpec, fb: int) -> np.ndarray:
    """The layout of ``pack.cl``'s ``pack_weights``, built on the host (one upload)."""
    acc = acc_dtype(spec)
    w = np.asarray(weight)
    if spec.dtype == "float16" and w.dtype != np.float16:
        w = w.astype(np.float16)  # the contract rounds weights to the input dtype
    if spec.flip:
        w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * spec.ndim]
    g, fg, cg = spec.groups, spec.out_per_group, spec.in_per_group
    nfb = -(-fg // fb)
    taps = spatial3(spec.kernel_size, 1)
    blocked = w.reshape(g, fg, cg, *taps)
    if fg != nfb * fb:  # zero filters complete the last block
        blocked = np.zeros((g, nfb * fb, cg, *taps), dtype=acc)
        blocked[:, :fg] = w.reshape(g, fg, cg, *taps)
    # Aligned: the kernels read FB filters as one aligned vector, and on
    # unified memory this array is the device buffer itself.
    out = aligned_empty((g, nfb, cg, *taps, fb), acc)
    out[...] = blocked.reshape(g, nfb, fb, cg, *taps).transpose(0, 1, 3, 4, 5, 6, 2)
    return out


def aligned_empty(shape: tuple[int, ...], dtype: Any, align: int = 128) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    raw = np.empty(count * dtype.itemsize + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def pack_operands(dctx: DeviceContext, queue: Any, weight: Any, bias: Any, spec: ConvSpec,
                  fb: int, allocate: Any) -> tuple[int, Any, Any]:
    """Pack weight (and bias) for the device: ``(nfb, packed weight, packed bias or None)``.

    The weight becomes ``[G][NFB][CG][KD][KH][KW][FB]`` in the accumulator type
    (flipped taps when the convolution flips, zero filters past ``FG``), the
    layout every forward kernel reads; the bias becomes a plain accumulator
    vector of ``F`` values. ``weight`` is an :class:`Operand` (packed on the
    device by pack.cl) or a host array of the spec's dtype (packed by NumPy
    and uploaded once, or used in place on unified memory; from
    :data:`DEVICE_PACK_MIN` bytes uploaded as it is and packed on the device);
    ``bias`` likewise an :class:`Operand`, a host array or ``None``.
    """
    acc = acc_dtype(spec)
    fg, g, cg = spec.out_per_group, spec.groups, spec.in_per_group
    nfb = -(-fg // fb)
    kd, kh, kw = spatial3(spec.kernel_size, 1)
    if isinstance(weight, np.ndarray) and weight.nbytes >= DEVICE_PACK_MIN:
        weight = host_operand(dctx, queue, np.ascontiguousarray(weight), allocate)
    if isinstance(weight, np.ndarray):
        if (fb == 1 and not spec.flip and weight.dtype == acc and weight.nbytes < ZERO_COPY_MIN
                and weight.flags.c_contiguous):
            # One filter per block: the packed layout is the weight's own; small
            # weights are copied when the buffer is created (no NumPy packing).
            packed = host_buffer(dctx, queue, weight, allocate)
        else:
            packed = host_buffer(dctx, queue, pack_host_weights(weight, spec, fb), allocate)
    else:
        slabs = g * nfb * cg * kd  # one work-item each: kh * kw * fb values
        packed = allocate(slabs * kh * kw * fb * acc.itemsize)
        ws = (weight.strides[0], weight.strides[1], *spatial3(weight.strides[2:], 0))
        prg = _pack_program(dctx, spec, weight.dtype, fb)
        enqueue(prg, "pack_weights", queue, (round_up(slabs, WG_PACK),), (WG_PACK,),
                weight.buffer, np.int64(weight.offset), *(np.int64(s) for s in ws),
                packed, np.int64(slabs), np.int32(g), np.int32(cg), np.int32(fg),
                np.int32(nfb), np.int32(kd), np.int32(kh), np.int32(kw),
                np.int32(int(spec.flip)))
    packed_bias = None
    if bias is not None:
        if isinstance(bias, Operand):
            packed_bias = allocate(spec.out_channels * acc.itemsize)
            prg = _pack_program(dctx, spec, bias.dtype, fb)
            enqueue(prg, "pack_vector", queue,
                    (round_up(spec.out_channels, WG_PACK),), (WG_PACK,),
                    bias.buffer, np.int64(bias.offset), np.int64(bias.strides[0]),
                    packed_bias, np.int64(spec.out_channels))
        else:  # host bias, already of the spec's dtype: exact in the accumulator type
            host = np.array(bias, dtype=acc)  # a private copy: the caller may reuse theirs
            packed_bias = host_buffer(dctx, queue, host, allocate)
    return nfb, packed, packed_bias


def _pack_program(dctx: DeviceContext, spec: ConvSpec, dtype: np.dtype, fb: int) -> Any:
    defines = type_defines(spec, dtype, "W")
    defines.update(FB=fb, WG_PACK=WG_PACK,
                   ROUND_HALF=int(spec.dtype == "float16" and dtype.name != "float16"))
    return dctx.program("pack.cl", defines)


class ForwardPath(Protocol):
    """One way of computing the forward convolution on a device.

    A path may set ``weight_dependent = True`` when whether it helps depends
    on the weights' values (it then checks them in ``prepare``).
    """

    name: str

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        """Whether this path handles ``spec`` on this device within ``limits``."""
        ...

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        """Device bytes of the prepared weight and bias."""
        ...

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        """Pack weight and bias (``Operand`` or ``None``) on the device; returns a state."""
        ...

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        """Compute ``y`` (the spec's output layout) from ``x`` for one piece."""
        ...


@dataclass(frozen=True)
class DirectConfig:
    """Blocking and work-group size of one direct-path build."""

    fb: int
    ob: int
    wg_x: int
    wg_y: int


class DirectPath:
    """The generic path: kernels_cl/conv_direct.cl, every feature, any device."""

    name = "direct"
    overrides: dict[str, int] = {}  # tuned tile parameters (see configured)

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        return True

    @staticmethod
    def config(spec: ConvSpec, limits: Limits) -> DirectConfig:
        fg = spec.out_per_group
        fb = 16 if fg >= 16 else 8 if fg >= 8 else 4 if fg >= 4 else 2 if fg >= 2 else 1
        if spec.dtype == "float64":
            fb = min(fb, 4)  # double4 fills one AVX2 register; wider vectors spill
        # Measured on PoCL/AVX2: about 8-12 independent vector accumulators per
        # work-item hide the multiply-add latency while fitting 16 registers;
        # 16 filters x 6 columns needs the fewest loads per multiply-add.
        # One-filter groups vectorise OB columns instead.
        ob = 6 if fb == 16 else 8
        if fb == 1:
            ob = 8 if spec.dtype == "float64" else 16
        rows = math.prod(spec.out_size[:-1])
        wg_x, wg_y = (8, 4) if rows > 1 else (32, 1)
        while wg_x * wg_y > limits.max_work_group:
            if wg_y > 1:
                wg_y //= 2
            else:
                wg_x //= 2
        return DirectConfig(fb, ob, wg_x, wg_y)

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        fb = with_overrides(self, self.config(spec, limits)).fb
        filters = spec.groups * -(-spec.out_per_group // fb) * fb
        return ((filters * spec.in_per_group * math.prod(spec.kernel_size) + spec.out_channels)
                * acc_dtype(spec).itemsize)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        cfg = with_overrides(self, self.config(spec, limits))
        return (cfg, *pack_operands(dctx, queue, weight, bias, spec, cfg.fb, allocate))

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        cfg, nfb, packed, packed_bias = state
        plan = memoised(("conv_direct", dctx, spec, cfg, nfb, x.dtype, x.offset, x.strides,
                         y.offset, y.strides),
                        lambda: self._plan(dctx, cfg, nfb, x, y, spec))
        prg, kernel, global_size, local_size, x_args, y_args, tail = plan
        enqueue(prg.get(dctx), kernel, queue, global_size, local_size, x.buffer, *x_args, packed,
                packed_bias, np.int32(packed_bias is not None), y.buffer, *y_args, *tail)

    @staticmethod
    def _plan(dctx: DeviceContext, cfg: DirectConfig, nfb: int, x: Operand, y: Operand,
              spec: ConvSpec) -> tuple:
        """Program, kernel name, launch sizes and scalar arguments (memoised per geometry)."""
        # One filter per group: the variant that vectorises along output columns.
        kernel = "conv_direct_ow" if cfg.fb == 1 and cfg.ob in (2, 4, 8, 16) else "conv_direct"
        defines = type_defines(spec, x.dtype, "IN")
        defines.update(BORDER=BORDER_CODES[spec.border], FB=cfg.fb, OB=cfg.ob)
        prg, wg_x, wg_y = fitted_program(dctx, "conv_direct.cl", kernel, defines, cfg.wg_x,
                                         cfg.wg_y, cfg.wg_x * cfg.wg_y)
        cfg = dataclasses.replace(cfg, wg_x=wg_x, wg_y=wg_y)
        acc = acc_dtype(spec).type
        in_d, in_h, in_w = spatial3(spec.in_size, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        pd, ph, pw = spatial3(spec.pad_before, 0)
        global_size = (round_up(-(-out_w // cfg.ob), cfg.wg_x),
                       round_up(out_d * out_h, cfg.wg_y),
                       spec.batch * spec.groups * nfb)
        i64, i32 = np.int64, np.int32
        x_args = (i64(x.offset), *(i64(s) for s in layout_strides(x.strides, spec)))
        y_args = (i64(y.offset), *(i64(s) for s in layout_strides(y.strides, spec)))
        tail = (i64(in_d), i64(in_h), i64(in_w), i64(out_d), i64(out_h), i64(out_w),
                i32(kd), i32(kh), i32(kw), i32(sd), i32(sh), i32(sw),
                i32(dd), i32(dh), i32(dw), i64(pd), i64(ph), i64(pw),
                i32(spec.groups), i32(spec.in_per_group), i32(spec.out_per_group), i32(nfb),
                acc(spec.fill_value))
        return prg, kernel, global_size, (cfg.wg_x, cfg.wg_y, 1), x_args, y_args, tail


# ---------------------------------------------------------------- fast paths
#
# The paths below run only border-free kernels (kernels_cl/conv_gemm.cl,
# conv_rows.cl): the input is either the caller's buffer, when nothing needs
# padding and it is already in the accumulator type, or a scratch copy that
# kernels_cl/pad.cl writes with the padding applied (any border mode, dtype,
# layout and strides). When that scratch would not fit the device, a fast
# path hands the piece to the direct kernel with the same packed weights.

INT32_MAX = 2**31 - 1
WG_PAD = 4  # rows per work-group of pad.cl


@dataclass(frozen=True)
class Source:
    """A border-free input for the fast kernels: buffer, offset, (n, c, d, h) strides."""

    buffer: Any
    offset: int
    strides: tuple[int, int, int, int]
    pitch: int


def border_free_input(dctx: DeviceContext, queue: Any, x: Operand, spec: ConvSpec,
                      pitch: int, limits: Limits, allocate: Any, height: int = 1,
                      ) -> Source | None:
    """The input with padding applied and unit stride along W, or ``None`` if too big.

    ``pitch`` is the smallest row length (elements) the caller's kernel may
    read, ``height`` the smallest number of rows (the scratch continues the
    border mapping past the padded size). The caller's own buffer is used in
    place when it is already in the accumulator type, needs no padding, is
    contiguous along W with non-negative strides and at least ``pitch`` x
    ``height`` large.
    """
    plan = padding_plan(dctx, spec, x.strides, x.dtype, pitch, height, limits)
    if plan[0] == "too big":
        return None
    if plan[0] == "in place":
        return Source(x.buffer, x.offset, *plan[1:])
    _, nbytes, prg, global_size, local_size, scalars, strides, row = plan
    scratch = allocate(nbytes)
    enqueue(prg.get(dctx), "pad_input", queue, global_size, local_size, x.buffer,
            np.int64(x.offset), *scalars[0], scratch, *scalars[1])
    return Source(scratch, 0, strides, row)


def padding_plan(dctx: DeviceContext, spec: ConvSpec, x_strides: tuple[int, ...],
                 x_dtype: np.dtype, pitch: int, height: int, limits: Limits) -> tuple:
    """How :func:`border_free_input` gets a border-free input (memoised):
    ``("in place", strides, row)``, ``("too big",)``, or ``("pad", scratch bytes,
    program, global size, local size, (scalars before, after the scratch),
    strides, row)``; both usable forms end with the input's strides and row."""
    return memoised(("pad", dctx, spec, x_strides, x_dtype, pitch, height, limits),
                    lambda: _fresh_padding_plan(dctx, spec, x_strides, x_dtype, pitch,
                                                height, limits))


def _fresh_padding_plan(dctx: DeviceContext, spec: ConvSpec, x_strides: tuple[int, ...],
                        x_dtype: np.dtype, pitch: int, height: int, limits: Limits) -> tuple:
    acc = acc_dtype(spec)
    sn, sc, sd, sh, sw = layout_strides(x_strides, spec)
    in_d, in_h, in_w = spatial3(spec.in_size, 1)
    no_pad = not any(spec.pad_before) and not any(spec.pad_after)
    if (no_pad and x_dtype == acc and spec.dtype == acc.name and sw == 1
            and min(sn, sc, sd, sh) >= 0 and in_w >= pitch and in_h >= height
            and max(sc * spec.in_channels, sd * in_d, sh * in_h) <= INT32_MAX):
        return ("in place", (sn, sc, sd, sh), in_w)
    pd, ph, pw = spatial3(spec.padded_size, 1)
    ph = max(ph, height)
    bd, bh, bw = spatial3(spec.pad_before, 0)
    row = max(pw, pitch)
    c = spec.in_channels
    nbytes = spec.batch * c * pd * ph * row * acc.itemsize
    if nbytes > limits.max_alloc or nbytes // acc.itemsize > INT32_MAX:
        return ("too big",)
    defines = type_defines(spec, x_dtype, "IN")
    wg_pad = WG_PAD if limits.group_items == 1 else limits.group_items
    defines.update(BORDER=BORDER_CODES[spec.border], WG_PAD=wg_pad)
    prg = ProgramRef.of("pad.cl", defines)
    prg.get(dctx)  # build it now: a build error belongs to planning
    i32 = np.int32
    before = tuple(np.int64(v) for v in (sn, sc, sd, sh, sw))
    after = (i32(c), i32(in_d), i32(in_h), i32(in_w), i32(pd), i32(ph), i32(row),
             i32(bd), i32(bh), i32(bw), acc.type(spec.fill_value))
    return ("pad", nbytes, prg, (round_up(pd * ph, wg_pad), spec.batch * c), (wg_pad, 1),
            (before, after), (c * pd * ph * row, pd * ph * row, ph * row, row), row)


def _fast_dtype(spec: ConvSpec) -> bool:
    """Result dtypes of the fast kernels: float32/float16 (float accumulation)
    and float64 (double; the backend refuses it on devices without fp64)."""
    return spec.dtype in ("float32", "float16", "float64")


def _work_group(items: int, limit: int, wanted: int) -> int:
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
    wg_x = _work_group(x_items, items, wide)
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


def _fallback(dctx: DeviceContext, queue: Any, fb: int, nfb: int, packed: Any, bias: Any,
              x: Operand, y: Operand, spec: ConvSpec, limits: Limits) -> None:
    """Run one piece on the direct kernel with weights packed by a fast path."""
    cfg = DirectPath.config(spec, limits)
    ob = cfg.ob if fb > 1 else (8 if spec.dtype == "float64" else 16)
    cfg = dataclasses.replace(cfg, fb=fb, ob=ob)
    DirectPath().launch(dctx, queue, (cfg, nfb, packed, bias), x, y, spec, limits)


@dataclass(frozen=True)
class GemmConfig:
    """Blocking of one conv_gemm.cl build: FB filters x OB output columns per work-item."""

    fb: int
    ob: int
    wg_x: int
    wg_y: int
    cu: int = 1  # channels per unrolled step of the K loop
    flat: int = 0  # 1: blocks of OB consecutive pixels of a depth slice (crossing rows)


class GemmPath:
    """Dense groups: the register-blocked implicit GEMM of kernels_cl/conv_gemm.cl.

    Each work-item keeps ``OB`` accumulators of ``FB`` filters (``float16``
    vectors by default) and per tap loads one packed weight vector and ``OB``
    input values: K = CG * taps multiply-add steps. Covers every stride,
    dilation, border mode, layout and 1/2/3-D problem (via the pad pre-pass);
    groups with few filters go to other paths. float64 uses 8 filters x 6
    columns (two ``double4`` per accumulator).
    """

    name = "gemm"
    overrides: dict[str, int] = {}
    # Measured on PoCL/Zen 3 (1x64x56x56 64 3x3): 16 filters x 6 columns
    # ~65-74 GFLOP/s; 16x4 ~60, 16x8 ~44 (register spills), 8x8 ~52.
    MAX_TAPS = 81  # taps along (H, W) fully unrolled per build

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        kh, kw = spatial3(spec.kernel_size, 1)[1:]
        return (_fast_dtype(spec) and spec.out_per_group >= 4 and kh * kw <= self.MAX_TAPS
                and spec.in_per_group * math.prod(spec.kernel_size) >= 4)

    @staticmethod
    def config(spec: ConvSpec, limits: Limits, width: int, gpu_wide: int = 16,
               rows: bool = True) -> GemmConfig:
        """Tiles for output rows of ``width`` columns; GPU groups up to ``gpu_wide`` along x.

        ``rows``: ``spec``'s own output rows are launched (not a flattened view),
        so blocks may cross them (``flat``) when that leaves far fewer blocks.
        """
        fg = spec.out_per_group
        fb = 16 if fg > 8 else 8 if fg > 4 else 4
        ob = 6 if fb == 16 else 8
        if spec.dtype == "float64":
            # Same register budget in doubles: 8 filters (two double4) x 6
            # columns. 1x64x56x56 64 3x3: 11.4 ms on direct -> 3.0-3.5 ms;
            # 4 filters x 8 columns: 7.2 ms.
            fb = min(fb, 8)
            ob = 6 if fb == 8 else 8
        height = spatial3(spec.out_size, 1)[1]  # rows of one output depth slice
        flat = 0
        if rows and height > 1 and -(-height * width // ob) < height * -(-width // ob):
            # Blocks cross rows whenever rows would leave partly empty blocks:
            # 7x7 needs 9 blocks of 6 pixels instead of 14 of up to 6 columns
            # (gemm kernel, 1x512x7x7 512 3x3: 1.88 -> 1.25 ms; 14x14 256:
            # 1.37 -> 1.07; 56x56 64: 1.21 -> 1.11; 8x32x64x64: 6.66 -> 6.27).
            flat = 1
        elif width < ob:
            ob = max(width, 1)
        # One tap per channel (1x1 kernels the pointwise path leaves: strided or
        # padded): unroll 4 channels per K step, as pointwise does (1x256x56x56
        # -> 512 1x1 stride 2, clconv tune: 2.22 -> 1.87 ms).
        cu = 4 if math.prod(spec.kernel_size) == 1 else 1
        if limits.group_items > 1:
            x_items = -(-max(width * (height if flat else 1), 1) // ob) * -(-fg // fb)
            return GemmConfig(fb, ob, *gpu_group(limits, x_items, gpu_wide), cu=cu, flat=flat)
        return GemmConfig(fb, ob, 1, 1, cu=cu, flat=flat)

    def _config(self, spec: ConvSpec, limits: Limits, width: int) -> GemmConfig:
        """``config`` with this instance's tuned overrides (output block <= ``width``)."""
        return memoised(("gemm config", self, spec, limits, width),
                        lambda: self._fresh_config(spec, limits, width))

    def _fresh_config(self, spec: ConvSpec, limits: Limits, width: int) -> GemmConfig:
        cfg = self.config(spec, limits, width)
        if self.overrides:
            cfg = with_overrides(self, cfg)
            if width and cfg.ob > width:
                cfg = dataclasses.replace(cfg, ob=max(width, 1))
        return cfg

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        fb = self._config(spec, limits, spatial3(spec.out_size, 1)[2]).fb
        filters = spec.groups * -(-spec.out_per_group // fb) * fb
        return ((filters * spec.in_per_group * math.prod(spec.kernel_size) + spec.out_channels)
                * acc_dtype(spec).itemsize)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        cfg = self._config(spec, limits, spatial3(spec.out_size, 1)[2])
        return (cfg, *pack_operands(dctx, queue, weight, bias, spec, cfg.fb, allocate),
                allocate)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        cfg, nfb, packed, packed_bias, allocate = state
        src = border_free_input(dctx, queue, x, spec, 1, limits, allocate)
        if src is None:
            _fallback(dctx, queue, cfg.fb, nfb, packed, packed_bias, x, y, spec, limits)
            return
        prg, global_size, local_size, x_strides, sizes = memoised(
            ("conv_gemm", dctx, spec, cfg, nfb, limits, src.strides, y.strides),
            lambda: self._plan_launch(dctx, spec, cfg, nfb, limits, src.strides, y.strides))
        enqueue(prg.get(dctx), "conv_gemm", queue, global_size, local_size,
                src.buffer, np.int64(src.offset), *x_strides,
                packed, packed_bias, np.int32(packed_bias is not None),
                y.buffer, np.int64(y.offset), *sizes)

    @staticmethod
    def _plan_launch(dctx: DeviceContext, spec: ConvSpec, cfg: GemmConfig, nfb: int,
                     limits: Limits, x_strides: tuple[int, ...], y_strides: tuple[int, ...],
                     ) -> tuple:
        """Program, global and local size, and the scalar arguments of one launch."""
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        defines = type_defines(spec, np.dtype(acc_dtype(spec)), "IN")
        defines.update(FB=cfg.fb, OB=cfg.ob, KH=kh, KW=kw, CU=cfg.cu, FLAT=cfg.flat)
        prg, wg_x, wg_y = fitted_program(dctx, "conv_gemm.cl", "conv_gemm", defines, cfg.wg_x,
                                         cfg.wg_y, limits.max_work_group)
        if cfg.flat:  # blocks of pixels of a depth slice x depth slices
            global_size = (round_up(-(-out_h * out_w // cfg.ob) * nfb, wg_x),
                           round_up(out_d, wg_y), spec.batch * spec.groups)
        else:  # column blocks x output rows
            global_size = (round_up(-(-out_w // cfg.ob) * nfb, wg_x),
                           round_up(out_d * out_h, wg_y), spec.batch * spec.groups)
        i32, i64 = np.int32, np.int64
        sizes = (*(i64(v) for v in layout_strides(y_strides, spec)),
                 *(i32(v) for v in (out_d, out_h, out_w, kd, sd, sh, sw, dd, dh, dw,
                                    spec.groups, spec.in_per_group, spec.out_per_group, nfb)))
        return (prg, global_size, (wg_x, wg_y, 1),
                (i64(x_strides[0]), *(i32(v) for v in x_strides[1:])), sizes)


class PointwisePath(GemmPath):
    """1x1 kernels, stride 1, no padding: a plain GEMM over the flattened pixels.

    The spatial axes are seen as one long row (when input and output are
    contiguous over them), so every block of ``OB`` pixels is full and the
    kernel is conv_gemm.cl with one tap.
    """

    name = "pointwise"

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        return (super().supports(spec, dctx, limits)
                and all(k == 1 for k in spec.kernel_size) and all(s == 1 for s in spec.stride)
                and not any(spec.pad_before) and not any(spec.pad_after))

    @staticmethod
    def config(spec: ConvSpec, limits: Limits, width: int) -> GemmConfig:
        # GemmPath.config unrolls 4 channels per K step (one tap per channel);
        # here 16 work-items per group as well (1x256x28x28 -> 128, PoCL on
        # Zen 4, interleaved in one process: 0.66-0.68 -> 0.58-0.59 ms median;
        # either alone ~0.62).
        cfg = GemmPath.config(spec, limits, math.prod(spec.out_size), gpu_wide=64, rows=False)
        if limits.group_items == 1:
            cfg = dataclasses.replace(cfg, wg_x=_work_group(16, limits.max_work_group, 16))
        return cfg

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        cfg = self._config(spec, limits, 0)
        return (cfg, *pack_operands(dctx, queue, weight, bias, spec, cfg.fb, allocate),
                allocate)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        flat = memoised(("flat", spec, x.strides, x.shape, y.strides, y.shape),
                        lambda: _flatten_spatial(spec, x, y))
        if flat is None:  # not contiguous over the pixels: the 2-D/3-D launch
            GemmPath.launch(self, dctx, queue, state, x, y, spec, limits)
        else:
            (xs, xshape), (ys, yshape), one = flat
            GemmPath.launch(self, dctx, queue, state,
                            dataclasses.replace(x, strides=xs, shape=xshape),
                            dataclasses.replace(y, strides=ys, shape=yshape), one, limits)


def _flatten_spatial(spec: ConvSpec, x: Operand, y: Operand) -> tuple | None:
    """``((x strides, x shape), (y strides, y shape), spec)`` seen as 1-D over all
    pixels, when both are contiguous over them; None otherwise."""
    size = math.prod(spec.in_size)
    for op, sizes in ((x, spec.in_size), (y, spec.out_size)):
        st = layout_strides(op.strides, spec)[2:][-len(sizes):]
        expect, ok = 1, True
        for s, n in zip(reversed(st), reversed(sizes)):
            if n > 1 and s != expect * st[-1]:
                ok = False
            expect *= n
        if not ok:
            return None
    lay = 1 if spec.channels_last else 2
    def flat(op: Operand) -> tuple[tuple[int, ...], tuple[int, ...]]:
        st = op.strides
        w = st[-2] if spec.channels_last else st[-1]
        return ((*st[:lay], w, *st[lay + spec.ndim:]),
                (*op.shape[:lay], size, *op.shape[lay + spec.ndim:]))
    one = spec.replace(in_size=(size,), kernel_size=(1,), stride=(1,), dilation=(1,),
                       pad_before=(0,), pad_after=(0,), out_size=(size,))
    return flat(x), flat(y), one


@dataclass(frozen=True)
class RowsConfig:
    """Blocking of one conv_rows.cl build: OR rows x 8*NV columns per work-item."""

    nv: int
    rows: int
    kw_unroll: int
    wg_x: int
    wg_y: int


class RowsPath:
    """One filter per group (depthwise, single-channel images, 1-D, 3-D, large kernels).

    kernels_cl/conv_rows.cl: output columns are float8 lanes (stride 1 or 2
    along W), each work-item computes ``OR`` rows x ``8 * NV`` columns and reuses
    every loaded input vector across the output rows it feeds. Borders are
    handled inside the kernel (one launch, the input read in place, any
    dtype) unless many blocks touch them (3-D, wide kernels) or the input is
    strided along W: then a pad pre-pass (pad.cl) makes a border-free copy.
    """

    name = "rows"
    overrides: dict[str, int] = {}
    MAX_KW = 128
    MAX_KH = 32
    # Border blocks are slower than interior ones (row-only border blocks
    # load plain vectors, column border blocks first gather each input row
    # through the border rule), more so for 3-D and wide kernels: above these
    # shares of them a pad pass first is cheaper. 2026-11-22 (lane-by-lane
    # column borders), kernel ms in place vs pad pass + kernel: 512x512 3x3
    # (share 0.077) 0.80 vs 0.93; 1x128x56x56 depthwise (share 0.57) 0.60-0.76
    # vs 0.56-0.64; 64^3 3x3x3 1.18 vs 0.93; 512x512 15x15 12.1 vs 5.1.
    # 2026-11-29 (gathered rows, 8-row blocks), wall ms in place vs pad, one
    # process alternating: 1x32x112x112 stride 2 0.31-0.33 vs 0.35-0.37,
    # 1x512x14x14 0.35 vs 0.37, 5x5 1x128x56x56 0.70 vs 0.80, 3x3 1x128x56x56
    # 0.44-0.46 vs 0.43-0.44 (a tie within noise), so planar kernels of up
    # to 25 taps always read in place; 64^3 3x3x3 0.67 vs 0.52 and 512x512
    # 15x15 2.39 vs 2.14 (3-D and wide keep the limits).
    MAX_BORDER_SHARE_PLANE = 1.0   # 1-D and 2-D kernels of at most 25 taps
    MAX_BORDER_SHARE = 0.10        # 3-D kernels of at most 25 taps per plane
    MAX_BORDER_SHARE_WIDE = 0.002  # kernels of more than 25 taps per plane
    # Column border blocks gather an input row of (8 * NV - 1) * SW + (KW - 1)
    # * DW + 1 elements into private memory; longer rows (strongly dilated
    # wide kernels) take the pad pass, so that private arrays stay small on GPUs.
    MAX_ROW_BUFFER = 256
    # Input-row loops of at most this many multiply-add steps (IN_ROWS *
    # KW_UNROLL) are unrolled (passed to conv_rows.cl).
    ROWS_UNROLL_MAX = 96

    @staticmethod
    def border_share(spec: ConvSpec, cfg: RowsConfig) -> float:
        """The share of work-items whose block reads padding (for the in-place kernel)."""
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        in_d, in_h, in_w = spatial3(spec.in_size, 1)
        pd, ph, pw = spatial3(spec.pad_before, 0)
        inner = 1.0
        for count, step, reach, pad, size in (
                (out_d, sd, (kd - 1) * dd, pd, in_d),
                (-(-out_h // cfg.rows), cfg.rows * sh, (cfg.rows - 1) * sh + (kh - 1) * dh,
                 ph, in_h),
                (-(-out_w // (8 * cfg.nv)), 8 * cfg.nv * sw,
                 (8 * cfg.nv - 1) * sw + (kw - 1) * dw, pw,
                 in_w)):
            first = -(-pad // step)                    # blocks with start >= 0
            last = (size - 1 - reach + pad) // step    # blocks with end < size
            inner *= max(0, min(last, count - 1) - first + 1) / count
        return 1.0 - inner

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        kh, kw = spatial3(spec.kernel_size, 1)[1:]
        return (_fast_dtype(spec) and spec.out_per_group == 1 and spec.stride[-1] in (1, 2)
                and kw <= self.MAX_KW and kh <= self.MAX_KH)

    @staticmethod
    def config(spec: ConvSpec, limits: Limits) -> RowsConfig:
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        if spec.ndim == 1 or out_h == 1:
            rows, nv = 1, 4
        else:
            # 4 rows x 16 columns: per input row and tap 2 vector loads and up
            # to 4 weight broadcasts feed 8 multiply-adds (8 rows x 8 columns
            # needs 9 loads for 8); measured best or tied on 512x512 15x15.
            rows, nv = 4, 2 if out_w > 8 else 1
        if spec.dtype == "float64":
            nv = 1  # a double8 is two registers already (512x512 15x15: 5.5 -> 2.9 ms)
        nv = min(nv, -(-out_w // 8))
        # Fewer vectors per row when that wastes fewer columns (56 wide: 7
        # blocks of 8 instead of 4 of 16 with 8 columns computed for nothing,
        # and a narrower padded copy: 1x128x56x56 depthwise kernels 0.50 ->
        # 0.42-0.46 ms in profiling events, same process).
        nv = max(range(1, nv + 1), key=lambda v: (-round_up(out_w, 8 * v), v))
        kw_unroll = kw if kw <= 16 else 8
        sh, dh = spatial3(spec.stride, 1)[1], spatial3(spec.dilation, 1)[1]
        if (nv == 1 and rows == 4 and kd == 1 and out_h > 4 and spec.dtype != "float64"
                and (7 * sh + (kh - 1) * dh + 1) * kw_unroll <= RowsPath.ROWS_UNROLL_MAX):
            # One vector per row: 8 rows keep the work per item of 4 x 16
            # (PoCL's per-item set-up is amortised over twice the multiply-adds;
            # 1x128x56x56 3x3 depthwise kernel 0.189 -> 0.146 ms, 5x5 0.31 ->
            # 0.26). With two vectors 8 rows lost (1x32x112x112 0.128 -> 0.140).
            rows = 8
        taps = kd * kh * kw * spec.in_per_group
        # Small kernels: little work per item, so group many items per
        # work-group (PoCL's per-group cost dominates otherwise).
        wanted = 16 if taps <= 32 else 1
        col_blocks = -(-out_w // (8 * nv))
        if limits.group_items > 1:
            return RowsConfig(nv, rows, kw_unroll, *gpu_group(limits, col_blocks, 16))
        wg_x = _work_group(col_blocks, limits.max_work_group, wanted)
        if wg_x < col_blocks < wanted and round_up(col_blocks, 2 * wg_x) * 4 <= col_blocks * 5:
            wg_x *= 2  # one group across the row, a few idle items (7 blocks: 8)
        # Fill the group with row blocks when a row has fewer column blocks
        # (1x128x56x56 3x3 depthwise, 7 blocks: groups of 4 x 1 -> 8 x 2,
        # kernel 0.204 -> 0.185 ms).
        row_blocks = out_d * -(-out_h // rows)
        wg_y = _work_group(row_blocks, max(limits.max_work_group // wg_x, 1),
                           max(wanted // wg_x, 1))
        return RowsConfig(nv, rows, kw_unroll, wg_x, wg_y)

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        return ((spec.out_channels * spec.in_per_group * math.prod(spec.kernel_size)
                 + spec.out_channels) * acc_dtype(spec).itemsize)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        return (with_overrides(self, self.config(spec, limits)),
                *pack_operands(dctx, queue, weight, bias, spec, 1, allocate), allocate)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        cfg, nfb, packed, packed_bias, allocate = state
        plan = memoised(("conv_rows", dctx, spec, cfg, limits, x.dtype, x.strides, y.strides),
                        lambda: self._plan_launch(dctx, spec, cfg, limits, x.dtype, x.strides,
                                                  y.strides))
        src = None
        if plan is not None and plan[0] is not None:
            pitch, height = plan[0]
            src = border_free_input(dctx, queue, x, spec, pitch, limits, allocate, height)
        if plan is None or (plan[0] is not None and src is None):
            # The padded copy would not fit the device.
            _fallback(dctx, queue, 1, nfb, packed, packed_bias, x, y, spec, limits)
            return
        _, prg, global_size, local_size, x_strides, tail = plan
        buf, off = (x.buffer, x.offset) if src is None else (src.buffer, src.offset)
        enqueue(prg.get(dctx), "conv_rows", queue, global_size, local_size,
                buf, np.int64(off), *x_strides,
                packed, packed_bias, np.int32(packed_bias is not None),
                y.buffer, np.int64(y.offset), *tail)

    def _plan_launch(self, dctx: DeviceContext, spec: ConvSpec, cfg: RowsConfig,
                     limits: Limits, x_dtype: np.dtype, x_strides: tuple[int, ...],
                     y_strides: tuple[int, ...]) -> tuple | None:
        """``((pitch, height) of the padded copy or None when read in place, program,
        global size, local size, input strides, scalars after the output offset)``,
        or None when the padded copy does not fit."""
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        sd, sh, sw = spatial3(spec.stride, 1)
        dd, dh, dw = spatial3(spec.dilation, 1)
        out_d, out_h, out_w = spatial3(spec.out_size, 1)
        xs = layout_strides(x_strides, spec)
        cols = 8 * cfg.nv
        nrb = -(-out_h // cfg.rows)
        limit = (self.MAX_BORDER_SHARE_WIDE if kh * kw > 25
                 else self.MAX_BORDER_SHARE_PLANE if kd == 1 else self.MAX_BORDER_SHARE)
        pad = None
        row_buffer = (cols - 1) * sw + (kw - 1) * dw + 1
        if (xs[4] == 1 and row_buffer <= self.MAX_ROW_BUFFER
                and self.border_share(spec, cfg) <= limit):
            # Read the input in place, borders applied in the kernel (one launch).
            in_dtype, strides = x_dtype, xs[:4]
            sizes = spatial3(spec.in_size, 1)
            pads = spatial3(spec.pad_before, 0)
        else:
            # Many border blocks (small images, 3-D) or strided along W: a padded
            # copy (pad.cl) large enough that every block reads inside it.
            pitch = (round_up(out_w, cols) - 1) * sw + (kw - 1) * dw + 1
            height = (nrb * cfg.rows - 1) * sh + (kh - 1) * dh + 1
            padding = padding_plan(dctx, spec, x_strides, x_dtype, pitch, height, limits)
            if padding[0] == "too big":
                return None
            pad = (pitch, height)
            in_dtype, strides, row = acc_dtype(spec), padding[-2], padding[-1]
            pd, ph, _ = spatial3(spec.padded_size, 1)
            sizes = (pd, max(height, ph), row)
            pads = (0, 0, 0)
        defines = type_defines(spec, in_dtype, "IN")
        defines.update(BORDER=BORDER_CODES[spec.border], NV=cfg.nv, OR=cfg.rows, KH=kh,
                       KW=kw, SH=sh, SW=sw, DH=dh, KW_UNROLL=cfg.kw_unroll,
                       ROWS_UNROLL_MAX=self.ROWS_UNROLL_MAX,
                       BORDER_FREE=int(pad is not None))
        if pad is None:
            defines["ROW_LEN"] = row_buffer
        prg, wg_x, wg_y = fitted_program(dctx, "conv_rows.cl", "conv_rows", defines, cfg.wg_x,
                                         cfg.wg_y, limits.max_work_group)
        global_size = (round_up(-(-out_w // cols), wg_x), round_up(out_d * nrb, wg_y),
                       spec.batch * spec.groups)
        i32, i64 = np.int32, np.int64
        tail = (*(i64(v) for v in layout_strides(y_strides, spec)),
                *(i32(v) for v in sizes),
                *(i32(v) for v in (out_d, out_h, out_w, kd, sd, dd, dw, spec.groups,
                                   spec.in_per_group)),
                *(i32(v) for v in pads), acc_dtype(spec).type(spec.fill_value))
        return (pad, prg, global_size, (wg_x, wg_y, 1), tuple(i64(v) for v in strides), tail)


class SeparablePath:
    """Rank-1 kernels of one-filter groups as two 1-D passes (columns, then rows).

    A KH x KW kernel that is the outer product of a column and a row costs
    KH + KW multiply-adds per output instead of KH * KW. ``prepare`` checks
    the host weights (in float64: each filter against the outer product of
    its row and column through its largest entry); when a filter is not
    rank 1 within the dtype's rounding, or the weights are a device array, the
    problem goes to the rows path as usual. Both passes run conv_rows.cl: the
    first over the input with the KH x 1 column and the padding along H, into
    a scratch of the accumulator type; the second over the scratch with the
    1 x KW row, the padding along W and the bias. Padding one axis after the
    other equals padding both for every border mode except a constant fill
    other than zero (the second pass would pad with the fill itself, not with
    the first pass of it), which this path leaves to the others.
    """

    name = "separable"
    overrides: dict[str, int] = {}
    # Whether it applies depends on the weights' values, which clconv.tune (random
    # weights) cannot judge: not a tuning candidate, and it comes before a stored
    # winner in choose_path.
    weight_dependent = True
    # Measured on PoCL against the 2-D rows kernel (2026-11-29, interleaved in one
    # process): 15x15 on 512x512 2.23 -> 1.45 ms, on RGB 1080p 37.9 -> 12.7 ms,
    # 11x11 on 512x512 1.98 -> 1.24 ms; 9x9 and smaller, or 128x128 images, no
    # gain (two user-level passes: the extra pass costs as much as it saves).
    MIN_TAPS = 121
    MIN_OUTPUTS = 1 << 18
    # Largest |filter - outer product| over largest |filter| below this: rank 1
    # (a float32 rounding of an exact outer product stays near 1e-7).
    RANK_TOL = {"float32": 1e-6, "float64": 1e-13}

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        kh, kw = spec.kernel_size[-2:] if spec.ndim == 2 else (0, 0)
        return (spec.ndim == 2 and spec.dtype in self.RANK_TOL and spec.in_per_group == 1
                and spec.out_per_group == 1 and spec.stride[-1] == 1 and min(kh, kw) >= 2
                and kh * kw >= self.MIN_TAPS and kh <= RowsPath.MAX_KH
                and kw <= RowsPath.MAX_KW
                and math.prod(spec.output_shape) >= self.MIN_OUTPUTS
                and not (spec.border == "constant" and spec.fill_value != 0))

    @staticmethod
    def passes(spec: ConvSpec) -> tuple[ConvSpec, ConvSpec]:
        """The column pass (input -> scratch) and the row pass (scratch -> output)."""
        (kh, kw), (sh, _), (dh, dw) = spec.kernel_size, spec.stride, spec.dilation
        (bh, bw), (ah, aw) = spec.pad_before, spec.pad_after
        oh, w = spec.out_size[0], spec.in_size[1]
        cols = spec.replace(kernel_size=(kh, 1), stride=(sh, 1), dilation=(dh, 1),
                            pad_before=(bh, 0), pad_after=(ah, 0), out_size=(oh, w),
                            flip=False, has_bias=False)
        rows = spec.replace(in_size=(oh, w), kernel_size=(1, kw), stride=(1, 1),
                            dilation=(1, dw), pad_before=(0, bw), pad_after=(0, aw),
                            flip=False)
        return cols, rows

    def packed_bytes(self, spec: ConvSpec, limits: Limits) -> int:
        return 2 * ROWS.packed_bytes(spec, limits)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Any, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        factors = None if isinstance(weight, Operand) else self.factors(weight, spec)
        if factors is None:
            return ("rows", ROWS.prepare(dctx, queue, weight, bias, spec, limits, allocate))
        col, row = factors
        cols, rows = self.passes(spec)
        return ("separable",
                ROWS.prepare(dctx, queue, col, None, cols, limits, allocate),
                ROWS.prepare(dctx, queue, row, bias, rows, limits, allocate), allocate)

    def factors(self, weight: Any, spec: ConvSpec) -> tuple[np.ndarray, np.ndarray] | None:
        """``(column, row)`` weights whose outer products are the filters, or None."""
        weight = np.asarray(weight)
        # Learned kernels are rarely rank 1: the first filter alone usually decides.
        if weight.shape[0] > 1 and self._rank1(weight[:1], spec) is None:
            return None
        return self._rank1(weight, spec)

    def _rank1(self, weight: np.ndarray, spec: ConvSpec
               ) -> tuple[np.ndarray, np.ndarray] | None:
        w = np.asarray(weight, dtype=np.float64)[:, 0]  # (F, KH, KW)
        if spec.flip:
            w = w[:, ::-1, ::-1]
        if not np.isfinite(w).all():
            return None
        f = np.arange(w.shape[0])
        size = np.abs(w).reshape(len(f), -1)
        i, j = np.divmod(size.argmax(axis=1), w.shape[2])
        pivot = w[f, i, j]
        pivot = np.where(pivot == 0, 1.0, pivot)  # an all-zero filter: zero factors
        col = w[f, :, j] / pivot[:, None]          # (F, KH), 1 at the pivot
        row = w[f, i, :]                           # (F, KW)
        misfit = np.abs(w - col[:, :, None] * row[:, None, :]).reshape(len(f), -1).max(axis=1)
        if (misfit > self.RANK_TOL[spec.dtype] * size.max(axis=1)).any():
            return None
        acc = acc_dtype(spec)
        return col[:, None, :, None].astype(acc), row[:, None, None, :].astype(acc)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        if state[0] == "rows":
            ROWS.launch(dctx, queue, state[1], x, y, spec, limits)
            return
        _, col_state, row_state, allocate = state
        cols, rows = self.passes(spec)
        acc = acc_dtype(spec)
        n, c, (oh, w) = spec.batch, spec.in_channels, cols.out_size
        shape = (n, oh, w, c) if spec.channels_last else (n, c, oh, w)
        mid = Operand(allocate(max(math.prod(shape) * acc.itemsize, 1)), 0,
                      contiguous_strides(shape), shape, acc)
        ROWS.launch(dctx, queue, col_state, x, mid, cols, limits)
        ROWS.launch(dctx, queue, row_state, mid, y, rows, limits)


class TinyPath(DirectPath):
    """Tiny problems: one launch of the direct kernel (borders handled inside).

    Every OpenCL command costs a synchronisation-sized delay on a CPU device
    (~50 us on PoCL), more than such a problem computes, so this path skips
    the pad pre-pass of the fast paths; with small host operands copied at
    buffer creation and one blocking read, a call is one launch + one read.
    """

    name = "tiny"
    MAX_MACS = 1 << 16

    def supports(self, spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> bool:
        return spec.macs <= self.MAX_MACS


ROWS = RowsPath()
FORWARD_PATHS: list[ForwardPath] = [TinyPath(), PointwisePath(), GemmPath(), SeparablePath(),
                                    ROWS, DirectPath()]
PATH_ENV = "CLCONV_OPENCL_PATH"
# (path name, tile parameters) that clconv.tune is timing right now (this thread/task).
TUNING: contextvars.ContextVar[tuple[str, dict[str, int]] | None] = contextvars.ContextVar(
    "clconv_tuning", default=None)
_configured: dict[tuple, Any] = {}


def with_overrides(path: Any, cfg: Any) -> Any:
    """``cfg`` (a path's config dataclass) with the path instance's tuned parameters."""
    overrides = path.overrides
    if not overrides:
        return cfg
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items()
                                       if k in cfg.__dataclass_fields__})


def configured(path: Any, params: dict[str, int]) -> Any:
    """``path`` with tile parameters ``params`` (a cached copy; ``path`` itself if none)."""
    if not params:
        return path
    key = (type(path), path.name, tuple(sorted(params.items())))
    inst = _configured.get(key)
    if inst is None:
        inst = copy.copy(path)
        inst.overrides = dict(params)
        _configured[key] = inst
    return inst


def _named(name: str, params: dict[str, int], spec: ConvSpec, dctx: DeviceContext,
           limits: Limits) -> Any:
    """The registered path ``name`` with ``params`` if it supports ``spec``, else None."""
    for path in FORWARD_PATHS:
        if path.name == name:
            return configured(path, params) if path.supports(spec, dctx, limits) else None
    return None


def choose_path(spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> ForwardPath:
    """The path for ``spec``: the first registered one that supports it.

    The order is the heuristic: ``tiny`` (at most 65536 multiply-adds: one
    launch of the direct kernel), ``pointwise`` (1x1, stride 1, no padding),
    ``gemm`` (groups of >= 4 filters), ``separable`` (large rank-1 kernels of
    one-filter groups), ``rows`` (one filter per group, stride 1 or 2 along W),
    then ``direct`` (everything). The
    environment variable ``CLCONV_OPENCL_PATH=<name>`` (read per call; for
    tests and measurements) puts that path first: it still runs only problems
    it supports, others take the usual order. Without it, a winner that
    :func:`clconv.tune` stored for this device and problem class (see
    :mod:`.tunecache`) comes before the heuristic when it supports ``spec``,
    after the weight-dependent paths (the tuner times random weights, so it
    cannot judge those).
    """
    tuning = TUNING.get()
    if tuning is not None:
        path = _named(*tuning, spec, dctx, limits)
        if path is None:
            raise ArgumentError(f"tuning candidate {tuning} does not support this problem")
        return path
    forced = os.environ.get(PATH_ENV, "").strip()
    if forced:
        for path in FORWARD_PATHS:
            if path.name == forced and path.supports(spec, dctx, limits):
                return path
        if forced not in {p.name for p in FORWARD_PATHS}:
            raise ArgumentError(f"{PATH_ENV}={forced!r}; expected one of "
                                f"{[p.name for p in FORWARD_PATHS]}")
    else:
        for path in FORWARD_PATHS:
            if getattr(path, "weight_dependent", False) and path.supports(spec, dctx, limits):
                return path
        tuned = tuned_choice(spec, dctx)
        if tuned is not None:
            path = _named(*tuned, spec, dctx, limits)
            if path is not None:
                return path
    for path in FORWARD_PATHS:
        if path.supports(spec, dctx, limits):
            return path
    raise AssertionError("the direct path supports every convolution")
