"""The backward pass on the device: launch planning for kernels_cl/conv_backward.cl.

Three gradients, every one a fixed-order sum without atomics, so repeated
calls give bit-identical results on a device:

* grad-input: a gather over the padded input (``grad_input``), written
  straight into the result for constant borders (padded positions have no
  source pixel) or into a padded temporary that ``fold_border`` reduces
  through the border map's preimage lists (exact for any padding width);
* grad-weight: ``grad_weight_partial`` sums fixed blocks of (n, od, oh) rows
  per weight block, ``reduce_weight`` adds the blocks in ascending order;
* grad-bias: the same two steps over the packed ``grad_output``.

The number of row blocks depends on the problem only (never on the device
or its limits), so the summation order, hence the bits, are a function of
the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..._normalize import is_device_array
from ..._spec import ConvSpec
from ...errors import AllocationError
from .context import DeviceContext
from .launch import (
    BORDER_CODES,
    Operand,
    acc_dtype,
    contiguous_strides,
    enqueue,
    layout_strides,
    mark_complete,
    round_up,
    spatial3,
    type_defines,
)
from .limits import current_limits

# Work-items the grad-weight reduction aims for (items x row blocks): enough
# parallel work for a GPU, a few hundred blocks of a CPU's cores.
TARGET_WEIGHT_ITEMS = 1024
# Fewest (n, od, oh) rows per partial block: bounds the second pass.
MIN_ROWS_PER_BLOCK = 4
WG_1D = 64
WG_GX = (8, 4)


@dataclass(frozen=True)
class BackwardConfig:
    """Blocking, work-group sizes and split of one backward launch."""

    cb: int
    pb: int
    fb: int
    cwb: int
    kwb: int
    wg: int
    wg_x: int
    wg_y: int
    border: int
    splits: int
    rows_per_split: int

    def defines(self) -> dict[str, int]:
        return dict(CB=self.cb, PB=self.pb, FB=self.fb, CWB=self.cwb, KWB=self.kwb, WG=self.wg,
                    WG_X=self.wg_x, WG_Y=self.wg_y, BORDER=self.border)


def _block(count: int, widest: int) -> int:
    """The widest power-of-two vector (1..widest) that ``count`` fills."""
    width = 1
    while width * 2 <= min(count, widest):
        width *= 2
    return width


def plan(spec: ConvSpec, max_work_group: int) -> BackwardConfig:
    """Blocking for ``spec``; work-groups capped at ``max_work_group`` items."""
    widest = 4 if spec.dtype == "float64" else 8
    cb = _block(spec.in_per_group, widest)
    fb = _block(spec.out_per_group, widest)
    kwb = min(spec.kernel_size[-1], 4)
    # About a dozen independent vector accumulators per grad-weight work-item.
    cwb = min(spec.in_per_group, 12 // kwb, 8)
    pb = 8 if spec.in_size[-1] >= 8 else 4
    padded = any(spec.pad_before) or any(spec.pad_after)
    border = BORDER_CODES[spec.border] if padded else 0
    rows = spec.batch * math.prod(spec.out_size[:-1])
    items = (spec.groups * -(-spec.out_per_group // fb) * -(-spec.in_per_group // cwb)
             * math.prod(spec.kernel_size[:-1]) * -(-spec.kernel_size[-1] // kwb))
    splits = max(1, min(-(-TARGET_WEIGHT_ITEMS // items), rows // MIN_ROWS_PER_BLOCK))
    rows_per_split = -(-rows // splits)
    splits = -(-rows // rows_per_split)
    wg = min(WG_1D, max_work_group)
    # Narrow boxes (small images): fewer idle columns, more rows per work-group.
    box_w = spec.in_size[-1] if border == 0 else spec.padded_size[-1]
    wg_x = 1
    while wg_x < min(-(-box_w // pb), WG_GX[0]):
        wg_x *= 2
    wg_y = WG_GX[0] * WG_GX[1] // wg_x
    while wg_x * wg_y > max_work_group:
        if wg_y > 1:
            wg_y //= 2
        else:
            wg_x //= 2
    return BackwardConfig(cb=cb, pb=pb, fb=fb, cwb=cwb, kwb=kwb, wg=wg, wg_x=wg_x, wg_y=wg_y,
                          border=border, splits=splits, rows_per_split=rows_per_split)


@lru_cache(maxsize=64)
def preimage_table(sizes: tuple[int, ...], before: tuple[int, ...], after: tuple[int, ...],
                   border: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """CSR lists per (D, H, W) axis of the padded positions that copy each source index.

    Returns the int32 table and the offsets ``(off_d, off_h, off_w, pos_d,
    pos_h, pos_w)`` of each axis' offset and position arrays in it. The map
    comes from ``numpy.pad`` itself, like the NumPy reference.
    """
    offsets, positions = [], []
    for n, b, a in zip(sizes, before, after):
        source = np.pad(np.arange(n), (b, a), mode=border)
        order = np.argsort(source, kind="stable")   # ascending padded positions per source
        counts = np.bincount(source, minlength=n)
        offsets.append(np.r_[0, np.cumsum(counts)].astype(np.int32))
        positions.append(order.astype(np.int32))
    parts = offsets + positions
    starts = np.r_[0, np.cumsum([len(p) for p in parts])[:-1]]
    return np.concatenate(parts), tuple(int(s) for s in starts)


def run_backward(backend: Any, x: Any, weight: Any, grad_output: Any, spec: ConvSpec,
                 bias: Any = None) -> tuple[Any, ...]:
    """``OpenCLBackend.conv_backward``: host operands give NumPy results, a device
    input gives device results on its queue.

    ``x`` None: the input gradient alone (``conv_transpose``), plus ``bias`` per
    input channel; a 1-tuple. The device-ness follows ``grad_output`` then.
    """
    import pyopencl as cl
    import pyopencl.array as cla

    from .backend import _driver_errors

    dctx: DeviceContext = backend.dctx
    lead = grad_output if x is None else x
    on_device = is_device_array(lead)
    queue = lead.queue if on_device and lead.queue is not None else dctx.queue
    if queue == dctx.queue:
        # Pooled buffers are recycled in queue order, which holds only on our queue.
        allocate = dctx.allocate
    else:
        allocate = dctx.buffer
    dtype = np.dtype(spec.dtype)
    shapes = (spec.input_shape, spec.weight_shape, (spec.out_channels,))
    if x is None:
        shapes = shapes[:1]
    with _driver_errors(spec, dctx.info.name):
        if spec.batch == 0 or spec.out_channels == 0:
            grads = tuple(cla.zeros(queue, s, dtype, allocator=allocate) for s in shapes)
        else:
            grads = tuple(cla.empty(queue, s, dtype, allocator=allocate) for s in shapes)
            x_op = None if x is None else Operand.of(_upload(queue, x, allocate))
            gy_op = Operand.of(_upload(queue, grad_output, allocate))
            w_op = Operand.of(weight) if is_device_array(weight) else None
            w_host = None if w_op is not None else np.asarray(weight)
            b_buf = None if bias is None else _bias_buffer(queue, bias, spec, allocate)
            gw, gb = (None, None) if x is None else (Operand.of(grads[1]), Operand.of(grads[2]))
            _launch(dctx, queue, allocate, x_op, w_op, w_host, gy_op, Operand.of(grads[0]),
                    gw, gb, spec, b_buf)
        if on_device:
            mark_complete(queue, *grads)
            return grads
        # Start every read, then wait once: one synchronisation instead of three.
        results = tuple(np.empty(g.shape, dtype) for g in grads)
        events = [cl.enqueue_copy(queue, r, g.data, is_blocking=False)
                  for r, g in zip(results, grads) if r.size]
        if events:
            cl.wait_for_events(events)
        return results


def _bias_buffer(queue: Any, bias: Any, spec: ConvSpec, allocate: Any) -> Any:
    """The bias (one per input channel of ``spec``) as a contiguous ACC_T buffer."""
    import pyopencl.array as cla

    acc = acc_dtype(spec)
    if is_device_array(bias) and bias.dtype == acc and bias.flags.c_contiguous:
        return bias.base_data if not bias.offset else bias.data
    host = bias.get() if is_device_array(bias) else np.asarray(bias)
    return cla.to_device(queue, np.ascontiguousarray(host, dtype=acc), allocator=allocate,
                         async_=True).data


def _upload(queue: Any, array: Any, allocate: Any) -> Any:
    import pyopencl.array as cla

    if is_device_array(array):
        return array
    # Asynchronous: pyopencl keeps the host array alive until the copy is done.
    return cla.to_device(queue, np.ascontiguousarray(array), allocator=allocate, async_=True)


def _check_bytes(dctx: DeviceContext, spec: ConvSpec, what: str, nbytes: int) -> None:
    if nbytes > dctx.info.max_alloc:
        raise AllocationError(
            f"the backward pass of input {spec.input_shape}, kernel {spec.kernel_size} needs "
            f"a {what} buffer of {nbytes} bytes; device {dctx.info.name!r}'s largest buffer "
            f"is {dctx.info.max_alloc} bytes")


def _program(dctx: DeviceContext, spec: ConvSpec, cfg: BackwardConfig, x: Operand | None,
             w_dtype: np.dtype, gy: Operand, bias: bool) -> Any:
    """conv_backward.cl built for the operand types and the blocking of ``cfg``."""
    defines = type_defines(spec, gy.dtype if x is None else x.dtype, "IN")
    for prefix, dtype in (("W", w_dtype), ("GY", gy.dtype)):
        defines.update(type_defines(spec, dtype, prefix))
    defines.update(cfg.defines())
    if bias:
        defines["GX_BIAS"] = 1
    return dctx.program("conv_backward.cl", defines)


def pack_weights_host(weight: Any, spec: ConvSpec, cb: int) -> np.ndarray:
    """What ``pack_weights_t`` makes, on the host: ``[G][NCB][FG][KD][KH][KW][CB]``."""
    g, cg, fg = spec.groups, spec.in_per_group, spec.out_per_group
    ncb = -(-cg // cb)
    k = spatial3(spec.kernel_size, 1)
    a = np.asarray(weight).astype(acc_dtype(spec), copy=False).reshape(g, fg, cg, *k)
    if spec.flip:
        a = a[..., ::-1, ::-1, ::-1]
    a = np.pad(a, [(0, 0), (0, 0), (0, ncb * cb - cg), (0, 0), (0, 0), (0, 0)])
    a = a.reshape(g, fg, ncb, cb, *k).transpose(0, 2, 1, 4, 5, 6, 3)
    return np.ascontiguousarray(a)


def _launch(dctx: DeviceContext, queue: Any, allocate: Any, x: Operand | None,
            w: Operand | None, w_host: np.ndarray | None, gy: Operand, gx: Operand,
            gw: Operand | None, gb: Operand | None, spec: ConvSpec, bias: Any = None) -> None:
    """Enqueue every backward kernel; the weight is a device ``w`` or a host ``w_host``.

    ``gw`` None: the input gradient alone (``x`` is not read and may be None),
    with ``bias`` (an ACC_T buffer, one per input channel) added to it.
    """
    import pyopencl.array as cla

    limits = current_limits(dctx.info)
    # A host weight is packed by NumPy in the accumulator type: one launch fewer.
    w_dtype = w.dtype if w is not None else acc_dtype(spec)
    cfg = plan(spec, limits.max_work_group)
    prg = _program(dctx, spec, cfg, x, w_dtype, gy, bias is not None)
    # A kernel may allow less than the device maximum (registers on GPUs).
    allowed = min(prg.max_work_group(k, dctx.device) for k in (
        "grad_input", "grad_weight_partial", "pack_gy"))
    if allowed < max(cfg.wg, cfg.wg_x * cfg.wg_y):
        cfg = plan(spec, allowed)
        prg = _program(dctx, spec, cfg, x, w_dtype, gy, bias is not None)

    acc = acc_dtype(spec)
    i64, i32 = np.int64, np.int32
    g, cg, fg = spec.groups, spec.in_per_group, spec.out_per_group
    ncb, nfb = -(-cg // cfg.cb), -(-fg // cfg.fb)
    in_d, in_h, in_w = spatial3(spec.in_size, 1)
    out_d, out_h, out_w = spatial3(spec.out_size, 1)
    kd, kh, kw = spatial3(spec.kernel_size, 1)
    strides = (*spatial3(spec.stride, 1), *spatial3(spec.dilation, 1))
    pd, ph, pw = spatial3(spec.pad_before, 0)
    pad_d, pad_h, pad_w = spatial3(spec.padded_size, 1)
    wg = cfg.wg

    def run1d(name: str, total: int, *args: Any) -> None:
        enqueue(prg, name, queue, (round_up(total, wg),), (wg,), *args)

    # ---- the transposed weights
    wt_total = g * ncb * fg * kd * kh * kw * cfg.cb
    _check_bytes(dctx, spec, "packed weight", wt_total * acc.itemsize)
    if w is None:
        wt = cla.to_device(queue, pack_weights_host(w_host, spec, cfg.cb),
                           allocator=allocate, async_=True).data
    else:
        wt = allocate(wt_total * acc.itemsize)
        wstr = (w.strides[0], w.strides[1], *spatial3(w.strides[2:], 0))
        run1d("pack_weights_t", wt_total, w.buffer, i64(w.offset), *(i64(s) for s in wstr),
              wt, i64(wt_total), i32(cg), i32(fg), i32(ncb), i32(kd), i32(kh), i32(kw),
              i32(int(spec.flip)))
    gy_str = layout_strides(gy.strides, spec)

    # ---- grad-input
    gx_str = layout_strides(gx.strides, spec)
    if cfg.border == 0:   # constant (or no padding): the interior box, straight to gx
        box0, box = (pd, ph, pw), (in_d, in_h, in_w)
        target, t_off, t_str = gx.buffer, gx.offset, gx_str
        tmp = None
    else:                 # the whole padded box into a temporary, then the fold
        box0, box = (0, 0, 0), (pad_d, pad_h, pad_w)
        tmp_elems = spec.batch * spec.in_channels * pad_d * pad_h * pad_w
        _check_bytes(dctx, spec, "padded grad_input", tmp_elems * acc.itemsize)
        tmp = allocate(tmp_elems * acc.itemsize)
        target, t_off = tmp, 0
        t_str = (spec.in_channels * pad_d * pad_h * pad_w, pad_d * pad_h * pad_w,
                 pad_h * pad_w, pad_w, 1)
    global_gx = (round_up(-(-box[2] // cfg.pb), cfg.wg_x), round_up(box[0] * box[1], cfg.wg_y),
                 spec.batch * g * ncb)
    enqueue(prg, "grad_input", queue, global_gx, (cfg.wg_x, cfg.wg_y, 1),
            gy.buffer, i64(gy.offset), *(i64(s) for s in gy_str), wt,
            target, i64(t_off), *(i64(s) for s in t_str),
            *(i64(v) for v in (*box0, *box, out_d, out_h, out_w)),
            i32(kd), i32(kh), i32(kw), *(i32(s) for s in strides),
            i32(g), i32(cg), i32(fg), i32(ncb), wt if bias is None else bias)
    if tmp is not None:
        table, starts = preimage_table((in_d, in_h, in_w), (pd, ph, pw),
                                       spatial3(spec.pad_after, 0), spec.border)
        tab = cla.to_device(queue, table, allocator=allocate, async_=True)
        pixels = in_d * in_h * in_w
        enqueue(prg, "fold_border", queue, (round_up(pixels, wg), spec.batch * spec.in_channels),
                (wg, 1), tmp, tab.data, *(i32(s) for s in starts),
                gx.buffer, i64(gx.offset), *(i64(s) for s in gx_str),
                *(i64(v) for v in (spec.in_channels, in_d, in_h, in_w, pad_d, pad_h, pad_w)))

    if gw is None:
        return

    # ---- grad-weight and grad-bias: fixed row blocks, then an ordered sum
    gyp_items = spec.batch * g * nfb * out_d * out_h * out_w
    _check_bytes(dctx, spec, "packed grad_output", gyp_items * cfg.fb * acc.itemsize)
    positions = out_d * out_h * out_w
    if (cfg.fb == 1 and not spec.channels_last and gy.offset == 0 and gy.dtype == acc
            and gy.strides == contiguous_strides(spec.output_shape)):
        # One filter per block: the packed layout is grad_output itself.
        gyp = gy.buffer
    else:
        gyp = allocate(gyp_items * cfg.fb * acc.itemsize)
        enqueue(prg, "pack_gy", queue, (round_up(positions, wg), spec.batch * g * nfb),
                (wg, 1), gy.buffer, i64(gy.offset), *(i64(s) for s in gy_str), gyp,
                i64(out_d), i64(out_h), i64(out_w), i32(g), i32(fg), i32(nfb))
    nkwb, ncwb = -(-kw // cfg.kwb), -(-cg // cfg.cwb)
    items = g * nfb * ncwb * kd * kh * nkwb
    rows = spec.batch * out_d * out_h
    part_elems = cfg.splits * items * cfg.cwb * cfg.kwb * cfg.fb
    _check_bytes(dctx, spec, "grad_weight partial", part_elems * acc.itemsize)
    part = allocate(part_elems * acc.itemsize)
    partb = allocate(cfg.splits * g * nfb * cfg.fb * acc.itemsize)
    x_str = layout_strides(x.strides, spec)
    enqueue(prg, "grad_weight_partial", queue, (round_up(items, wg), cfg.splits), (wg, 1),
            x.buffer, i64(x.offset), *(i64(s) for s in x_str), gyp, part, i64(items), partb,
            *(i64(v) for v in (in_d, in_h, in_w, out_d, out_h, out_w)),
            i32(kd), i32(kh), i32(nkwb), *(i32(s) for s in strides),
            i64(pd), i64(ph), i64(pw), i32(g), i32(cg), i32(ncwb), i32(nfb),
            i64(cfg.rows_per_split), i64(rows), acc.type(spec.fill_value))
    w_total = spec.out_channels * cg * kd * kh * kw
    run1d("reduce_partials", w_total + spec.out_channels, part, partb, i64(items),
          i64(cfg.splits), gw.buffer, gb.buffer, i64(w_total), i32(g), i32(cg), i32(ncwb),
          i32(fg),
          i32(nfb), i32(kd), i32(kh), i32(kw), i32(nkwb), i32(int(spec.flip)))
