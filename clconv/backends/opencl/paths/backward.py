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

import numpy as np

from ...._borders import preimage
from ...._spec import ConvSpec, contiguous_strides
from ....errors import AllocationError
from ..build import ProgramRef
from ..context import DeviceContext, Limits
from ..plan import OffsetOf, Plan, Ref, Scratch, Step
from .common import (
    BORDER_CODES,
    acc_dtype,
    ceil_div,
    i32s,
    i64s,
    layout_strides,
    round_up,
    spatial3,
    type_defines,
)
from .pack import weight_pack_plan

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


def backward_config(spec: ConvSpec, max_work_group: int) -> BackwardConfig:
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


@dataclass(frozen=True)
class BackwardLayout:
    """What a backward plan depends on besides the problem: operand dtypes and strides.

    ``x_dtype`` None: the input gradient alone (the transposed convolution).
    ``w_dtype`` None: a host weight, packed on the host and bound as ``wt``.
    """

    x_dtype: np.dtype | None
    x_strides: tuple[int, ...] | None
    w_dtype: np.dtype | None
    w_strides: tuple[int, ...] | None
    gy_dtype: np.dtype
    gy_strides: tuple[int, ...]
    gy_at_start: bool  # grad_output starts at its buffer's first element
    gx_strides: tuple[int, ...]
    bias: bool  # the transposed convolution's bias, added to the input gradient


def _check_bytes(dctx: DeviceContext, spec: ConvSpec, limits: Limits, what: str,
                 nbytes: int) -> None:
    if nbytes > limits.max_alloc:
        raise AllocationError(
            f"the backward pass of input {spec.input_shape}, kernel {spec.kernel_size} needs "
            f"a {what} buffer of {nbytes} bytes; device {dctx.info.name!r}'s largest buffer "
            f"is {limits.max_alloc} bytes")


def _program(spec: ConvSpec, cfg: BackwardConfig, lay: BackwardLayout) -> ProgramRef:
    """conv_backward.cl built for the operand types and the blocking of ``cfg``."""
    defines = type_defines(spec, lay.gy_dtype if lay.x_dtype is None else lay.x_dtype, "IN")
    # Only grad_output's storage type matters besides the input's: the weights
    # arrive packed in the accumulator type (pack.cl or the host packer).
    defines.update(type_defines(spec, lay.gy_dtype, "GY"))
    defines.update(cfg.defines())
    if lay.bias:
        defines["GX_BIAS"] = 1
    return ProgramRef.of("conv_backward.cl", defines)


def backward_plan(dctx: DeviceContext, spec: ConvSpec, lay: BackwardLayout,
                  limits: Limits) -> Plan:
    """Every backward kernel in order: the transposed weights (device weights), the
    input gradient (and its border fold), then weight and bias gradients (when
    ``lay.x_dtype`` is set). Binds ``x``, ``w_src`` (device weight) or ``wt``
    (host-packed weight), ``gy``, ``gx``, ``gw``, ``gb`` and ``bias``."""
    cfg = backward_config(spec, limits.max_work_group)
    prg = _program(spec, cfg, lay)
    # A kernel may allow less than the device maximum (registers on GPUs).
    built = dctx.program(prg)
    allowed = min(built.max_work_group(k, dctx.device) for k in (
        "grad_input", "grad_weight_partial", "pack_gy"))
    if allowed < max(cfg.wg, cfg.wg_x * cfg.wg_y):
        cfg = backward_config(spec, allowed)
        prg = _program(spec, cfg, lay)
    plan = _weights_t(dctx, spec, cfg, prg, lay, limits).then(
        _grad_input(dctx, spec, cfg, prg, lay, limits))
    if lay.x_dtype is not None:
        plan = plan.then(_grad_weight(dctx, spec, cfg, prg, lay, limits))
    return plan


def transposed_block(spec: ConvSpec, limits: Limits) -> int:
    """Channels per block of the transposed weights (``cb``)."""
    return backward_config(spec, limits.max_work_group).cb


