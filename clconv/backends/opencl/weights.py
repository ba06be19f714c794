"""Weight and bias packing for the forward kernels (NumPy on the host, pack.cl on the device).

Every forward kernel reads weights as ``[G][NFB][CG][KD][KH][KW][FB]`` in the
accumulator type (``FB`` filters per block; zero filters past the last;
flipped taps for a true convolution). Small host weights are packed by
NumPy; device weights and host weights of at least :data:`DEVICE_PACK_MIN`
bytes are packed by kernels_cl/pack.cl.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._spec import ConvSpec
from .context import DeviceContext
from .launch import (
    ZERO_COPY_MIN,
    Operand,
    acc_dtype,
    aligned_empty,
    enqueue,
    host_buffer,
    host_operand,
    round_up,
    spatial3,
    type_defines,
)

WG_PACK = 64


# Host weights of at least this many bytes are packed on the device (pack.cl)
# instead of by NumPy: 512x512x3x3 float32 (9.4 MB) took 1.2 ms to pack plus
# page faults on a fresh array per call in NumPy, 0.76 ms in pack.cl into a
# pooled buffer (PoCL, 2 threads); a GPU packs it faster still.
DEVICE_PACK_MIN = 1 << 20


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
