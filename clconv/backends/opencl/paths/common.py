"""What every path's planning shares: build defines, strides, sizes and work-groups.

Also :func:`tunable`, the field type of the paths' configuration dataclasses:
each field names the values a tuned configuration may give it, so that the
dataclass is the one list of a path's parameters (the tuner, the tune cache
and overrides all read it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...._spec import ConvSpec
from ..build import ProgramRef
from ..context import DeviceContext, Limits

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

POW2 = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def tunable(default: int, values: tuple[int, ...]) -> Any:
    """A configuration field with its default and the values tuning may choose."""
    return dataclasses.field(default=default, metadata={"values": tuple(values)})


def allowed_values(config_type: type) -> dict[str, tuple[int, ...]]:
    """The tunable fields of a configuration dataclass and their allowed values."""
    return {f.name: f.metadata["values"] for f in dataclasses.fields(config_type)
            if "values" in f.metadata}


def with_params(config: Any, params: Mapping[str, int]) -> Any:
    """``config`` with the tunable fields in ``params`` replaced (others ignored)."""
    known = allowed_values(type(config))
    chosen = {k: v for k, v in params.items() if k in known}
    return dataclasses.replace(config, **chosen) if chosen else config


def acc_dtype(spec: ConvSpec) -> np.dtype:
    """The accumulator dtype: float64 for float64 results, else float32."""
    return _F64 if spec.dtype == "float64" else _F32


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
    cl_type = CL_TYPES[np.dtype(operand_dtype).name]
    defines: dict[str, Any] = {"ELEM_KIND": ELEM_KINDS[spec.dtype], f"{prefix}_T": cl_type,
                               f"{prefix}_HALF": int(cl_type == "half")}
    if spec.dtype == "float64" or cl_type == "double":
        defines["NEED_FP64"] = 1
    return defines


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def ceil_div(value: int, divisor: int) -> int:
    return -(-value // divisor)


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
    device maximum: registers on GPUs). Builds at planning time, so that a
    build error belongs to planning."""
    while True:
        ref = ProgramRef.of(filename, {**defines, "WG_X": wg_x, "WG_Y": wg_y})
        prg = dctx.program(ref)
        if wg_x * wg_y <= min(limit, prg.max_work_group(kernel, dctx.device)) or (
                wg_x * wg_y == 1):
            return ref, wg_x, wg_y
        if wg_y > 1:
            wg_y //= 2
        else:
            wg_x //= 2


def i64s(values: Any) -> tuple[np.int64, ...]:
    return tuple(np.int64(v) for v in values)


def i32s(values: Any) -> tuple[np.int32, ...]:
    return tuple(np.int32(v) for v in values)

