"""Forward convolution kernels: operand description, the path registry, the direct path.

A *path* is one way of computing a forward convolution on the device (one
set of kernels plus its launch planning). :data:`FORWARD_PATHS` lists them
best first; :func:`choose_path` takes the first whose ``supports`` accepts the
problem. The generic ``direct`` path supports everything and comes last, so
specialised fast paths can be registered in front of it later.

A path works in two steps so that tiled execution prepares weights once:
``prepare(...)`` packs weight and bias on the device, ``launch(...)`` runs
one piece (a batch slice or spatial tile) with the prepared operands.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

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
WG_PACK = 64


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


def acc_dtype(spec: ConvSpec) -> np.dtype:
    """The accumulator dtype: float64 for float64 results, else float32."""
    return np.dtype(np.float64 if spec.dtype == "float64" else np.float32)


def spatial3(values: tuple[int, ...], fill: int) -> tuple[int, ...]:
    """A spatial tuple as (D, H, W), missing leading axes set to ``fill``."""
    return (fill,) * (3 - len(values)) + tuple(values)


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
    """Set arguments and enqueue under the kernel's lock (kernel objects are shared)."""
    import pyopencl as cl

    kernel, lock = built.kernel(name)
    with lock:
        kernel.set_args(*args)
        return cl.enqueue_nd_range_kernel(queue, kernel, global_size, local_size)


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class ForwardPath(Protocol):
    """One way of computing the forward convolution on a device."""

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
        fb = self.config(spec, limits).fb
        filters = spec.groups * -(-spec.out_per_group // fb) * fb
        return ((filters * spec.in_per_group * math.prod(spec.kernel_size) + spec.out_channels)
                * acc_dtype(spec).itemsize)

    def prepare(self, dctx: DeviceContext, queue: Any, weight: Operand, bias: Any,
                spec: ConvSpec, limits: Limits, allocate: Any) -> Any:
        cfg = self.config(spec, limits)
        acc = acc_dtype(spec)
        fg, g, cg = spec.out_per_group, spec.groups, spec.in_per_group
        nfb = -(-fg // cfg.fb)
        kd, kh, kw = spatial3(spec.kernel_size, 1)
        total = g * nfb * cg * kd * kh * kw * cfg.fb
        packed = allocate(total * acc.itemsize)
        ws = (weight.strides[0], weight.strides[1], *spatial3(weight.strides[2:], 0))
        prg = self._pack_program(dctx, spec, weight.dtype, cfg.fb, limits)
        enqueue(prg, "pack_weights", queue, (round_up(total, WG_PACK),), (WG_PACK,),
                weight.buffer, np.int64(weight.offset), *(np.int64(s) for s in ws),
                packed, np.int64(total), np.int32(g), np.int32(cg), np.int32(fg),
                np.int32(nfb), np.int32(kd), np.int32(kh), np.int32(kw),
                np.int32(int(spec.flip)))
        packed_bias = None
        if bias is not None:
            if isinstance(bias, Operand):
                packed_bias = allocate(spec.out_channels * acc.itemsize)
                prg = self._pack_program(dctx, spec, bias.dtype, cfg.fb, limits)
                enqueue(prg, "pack_vector", queue,
                        (round_up(spec.out_channels, WG_PACK),), (WG_PACK,),
                        bias.buffer, np.int64(bias.offset), np.int64(bias.strides[0]),
                        packed_bias, np.int64(spec.out_channels))
            else:  # host bias, already of the spec's dtype: exact in the accumulator type
                import pyopencl as cl

                host = np.ascontiguousarray(bias, dtype=acc)
                packed_bias = allocate(host.nbytes)
                cl.enqueue_copy(queue, packed_bias, host, is_blocking=True)
        return (cfg, nfb, packed, packed_bias)

    @staticmethod
    def _pack_program(dctx: DeviceContext, spec: ConvSpec, dtype: np.dtype, fb: int,
                      limits: Limits) -> Any:
        defines = type_defines(spec, dtype, "W")
        defines.update(FB=fb, WG_PACK=WG_PACK,
                       ROUND_HALF=int(spec.dtype == "float16" and dtype.name != "float16"))
        return dctx.program("pack.cl", defines)

    def launch(self, dctx: DeviceContext, queue: Any, state: Any, x: Operand, y: Operand,
               spec: ConvSpec, limits: Limits) -> None:
        cfg, nfb, packed, packed_bias = state
        # One filter per group: the variant that vectorises along output columns.
        kernel = "conv_direct_ow" if cfg.fb == 1 and cfg.ob in (2, 4, 8, 16) else "conv_direct"
        while True:
            defines = type_defines(spec, x.dtype, "IN")
            defines.update(BORDER=BORDER_CODES[spec.border], FB=cfg.fb, OB=cfg.ob,
                           WG_X=cfg.wg_x, WG_Y=cfg.wg_y)
            prg = dctx.program("conv_direct.cl", defines)
            # A kernel may allow less than the device maximum (registers on GPUs).
            if cfg.wg_x * cfg.wg_y <= prg.max_work_group(kernel, dctx.device) or (
                    cfg.wg_x * cfg.wg_y == 1):
                break
            cfg = dataclasses.replace(cfg, wg_x=max(cfg.wg_x // 2, 1) if cfg.wg_y == 1
                                      else cfg.wg_x, wg_y=cfg.wg_y // 2 or 1)
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
        enqueue(prg, kernel, queue, global_size, (cfg.wg_x, cfg.wg_y, 1),
                x.buffer, i64(x.offset), *(i64(s) for s in layout_strides(x.strides, spec)),
                packed, packed_bias, i32(packed_bias is not None),
                y.buffer, i64(y.offset), *(i64(s) for s in layout_strides(y.strides, spec)),
                i64(in_d), i64(in_h), i64(in_w), i64(out_d), i64(out_h), i64(out_w),
                i32(kd), i32(kh), i32(kw), i32(sd), i32(sh), i32(sw),
                i32(dd), i32(dh), i32(dw), i64(pd), i64(ph), i64(pw),
                i32(spec.groups), i32(spec.in_per_group), i32(spec.out_per_group), i32(nfb),
                acc(spec.fill_value))


FORWARD_PATHS: list[ForwardPath] = [DirectPath()]


def choose_path(spec: ConvSpec, dctx: DeviceContext, limits: Limits) -> ForwardPath:
    """The first registered path that supports ``spec`` (``direct`` always does)."""
    for path in FORWARD_PATHS:
        if path.supports(spec, dctx, limits):
            return path
    raise AssertionError("the direct path supports every convolution")
