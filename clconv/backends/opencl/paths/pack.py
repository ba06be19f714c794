"""Weight and bias packing, for the forward kernels and the backward pass.

Every forward kernel reads weights as ``[G][NFB][CG][KD][KH][KW][FB]`` in the
accumulator type (``FB`` filters per block; zero filters past the last;
flipped taps for a true convolution). The backward pass reads the transposed
weights in the same layout with the roles of filters and channels swapped,
which :func:`pack_host` builds from a transposed view. Small host weights
are packed by NumPy; device weights and host weights of at least
:data:`DEVICE_PACK_MIN` bytes are packed by kernels_cl/pack.cl.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...._spec import ConvSpec
from ..build import ProgramRef
from ..context import DeviceContext
from ..execute import IN_PLACE_MIN, Operand, aligned_empty, host_buffer, host_operand, run
from ..plan import OffsetOf, Plan, Ref, Scratch, Step
from .common import acc_dtype, ceil_div, i32s, i64s, round_up, spatial3, type_defines

WG_PACK = 64

# Host weights of at least this many bytes are packed on the device: NumPy's
# transpose into a fresh array page-faults on every call, while pack.cl
# writes a pooled buffer, and a GPU packs faster still.
DEVICE_PACK_MIN = 1 << 20


def packed_bytes(spec: ConvSpec, fb: int) -> int:
    """Device bytes of the packed weight (``fb`` filters per block) and bias."""
    filters = spec.groups * ceil_div(spec.out_per_group, fb) * fb
    return ((filters * spec.in_per_group * math.prod(spec.kernel_size) + spec.out_channels)
            * acc_dtype(spec).itemsize)


def pack_host(weight: np.ndarray | list[np.ndarray], spec: ConvSpec, fb: int,
              transposed: bool = False, align: int = 128) -> np.ndarray:
    """The packed layout built on the host, aligned to ``align`` bytes (at least 128):
    a device's ``zero_copy_align`` lets unified memory use it in place.

    ``weight``: one array, or a list of arrays that hold consecutive groups of
    the filters, each packed where it lies (not joined first: a copy of
    strided views with a few taps costs several times the packing).
    ``transposed``: the backward pass's layout ``[G][NCB][FG][KD][KH][KW][CB]``
    (``fb`` is then the channel block), the forward layout of the weight with
    filters and channels swapped within each group.
    """
    acc = acc_dtype(spec)
    pieces = weight if isinstance(weight, list) else [weight]
    g, fg, cg = spec.groups, spec.out_per_group, spec.in_per_group
    if transposed:
        fg, cg = cg, fg
    nfb = ceil_div(fg, fb)
    taps = spatial3(spec.kernel_size, 1)
    # Aligned: the kernels read FB filters as one aligned vector, and on
    # unified memory this array is the device buffer itself.
    out = aligned_empty((g, nfb, cg, *taps, fb), acc, max(align, 128))
    at = 0
    for piece in pieces:
        w = np.asarray(piece)
        if spec.dtype == "float16" and w.dtype != np.float16:
            w = w.astype(np.float16)  # the contract rounds weights to the input dtype
        if spec.flip:
            w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * spec.ndim]
        groups = len(w) // (cg if transposed else fg)
        blocked = w.reshape(groups, *((cg, fg) if transposed else (fg, cg)), *taps)
        if transposed:
            blocked = blocked.transpose(0, 2, 1, 3, 4, 5)
        if fg != nfb * fb:  # zero filters complete the last block
            full = np.zeros((groups, nfb * fb, cg, *taps), dtype=acc)
            full[:, :fg] = blocked
            blocked = full
        out[at:at + groups] = blocked.reshape(groups, nfb, fb, cg, *taps).transpose(
            0, 1, 3, 4, 5, 6, 2)
        at += groups
    return out


def _pack_program(spec: ConvSpec, dtype: np.dtype, fb: int) -> ProgramRef:
    defines = type_defines(spec, dtype, "W")
    defines.update(FB=fb, WG_PACK=WG_PACK,
                   ROUND_HALF=int(spec.dtype == "float16" and dtype.name != "float16"))
    return ProgramRef.of("pack.cl", defines)


def weight_pack_plan(spec: ConvSpec, fb: int, w_dtype: np.dtype,
                     w_strides: tuple[int, ...], transposed: bool = False) -> Plan:
    """pack.cl's ``pack_weights`` from the bound ``w_src`` into the scratch ``w``
    (``transposed``: the backward pass's layout, as :func:`pack_host`'s)."""
    g, fg, cg = spec.groups, spec.out_per_group, spec.in_per_group
    sf, sc = w_strides[0], w_strides[1]
    ws_g = fg * sf
    if transposed:  # the channels are the blocked "filters", the filters the "channels"
        fg, cg, sf, sc = cg, fg, sc, sf
    nfb = ceil_div(fg, fb)
    kd, kh, kw = spatial3(spec.kernel_size, 1)
    slabs = g * nfb * cg * kd  # one work-item each: kh * kw * fb values
    ws = (ws_g, sf, sc, *spatial3(w_strides[2:], 0))
    step = Step.of(_pack_program(spec, w_dtype, fb), "pack_weights",
                   (round_up(slabs, WG_PACK),), (WG_PACK,),
                   Ref("w_src"), OffsetOf("w_src"), *i64s(ws), Ref("w"), np.int64(slabs),
                   *i32s((g, cg, fg, nfb, kd, kh, kw, int(spec.flip))))
    return Plan((step,), (Scratch("w", slabs * kh * kw * fb * acc_dtype(spec).itemsize),))


def bias_pack_plan(spec: ConvSpec, b_dtype: np.dtype, b_stride: int) -> Plan:
    """pack.cl's ``pack_vector``: the bound ``b_src`` as an accumulator vector ``b``."""
    n = spec.out_channels
    step = Step.of(_pack_program(spec, b_dtype, 1), "pack_vector",
                   (round_up(n, WG_PACK),), (WG_PACK,),
                   Ref("b_src"), OffsetOf("b_src"), np.int64(b_stride), Ref("b"), np.int64(n))
    return Plan((step,), (Scratch("b", n * acc_dtype(spec).itemsize),))