def _weights_t(dctx: DeviceContext, spec: ConvSpec, cfg: BackwardConfig, prg: ProgramRef,
               lay: BackwardLayout, limits: Limits) -> Plan:
    """The transposed weights ``wt``: pack.cl's ``pack_weights`` from a device weight
    (a host weight is packed by :func:`.pack.pack_host` and bound as ``wt``)."""
    g, cg, fg = spec.groups, spec.in_per_group, spec.out_per_group
    kd, kh, kw = spatial3(spec.kernel_size, 1)
    total = g * ceil_div(cg, cfg.cb) * fg * kd * kh * kw * cfg.cb
    _check_bytes(dctx, spec, limits, "packed weight", total * acc_dtype(spec).itemsize)
    if lay.w_dtype is None:
        return Plan(())
    return weight_pack_plan(spec, cfg.cb, lay.w_dtype, lay.w_strides, transposed=True
                            ).renamed({"w": "wt"})


def _grad_input(dctx: DeviceContext, spec: ConvSpec, cfg: BackwardConfig, prg: ProgramRef,
                lay: BackwardLayout, limits: Limits) -> Plan:
    """``grad_input`` into ``gx`` (constant borders) or into the padded scratch ``gx_pad``
    that ``fold_border`` sums into ``gx`` through the preimage lists."""
    acc = acc_dtype(spec)
    g, cg, fg = spec.groups, spec.in_per_group, spec.out_per_group
    ncb = ceil_div(cg, cfg.cb)
    in_d, in_h, in_w = spatial3(spec.in_size, 1)
    pad_d, pad_h, pad_w = spatial3(spec.padded_size, 1)
    gx_str = layout_strides(lay.gx_strides, spec)
    scratch: tuple[Scratch, ...] = ()
    if cfg.border == 0:   # constant (or no padding): the interior box, straight to gx
        box0, box = spatial3(spec.pad_before, 0), (in_d, in_h, in_w)
        target, t_str = "gx", gx_str
    else:                 # the whole padded box into a temporary, then the fold
        box0, box = (0, 0, 0), (pad_d, pad_h, pad_w)
        elems = spec.batch * spec.in_channels * pad_d * pad_h * pad_w
        _check_bytes(dctx, spec, limits, "padded grad_input", elems * acc.itemsize)
        scratch = (Scratch("gx_pad", elems * acc.itemsize),)
        target = "gx_pad"
        t_str = (spec.in_channels * pad_d * pad_h * pad_w, pad_d * pad_h * pad_w,
                 pad_h * pad_w, pad_w, 1)
    global_gx = (round_up(ceil_div(box[2], cfg.pb), cfg.wg_x),
                 round_up(box[0] * box[1], cfg.wg_y), spec.batch * g * ncb)
    steps = [Step.of(
        prg, "grad_input", global_gx, (cfg.wg_x, cfg.wg_y, 1),
        Ref("gy"), OffsetOf("gy"), *i64s(layout_strides(lay.gy_strides, spec)), Ref("wt"),
        Ref(target), OffsetOf(target), *i64s(t_str),
        *i64s((*box0, *box, *spatial3(spec.out_size, 1))),
        *i32s((*spatial3(spec.kernel_size, 1), *spatial3(spec.stride, 1),
               *spatial3(spec.dilation, 1), g, cg, fg, ncb)),
        Ref("bias" if lay.bias else "wt"))]
    constants: tuple[tuple[str, np.ndarray], ...] = ()
    if cfg.border != 0:
        table, starts = _preimage_table((in_d, in_h, in_w), spatial3(spec.pad_before, 0),
                                        spatial3(spec.pad_after, 0), spec.border)
        constants = (("table", table),)
        pixels = in_d * in_h * in_w
        steps.append(Step.of(
            prg, "fold_border", (round_up(pixels, cfg.wg), spec.batch * spec.in_channels),
            (cfg.wg, 1), Ref("gx_pad"), Ref("table"), *i32s(starts),
            Ref("gx"), OffsetOf("gx"), *i64s(gx_str),
            *i64s((spec.in_channels, in_d, in_h, in_w, pad_d, pad_h, pad_w))))
    return Plan(tuple(steps), scratch, constants)


