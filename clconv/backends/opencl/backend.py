"""The OpenCL backend object: one straight line from a spec to a result.

``spec -> choice`` (path and configuration: :mod:`.paths`, memoised by the
device context) ``-> packed weights -> pieces`` (host inputs that would not
fit the device are split, :mod:`.plan`) ``-> plan per piece`` (memoised)
``-> run`` (:mod:`.execute`) ``-> result``. Host operands give NumPy results;
a device input (``pyopencl.array.Array``) gives a device result on the
input's own queue, with no host round trip. The backward pass and the
transposed convolution take the same route with the plan of
:mod:`.paths.backward`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..._normalize import as_operand
from ..._spec import ConvSpec, contiguous_strides
from ...errors import AllocationError, ArgumentError, BackendUnavailable
from . import tuning
from .arrays import is_array
from .build import ProgramRef
from .context import DeviceContext, Limits, is_released
from .device import check_not_forked
from .execute import (
    ZERO_COPY_MIN,
    Operand,
    aligned_empty,
    driver_errors,
    host_buffer,
    host_operand,
    mark_complete,
    page_view,
    read_all,
    read_back,
    run,
    upload,
)
from .joined import call_shape, joined_parts, joining
from .paths import PATHS, Choice, choice_state, choices, configured
from .paths.backward import BackwardLayout, backward_plan, transposed_block
from .paths.common import CL_TYPES, acc_dtype, ceil_div, round_up
from .paths.gemm import GemmPath
from .paths.pack import pack_host
from .plan import Layout, Piece, Plan, Ref, Step, plan_pieces, take_piece

WG_CAST = 64
# The paths whose kernels can store an integer result (conv_rows.cl's OUT_SAT, in
# the last pass).
SATURATING_PATHS = frozenset({"rows", "interleaved", "separable", "separable_interleaved"})
CAST_CHUNK = 64  # elements per work-item of cast.cl


class OpenCLBackend:
    """The :class:`clconv.Backend` protocol on one OpenCL device."""

    def __init__(self, name: str, dctx: DeviceContext) -> None:
        self.name = name
        self.dctx = dctx

    def __repr__(self) -> str:
        info = self.dctx.info
        return f"<clconv OpenCLBackend {self.name}: {info.name} ({info.platform})>"

    @property
    def queue(self) -> Any:
        """The backend's own command queue (host inputs run here)."""
        return self.dctx.queue

    @property
    def context(self) -> Any:
        return self.dctx.context

    def stats(self) -> dict[str, int]:
        """Live and cached device buffers (:meth:`DeviceContext.memory_stats`) and the
        program cache's ``cache_size`` / ``cache_max_size`` / ``builds``."""
        programs = self.dctx.programs
        return {**self.dctx.memory_stats(), "cache_size": len(programs),
                "cache_max_size": programs.max_size, "builds": programs.builds}

    # ------------------------------------------------------------ arrays

    def owns(self, array: Any) -> bool:
        """True for a device array (``pyopencl.array.Array``), the kind this backend uses."""
        return is_array(array)

    def to_device(self, array: Any) -> Any:
        """Upload a host array to this backend's queue (device arrays on it pass through)."""
        import pyopencl.array as cla

        check_not_forked()
        if is_array(array):
            self._check_device_array(array, "array")
            return array
        host = np.ascontiguousarray(as_operand(array, "array"))  # native byte order
        return cla.to_device(self.queue, host, allocator=self.dctx.buffer)

    @contextlib.contextmanager
    def host_view(self, array: np.ndarray) -> Iterator[Any]:
        """A read-only device array over the C-contiguous host ``array``'s own memory
        where the device shares host memory (else an upload, as :meth:`to_device`),
        for work whose result the caller reads back inside the ``with`` block; on
        leaving it, the queue is waited for, so that no kernel reads the memory later
        (also when the block raises)."""
        import pyopencl as cl
        import pyopencl.array as cla

        check_not_forked()
        page = page_view(self.dctx, array)
        if page is None:
            device = self.to_device(array)
        else:
            buffer = cl.Buffer(self.context, cl.mem_flags.USE_HOST_PTR | cl.mem_flags.READ_ONLY,
                               hostbuf=page[0])
            device = cla.Array(self.queue, array.shape, array.dtype, data=buffer,
                               offset=page[1] * array.dtype.itemsize)
        try:
            yield device
        finally:
            self.queue.finish()

    def to_host(self, array: Any) -> np.ndarray:
        """A device array's data as a NumPy array (host arrays pass through)."""
        return array.get() if is_array(array) else np.asarray(array)

    def _check_device_array(self, array: Any, name: str) -> None:
        if is_released(array.base_data):
            raise ArgumentError(
                f"{name} is a device array whose buffer was released; expected a live array "
                "(upload the data again with clconv.to_device)")
        if array.context != self.context:
            raise ArgumentError(
                f"{name} is a pyopencl array from another OpenCL context; expected an array "
                f"created on backend {self.name!r}'s context (use clconv.to_device(x, "
                f"backend={self.name!r}) or get_backend({self.name!r}).queue)")
        if array.queue is not None and array.queue.device != self.dctx.device:
            raise ArgumentError(
                f"{name} lives on device {array.queue.device.name.strip()!r}; backend "
                f"{self.name!r} runs on {self.dctx.info.name!r}")

    def _checked(self, spec: ConvSpec, **operands: Any) -> None:
        """Refuse a forked process, float64 without fp64, and foreign device arrays."""
        check_not_forked()
        if spec.dtype == "float64" and not self.dctx.info.fp64:
            raise BackendUnavailable(
                f"backend {self.name!r}: device {self.dctx.info.name!r} has no cl_khr_fp64, so "
                "it cannot compute float64; use float32 input or the 'numpy' backend")
        for name, operand in operands.items():
            if is_array(operand):
                self._check_device_array(operand, name)

    def _queue_of(self, lead: Any) -> Any:
        """The queue a call runs on: a device input's own, else the backend's."""
        if is_array(lead) and lead.queue is not None:
            return lead.queue
        return self.queue

    # ------------------------------------------------------------ forward

    def conv_forward(self, x: Any, weight: Any, bias: Any, spec: ConvSpec) -> Any:
        """The convolution (cross-correlation unless ``spec.flip``) plus bias."""
        self._checked(spec, input=x, weight=weight, bias=bias)
        import pyopencl.array as cla

        device = is_array(x)
        queue = self._queue_of(x)
        allocate = self.dctx.allocator(queue)
        if spec.batch == 0 or spec.out_channels == 0:
            if device:
                return cla.zeros(queue, spec.output_shape, np.dtype(spec.dtype),
                                 allocator=allocate)
            return np.zeros(spec.output_shape, dtype=spec.dtype)
        limits = self.dctx.limits()
        if device:
            out_bytes = math.prod(spec.output_shape) * np.dtype(spec.dtype).itemsize
            if out_bytes > limits.max_alloc:
                raise AllocationError(
                    f"the result {spec.output_shape} ({out_bytes} bytes) of a device-array "
                    f"input exceeds device {self.dctx.info.name!r}'s largest buffer "
                    f"({limits.max_alloc} bytes); pass a host array to have it tiled")
        w_op = Operand.of(weight) if is_array(weight) else np.asarray(weight)
        b_op = None if bias is None else Operand.of(bias) if is_array(bias) else np.asarray(bias)
        with driver_errors(spec, self.dctx.info.name):
            # A host call waits for its kernels, so its host operands may be used
            # in place; a device call returns at once, and they are copied.
            choice, packed = self._pack(spec, limits, queue, w_op, b_op, allocate, not device)
            if device:
                return self._forward_device(choice, packed, x, spec, limits, queue, allocate)
            return self._forward_host(choice, packed, np.asarray(x), spec, limits, queue,
                                      allocate)

    def conv_forward_saturated(self, x: np.ndarray, weight: Any, bias: Any, spec: ConvSpec,
                               dtype: Any) -> np.ndarray | None:
        """The convolution of host operands stored straight into the integer ``dtype``
        (8 to 32 bits), rounded and saturated as :meth:`saturate` does (or into the
        spec's own dtype), where the chosen path's kernel stores that way (the rows
        kernels); None otherwise (nothing run: the caller converts a float result).
        ``x`` may keep an integer or float dtype of its own (a uint8 photo is read
        as it is)."""
        dtype = np.dtype(dtype)
        x = np.asarray(x)
        plain = dtype == np.dtype(spec.dtype)
        if ((not plain and (dtype.kind not in "iu" or dtype.itemsize > 4))
                or spec.dtype == "float16" or x.dtype.kind not in "iuf" or x.dtype.itemsize > 8):
            return None
        y_dtype = None if plain else dtype
        self._checked(spec)
        limits, queue = self.dctx.limits(), self.queue
        allocate = self.dctx.allocator(queue)
        if spec.batch == 0 or spec.out_channels == 0:
            return np.zeros(spec.output_shape, dtype=dtype)
        with driver_errors(spec, self.dctx.info.name):
            choice, packed = self._pack(spec, limits, queue, np.asarray(weight),
                                        None if bias is None else np.asarray(bias), allocate,
                                        True)
            # A rows plan whose padded copy would not fit runs the direct kernel,
            # which stores floats only.
            if choice.path.name not in SATURATING_PATHS or any(
                    plan.steps[-1].kernel != "conv_rows"
                    for _, plan in self._route(choice, spec, limits, x.dtype, y_dtype)):
                return None
            return self._forward_host(choice, packed, x, spec, limits, queue, allocate,
                                      y_dtype)

    def choices(self, spec: ConvSpec, limits: Limits) -> tuple[Choice, ...]:
        """The path choices for ``spec`` in order (memoised per problem, limits,
        forced path, override and tune cache state)."""
        dctx = self.dctx
        key = ("choices", spec, limits, choice_state(), dctx.tune_generation)
        info, vendor = dctx.info, dctx.device.vendor
        return dctx.memo(key, lambda: choices(
            spec, limits, lambda name: tuning.device_defaults(name, info, vendor),
            lambda s: tuning.tuned_choice(s, dctx), tuning.device_style(info, vendor)))

    def path_choice(self, name: str, spec: ConvSpec, limits: Limits) -> Choice:
        """Path ``name`` with its configuration for ``spec`` on this device (the
        built-in one adjusted by the per-device defaults), whatever the heuristic."""
        info, vendor = self.dctx.info, self.dctx.device.vendor
        return configured(PATHS[name], spec, limits,
                          tuning.device_defaults(name, info, vendor))

    def _pack(self, spec: ConvSpec, limits: Limits, queue: Any, weight: Any, bias: Any,
              allocate: Any, in_place: bool) -> tuple[Choice, dict[str, Any]]:
        """The first choice that accepts the weights, and its packed weights (host
        weights used in place only with ``in_place``: the call waits for its kernels
        and keeps the returned mapping until then)."""
        for choice in self.choices(spec, limits):
            packed = choice.path.pack(self.dctx, queue, weight, bias, spec, choice.config,
                                      allocate, in_place=in_place)
            if packed is not None:
                return choice, packed
        raise AssertionError("the last choice never declines the weights")

    def plan(self, choice: Choice, spec: ConvSpec, layout: Layout, limits: Limits) -> Plan:
        """The plan of ``choice`` for one piece of ``spec`` (memoised)."""
        if (layout.filter_phases > 1 or layout.group_offsets) and not isinstance(
                choice.path, GemmPath):
            raise AssertionError(f"the {choice.path.name} path has no group table or "
                                 "filter phases")
        return self.dctx.memo(("plan", choice, spec, layout, limits),
                              lambda: choice.path.plan(self.dctx, spec, choice.config, layout,
                                                       limits))

    def _pieces(self, choice: Choice, spec: ConvSpec, limits: Limits) -> list[Piece]:
        """The pieces a host call of ``spec`` runs in."""
        def scratch(sub: ConvSpec) -> int:
            return self.plan(choice, sub, _contiguous(sub), limits).scratch_bytes

        return plan_pieces(spec, limits, choice.path.packed_bytes(spec, choice.config),
                           scratch)

    def _route(self, choice: Choice, spec: ConvSpec, limits: Limits,
               x_dtype: np.dtype | None = None, y_dtype: np.dtype | None = None,
               ) -> tuple[tuple[Piece, Plan], ...]:
        """Each piece of a host call with its plan (memoised as one entry: one lookup
        per call); ``x_dtype``: the host input's (None: the spec's); ``y_dtype``: the
        integer dtype the result is stored in."""
        x_dtype = None if x_dtype == np.dtype(spec.dtype) else x_dtype  # one memo entry

        def layout(piece: ConvSpec) -> Layout:
            plain = _contiguous(piece)
            return dataclasses.replace(plain, x_dtype=x_dtype or plain.x_dtype, y_dtype=y_dtype)

        return self.dctx.memo(("route", choice, spec, limits, x_dtype, y_dtype), lambda: tuple(
            (piece, self.plan(choice, piece.spec, layout(piece.spec), limits))
            for piece in self._pieces(choice, spec, limits)))

    def _forward_device(self, choice: Choice, packed: dict[str, Any], x: Any, spec: ConvSpec,
                        limits: Limits, queue: Any, allocate: Any) -> Any:
        import pyopencl.array as cla

        x_op = Operand.of(x)
        y = cla.empty(queue, spec.output_shape, np.dtype(spec.dtype), allocator=allocate)
        y_op = Operand.of(y)
        layout = Layout(x_op.dtype, x_op.strides, y_op.strides)
        run(self.dctx, queue, self.plan(choice, spec, layout, limits),
            {**packed, "x": x_op, "y": y_op}, allocate)
        mark_complete(queue, y)
        return y

    def _forward_host(self, choice: Choice, packed: dict[str, Any], x: np.ndarray,
                      spec: ConvSpec, limits: Limits, queue: Any, allocate: Any,
                      y_dtype: np.dtype | None = None) -> np.ndarray:
        dtype = np.dtype(spec.dtype if y_dtype is None else y_dtype)
        shape = spec.output_shape
        # Aligned so that the device can write a large result in place (see host_buffer).
        if math.prod(shape) * dtype.itemsize >= ZERO_COPY_MIN:
            y = self.empty_result(shape, dtype)
        else:
            y = np.empty(shape, dtype=dtype)
        for piece, plan in self._route(choice, spec, limits, x.dtype, y_dtype):
            if piece.spec is spec:  # the whole call in one piece (the usual case)
                x_piece, y_piece = np.ascontiguousarray(x), y
            else:
                x_piece = np.ascontiguousarray(take_piece(x, spec, piece))
                y_piece = y[piece.out_index]
            # Straight into the result when the piece is contiguous there: no
            # temporary, no second copy (none at all on unified memory).
            target = (y_piece if y_piece.flags.c_contiguous
                      else np.empty(y_piece.shape, y_piece.dtype))
            # Both stay referenced until read_back has waited for the piece.
            x_op = host_operand(self.dctx, queue, x_piece, allocate, in_place=True)
            y_op = host_operand(self.dctx, queue, target, allocate, writable=True,
                                in_place=True)
            run(self.dctx, queue, plan, {**packed, "x": x_op, "y": y_op}, allocate)
            read_back(queue, y_op, target)
            if target is not y_piece:
                y_piece[...] = target
        return y

    def empty_result(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised host array that this device can write in place."""
        return aligned_empty(shape, dtype, max(self.dctx.zero_copy_align, 128))

    def conv_forward_into(self, y: np.ndarray, x: np.ndarray,
                          parts: list[tuple[Any, ...]]) -> bool:
        """Host forward convolutions, enqueued together with one wait at the end.

        Each part ``(spec, x_at, x_strides, weight, bias, y_at, y_strides)`` reads the
        view of the C-contiguous host array ``x`` at element offset ``x_at`` with
        element strides ``x_strides`` and writes such a view of ``y`` (from
        :meth:`empty_result`). Parts whose outputs interleave along the last axis
        join, and parts of one spec become the groups of one launch, where the
        gemm path can (:func:`.joined.joining`, memoised per call shape: a
        repeated call only packs its weights and enqueues). Returns False,
        having run nothing, where a part would need tiling (the caller then runs
        the parts one by one); what no part writes is left undefined.
        """
        if not parts:
            return True
        self._checked(parts[0][0])  # the parts share their dtype
        limits, queue = self.dctx.limits(), self.queue
        shape = call_shape(parts)
        # Keyed like the choices it rests on (a forced path may not join).
        key = ("into", shape, x.dtype, limits, choice_state(), self.dctx.tune_generation)
        plan = self.dctx.memo(key, functools.partial(joining, self, shape, x.dtype, limits))
        if plan is None:
            return False
        allocate = self.dctx.allocator(queue)
        with driver_errors(parts[0][0], self.dctx.info.name):
            todo = []  # (plan, packed, launch): the packings stay referenced until the wait
            joined = joined_parts(plan.recipe, parts)
            for launch in plan.launches:
                members = [joined[i] for i in launch.members]
                if len(members) > 1:  # the groups of one launch, packed where they lie
                    weight: Any = [np.asarray(p[3]) for p in members]
                    bias = None if not launch.spec.has_bias else np.concatenate(
                        [np.asarray(p[4]) for p in members])
                else:
                    weight = np.asarray(members[0][3])
                    bias = None if members[0][4] is None else np.asarray(members[0][4])
                one = launch.plan
                if one is None:  # the first choice may decline these weights
                    choice, packed = self._pack(launch.spec, limits, queue, weight, bias,
                                                allocate, True)
                    if self.needs_tiling(choice, launch.spec, limits):
                        return False
                    one = self.plan(choice, launch.spec, launch.layout, limits)
                else:
                    choice = launch.choice
                    packed = choice.path.pack(self.dctx, queue, weight, bias, launch.spec,
                                              choice.config, allocate, in_place=True)
                todo.append((one, packed, launch))
            # Both stay referenced, with every packing, until read_back has waited.
            x_op = host_operand(self.dctx, queue, x, allocate, in_place=True)
            y_op = host_operand(self.dctx, queue, y, allocate, writable=True, in_place=True)
            for one, packed, launch in todo:
                xv = Operand(x_op.buffer, x_op.offset + launch.x_at, launch.layout.x_strides,
                             (), x.dtype)
                yv = Operand(y_op.buffer, y_op.offset + launch.y_at, launch.layout.y_strides,
                             (), y.dtype)
                run(self.dctx, queue, one, {**packed, "x": xv, "y": yv}, allocate)
            read_back(queue, y_op, y)
        return True

    def needs_tiling(self, choice: Choice, spec: ConvSpec, limits: Limits) -> bool:
        """Whether a host call of ``spec`` by ``choice`` runs in more than one piece."""
        return len(self._route(choice, spec, limits)) > 1

    # ------------------------------------------------------------ backward

    def conv_backward(self, x: Any, weight: Any, grad_output: Any, spec: ConvSpec,
                      ) -> tuple[Any, Any, Any]:
        """Gradients by the kernels of kernels_cl/conv_backward.cl (see .paths.backward).

        Host operands give NumPy results; a device input gives device results
        on its own queue.
        """
        self._checked(spec, input=x, weight=weight, grad_output=grad_output)
        return self._backward(x, weight, grad_output, spec, None)

    def conv_transpose(self, grad_output: Any, weight: Any, bias: Any, spec: ConvSpec) -> Any:
        """The transposed convolution: ``spec``'s input gradient for ``grad_output`` (the
        ``grad_input`` kernel alone), plus ``bias`` per input channel. A device
        ``grad_output`` gives a device result on its queue."""
        self._checked(spec, input=grad_output, weight=weight, bias=bias)
        return self._backward(None, weight, grad_output, spec, bias)[0]

    def _backward(self, x: Any, weight: Any, grad_output: Any, spec: ConvSpec,
                  bias: Any) -> tuple[Any, ...]:
        """``x`` None: the input gradient alone, plus ``bias`` (a 1-tuple); the
        device-ness then follows ``grad_output``."""
        import pyopencl.array as cla

        lead = grad_output if x is None else x
        queue = self._queue_of(lead)
        allocate = self.dctx.allocator(queue)
        dtype = np.dtype(spec.dtype)
        shapes = (spec.input_shape, spec.weight_shape, (spec.out_channels,))
        shapes = shapes[:1] if x is None else shapes
        with driver_errors(spec, self.dctx.info.name):
            if spec.batch == 0 or spec.out_channels == 0:
                grads = tuple(cla.zeros(queue, s, dtype, allocator=allocate) for s in shapes)
            else:
                grads = tuple(cla.empty(queue, s, dtype, allocator=allocate) for s in shapes)
                self._run_backward(x, weight, grad_output, spec, bias, grads, queue, allocate)
            if is_array(lead):
                mark_complete(queue, *grads)
                return grads
            return read_all(queue, grads)

    def _run_backward(self, x: Any, weight: Any, grad_output: Any, spec: ConvSpec, bias: Any,
                      grads: tuple[Any, ...], queue: Any, allocate: Any) -> None:
        limits = self.dctx.limits()
        x_op = None if x is None else Operand.of(upload(queue, x, allocate))
        gy_op = Operand.of(upload(queue, grad_output, allocate))
        bound: dict[str, Any] = {"x": x_op, "gy": gy_op, "gx": Operand.of(grads[0])}
        if x is not None:
            bound.update(gw=Operand.of(grads[1]), gb=Operand.of(grads[2]))
        w_op = Operand.of(weight) if is_array(weight) else None
        if w_op is None:  # a host weight is packed by NumPy: one launch fewer
            packed = pack_host(np.asarray(weight), spec, transposed_block(spec, limits), True)
            # Copied, never used in place: ``packed`` is gone when this returns,
            # before the kernels that read it are done.
            bound["wt"] = host_buffer(self.dctx, queue, packed, allocate)
        else:
            bound["w_src"] = w_op
        if bias is not None:
            bound["bias"] = _bias_buffer(queue, bias, spec, allocate)
        layout = BackwardLayout(
            x_dtype=None if x_op is None else x_op.dtype,
            x_strides=None if x_op is None else x_op.strides,
            w_dtype=None if w_op is None else w_op.dtype,
            w_strides=None if w_op is None else w_op.strides,
            gy_dtype=gy_op.dtype, gy_strides=gy_op.strides, gy_at_start=gy_op.offset == 0,
            gx_strides=bound["gx"].strides, bias=bias is not None)
        plan = self.dctx.memo(("backward", spec, layout, limits),
                              lambda: backward_plan(self.dctx, spec, layout, limits))
        run(self.dctx, queue, plan, bound, allocate)

    # ------------------------------------------------------------ conversion

    def saturate(self, y: Any, dtype: Any) -> Any:
        """A C-contiguous device array ``y`` converted to integer ``dtype`` on the device:
        rounded to nearest (ties to even), clamped into range, NaN to 0
        (``kernels_cl/cast.cl``)."""
        import pyopencl.array as cla

        check_not_forked()
        self._check_device_array(y, "array")
        dtype = np.dtype(dtype)
        queue = self._queue_of(y)
        allocate = self.dctx.allocator(queue)
        out = cla.empty(queue, y.shape, dtype, allocator=allocate)
        count = int(y.size)
        if count:
            wg = min(WG_CAST, self.dctx.limits().max_work_group)
            ref = ProgramRef.of("cast.cl", {
                "SRC_T": CL_TYPES[y.dtype.name], "SRC_HALF": int(y.dtype == np.float16),
                "DST_T": CL_TYPES[dtype.name], "WG": wg, "CHUNK": CAST_CHUNK,
                "NEED_FP64": int(y.dtype == np.float64)})
            items = ceil_div(count, CAST_CHUNK)
            step = Step.of(ref, "saturate", (round_up(items, wg),), (wg,), Ref("src"),
                           np.int64(y.offset // y.dtype.itemsize), Ref("dst"), np.int64(count))
            with driver_errors(None, self.dctx.info.name):
                run(self.dctx, queue, Plan((step,)), {"src": y.base_data, "dst": out.data},
                    allocate)
                mark_complete(queue, out)
        return out


def _contiguous(spec: ConvSpec) -> Layout:
    """The layout of a host piece: both operands C-contiguous, input of the spec's dtype."""
    return Layout(np.dtype(spec.dtype), contiguous_strides(spec.input_shape),
                  contiguous_strides(spec.output_shape))


def _bias_buffer(queue: Any, bias: Any, spec: ConvSpec, allocate: Any) -> Any:
    """The bias (one per input channel of ``spec``) as a contiguous accumulator buffer."""
    import pyopencl.array as cla

    acc = acc_dtype(spec)
    if is_array(bias) and bias.dtype == acc and bias.flags.c_contiguous:
        return bias.base_data if not bias.offset else bias.data
    host = bias.get() if is_array(bias) else np.asarray(bias)
    return cla.to_device(queue, np.ascontiguousarray(host, dtype=acc), allocator=allocate,
                         async_=True).data