def pack_operands(dctx: DeviceContext, queue: Any, weight: Any, bias: Any, spec: ConvSpec,
                  fb: int, allocate: Any, in_place: bool = False) -> dict[str, Any]:
    """Weight and bias packed for the device: ``{"w": buffer, "b": buffer or None}``.

    ``weight`` is an :class:`Operand` (packed on the device), or a host array
    (or a list of them, see :func:`pack_host`) of
    the spec's dtype (packed by NumPy and uploaded once, or with ``in_place``
    used in place on unified memory; from :data:`DEVICE_PACK_MIN` bytes uploaded
    as it is and packed on the device); ``bias`` likewise an :class:`Operand`, a
    host array or ``None``. ``in_place`` (see :func:`..execute.host_buffer`): the
    call keeps the returned mapping until its kernels are done.
    """
    acc = acc_dtype(spec)
    keep = {}
    pieces = isinstance(weight, list)  # consecutive groups of the filters: NumPy packs them
    if not pieces and isinstance(weight, np.ndarray) and weight.nbytes >= DEVICE_PACK_MIN:
        weight = host_operand(dctx, queue, np.ascontiguousarray(weight), allocate,
                              in_place=in_place)
        # In place, the host memory must outlive the pack kernel: the call keeps
        # the returned mapping, this entry unused by the plans, until its work is done.
        keep["keep"] = weight
    if isinstance(weight, Operand):
        plan = dctx.memo(("pack w", spec, fb, weight.dtype, weight.strides),
                         lambda: weight_pack_plan(spec, fb, weight.dtype, weight.strides))
        packed = allocate(plan.scratch_bytes)
        run(dctx, queue, Plan(plan.steps), {"w_src": weight, "w": packed}, allocate)
    elif (not pieces and fb == 1 and not spec.flip and weight.dtype == acc
          and weight.nbytes < IN_PLACE_MIN and weight.flags.c_contiguous):
        # One filter per block: the packed layout is the weight's own; small
        # weights are copied when the buffer is created (no NumPy packing).
        packed = host_buffer(dctx, queue, weight, allocate)
    else:
        packed = host_buffer(dctx, queue, pack_host(weight, spec, fb, align=dctx.zero_copy_align),
                             allocate, in_place=in_place)
    return {"w": packed, "b": pack_bias(dctx, queue, bias, spec, allocate), **keep}


def pack_bias(dctx: DeviceContext, queue: Any, bias: Any, spec: ConvSpec,
              allocate: Any) -> Any:
    """The bias as a contiguous accumulator-type buffer (``None`` for none):
    ``bias`` is an :class:`Operand`, a host array of the spec's dtype or ``None``."""
    if isinstance(bias, Operand):
        plan = dctx.memo(("pack b", spec, bias.dtype, bias.strides[0]),
                         lambda: bias_pack_plan(spec, bias.dtype, bias.strides[0]))
        packed = allocate(plan.scratch_bytes)
        run(dctx, queue, Plan(plan.steps), {"b_src": bias, "b": packed}, allocate)
        return packed
    if bias is None:
        return None
    # A host bias of the spec's dtype is exact in the accumulator type; the copy
    # is private, since the caller may reuse theirs.
    return host_buffer(dctx, queue, np.array(bias, dtype=acc_dtype(spec)), allocate)