def _preimage_table(sizes: tuple[int, ...], before: tuple[int, ...], after: tuple[int, ...],
                    border: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """The preimage lists of the (D, H, W) axes in one int32 table: the offsets of each
    axis, then the positions of each, and where each of the six arrays starts."""
    lists = [preimage(n, b, a, border) for n, b, a in zip(sizes, before, after)]
    parts = [offsets for offsets, _ in lists] + [positions for _, positions in lists]
    starts = np.r_[0, np.cumsum([len(p) for p in parts])[:-1]]
    return np.concatenate(parts).astype(np.int32), tuple(int(s) for s in starts)


def _grad_weight(dctx: DeviceContext, spec: ConvSpec, cfg: BackwardConfig, prg: ProgramRef,
                 lay: BackwardLayout, limits: Limits) -> Plan:
    """Weight and bias gradients: fixed row blocks (``grad_weight_partial``), then an
    ordered sum (``reduce_partials``); ``grad_output`` packed first unless its own
    layout is the packed one."""
    acc = acc_dtype(spec)
    g, cg, fg = spec.groups, spec.in_per_group, spec.out_per_group
    nfb = ceil_div(fg, cfg.fb)
    out_d, out_h, out_w = spatial3(spec.out_size, 1)
    kd, kh, kw = spatial3(spec.kernel_size, 1)
    steps, scratch = [], []
    gyp_items = spec.batch * g * nfb * out_d * out_h * out_w
    _check_bytes(dctx, spec, limits, "packed grad_output", gyp_items * cfg.fb * acc.itemsize)
    if (cfg.fb == 1 and not spec.channels_last and lay.gy_at_start and lay.gy_dtype == acc
            and lay.gy_strides == contiguous_strides(spec.output_shape)):
        gyp = "gy"  # one filter per block: the packed layout is grad_output itself
    else:
        gyp = "gyp"
        scratch.append(Scratch("gyp", gyp_items * cfg.fb * acc.itemsize))
        steps.append(Step.of(
            prg, "pack_gy", (round_up(out_d * out_h * out_w, cfg.wg), spec.batch * g * nfb),
            (cfg.wg, 1), Ref("gy"), OffsetOf("gy"), *i64s(layout_strides(lay.gy_strides, spec)),
            Ref("gyp"), *i64s((out_d, out_h, out_w)), *i32s((g, fg, nfb))))
    nkwb, ncwb = ceil_div(kw, cfg.kwb), ceil_div(cg, cfg.cwb)
    items = g * nfb * ncwb * kd * kh * nkwb
    rows = spec.batch * out_d * out_h
    part = cfg.splits * items * cfg.cwb * cfg.kwb * cfg.fb * acc.itemsize
    _check_bytes(dctx, spec, limits, "grad_weight partial", part)
    scratch += [Scratch("part", part),
                Scratch("partb", cfg.splits * g * nfb * cfg.fb * acc.itemsize)]
    steps.append(Step.of(
        prg, "grad_weight_partial", (round_up(items, cfg.wg), cfg.splits), (cfg.wg, 1),
        Ref("x"), OffsetOf("x"), *i64s(layout_strides(lay.x_strides, spec)), Ref(gyp),
        Ref("part"), np.int64(items), Ref("partb"),
        *i64s((*spatial3(spec.in_size, 1), out_d, out_h, out_w)),
        *i32s((kd, kh, nkwb, *spatial3(spec.stride, 1), *spatial3(spec.dilation, 1))),
        *i64s(spatial3(spec.pad_before, 0)), *i32s((g, cg, ncwb, nfb)),
        *i64s((cfg.rows_per_split, rows)), acc.type(spec.fill_value)))
    w_total = spec.out_channels * cg * kd * kh * kw
    steps.append(Step.of(
        prg, "reduce_partials", (round_up(w_total + spec.out_channels, cfg.wg),), (cfg.wg,),
        Ref("part"), Ref("partb"), *i64s((items, cfg.splits)), Ref("gw"), Ref("gb"),
        np.int64(w_total), *i32s((g, cg, ncwb, fg, nfb, kd, kh, kw, nkwb, int(spec.flip)))))
    return Plan(tuple(steps), tuple(scratch))
