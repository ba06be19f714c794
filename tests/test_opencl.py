"""The OpenCL backend's own behaviour: device arrays, program cache, build errors,
tiling, strict limits, threads, dtypes and the device table.

Every test runs for real on each OpenCL device (CI has PoCL); numerical
agreement over the full feature grid lives in tests/test_conv_oracle.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import subprocess
import sys
import threading
import types

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest
from hypothesis import given
from hypothesis import strategies as st

import clconv
from clconv import testing
from clconv._normalize import normalize_conv
from clconv.backends.opencl import paths
from clconv.backends.opencl.build import ProgramRef
from clconv.backends.opencl.execute import Operand
from clconv.functional import run_conv


def reference(fn, x, w, b=None, **kw):
    """The NumPy backend in float64: the oracle."""
    return testing.oracle(fn, x, w, b, **kw)


def spy_launches(monkeypatch) -> list[tuple[str, tuple | None]]:
    """Record (kernel name, local size) of every kernel launch from now on."""
    launched = []
    real = cl.enqueue_nd_range_kernel

    def spy(queue, kernel, global_size, local_size, *args, **kwargs):
        launched.append((kernel.function_name, local_size))
        return real(queue, kernel, global_size, local_size, *args, **kwargs)

    monkeypatch.setattr(cl, "enqueue_nd_range_kernel", spy)
    return launched


def assert_close(y, ref, dtype, reduction):
    testing.assert_close(y, ref, dtype=dtype, reduction=reduction, check_dtype=False)


@pytest.fixture
def be(cl_backend):
    return clconv.get_backend(cl_backend)


# ------------------------------------------------------------ device arrays

def test_device_array_round_trip(cl_backend, be, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    xd = clconv.to_device(x, backend=cl_backend)
    assert isinstance(xd, cla.Array) and xd.queue == be.queue
    y = clconv.conv2d(xd, clconv.to_device(w, backend=cl_backend), padding=1,
                      backend=cl_backend)
    assert isinstance(y, cla.Array)
    assert y.queue == xd.queue and y.shape == (2, 5, 9, 8) and y.dtype == np.float32
    assert_close(y.get(), reference(clconv.conv2d, x, w, padding=1), np.float32, 27)


def test_device_result_on_callers_queue(cl_backend, be, rng):
    queue = cl.CommandQueue(be.context, be.dctx.device)
    x = rng.standard_normal((1, 2, 7)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3)).astype(np.float32)
    y = clconv.conv1d(cla.to_device(queue, x), w, backend=cl_backend)
    assert y.queue == queue
    assert_close(y.get(), reference(clconv.conv1d, x, w), np.float32, 6)


@pytest.mark.parametrize("where", ["x", "w", "b", "wb"])
def test_mixed_host_and_device_operands(cl_backend, where, rng):
    x = rng.standard_normal((2, 4, 6, 7)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    def dev(a, name):
        return (clconv.to_device(a, cl_backend) if name in where else a)
    y = clconv.conv2d(dev(x, "x"), dev(w, "w"), dev(b, "b"), padding=(1, 0), groups=2,
                      backend=cl_backend)
    assert isinstance(y, cla.Array) == ("x" in where)
    y = y.get() if isinstance(y, cla.Array) else y
    ref = reference(clconv.conv2d, x, w, b, padding=(1, 0), groups=2)
    assert_close(y, ref, np.float32, 12)


def test_device_weight_of_another_dtype_is_cast_on_device(cl_backend, rng):
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    w = rng.integers(-3, 4, (4, 3, 3, 3)).astype(np.int16)
    b = np.arange(4, dtype=np.float64)
    y = clconv.conv2d(x, clconv.to_device(w, cl_backend), clconv.to_device(b, cl_backend),
                      backend=cl_backend)
    assert y.dtype == np.float32
    assert_close(y, reference(clconv.conv2d, x, w, b), np.float32, 27)


def test_float16_input_rounds_a_float32_device_weight_to_half(cl_backend, rng):
    x = rng.standard_normal((1, 2, 7, 7)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    y = clconv.conv2d(x, clconv.to_device(w, cl_backend), backend=cl_backend)
    y_host_w = clconv.conv2d(x, w, backend=cl_backend)  # host weight: cast by the contract
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, y_host_w)


def test_import_clconv_does_not_import_pyopencl():
    code = "import sys, clconv; print('pyopencl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_non_contiguous_and_channels_last_device_input(cl_backend, rng):
    x = rng.standard_normal((2, 6, 10, 4)).astype(np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    xd = clconv.to_device(x, cl_backend)
    y = clconv.conv2d(xd, w, padding=1, data_format="channels_last", backend=cl_backend)
    ref = reference(clconv.conv2d, x, w, padding=1, data_format="channels_last")
    assert_close(y.get(), ref, np.float32, 36)
    # An offset view (batch 1 of 2) with channels-first strides.
    y1 = clconv.conv2d(xd[1], w, padding=1, data_format="channels_last", backend=cl_backend)
    assert_close(y1.get(), ref[1], np.float32, 36)
    # Stepped, offset and negatively strided device views, read in place.
    xc = rng.standard_normal((2, 4, 10, 12)).astype(np.float32)
    xcd = clconv.to_device(xc, cl_backend)
    wc = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    for view in ((slice(None), slice(1, 3), slice(None, None, 2)),
                 (slice(None), slice(None, None, 2), slice(None, None, -1), slice(1, None, 3))):
        y = clconv.conv2d(xcd[view], wc, padding=1, backend=cl_backend)
        assert_close(y.get(), reference(clconv.conv2d, xc[view], wc, padding=1), np.float32, 18)


def test_array_from_another_context_is_an_argument_error(be, cl_backend, rng):
    other = cl.Context([be.dctx.device])
    xo = cla.to_device(cl.CommandQueue(other), np.ones((1, 2, 5, 5), np.float32))
    with pytest.raises(clconv.ArgumentError, match="another OpenCL context"):
        clconv.conv2d(xo, np.ones((1, 2, 3, 3), np.float32), backend=cl_backend)
    wo = cla.to_device(cl.CommandQueue(other), np.ones((1, 2, 3, 3), np.float32))
    with pytest.raises(clconv.ArgumentError, match="weight"):
        clconv.conv2d(np.ones((1, 2, 5, 5), np.float32), wo, backend=cl_backend)


def test_to_device_needs_an_opencl_backend():
    with pytest.raises(clconv.ArgumentError, match="OpenCL backend"):
        clconv.to_device(np.ones(3), backend="numpy")


@pytest.mark.parametrize("device_input", [False, True])
def test_empty_batch_and_zero_filters(cl_backend, device_input):
    def put(a):
        return clconv.to_device(a, cl_backend) if device_input else a

    y = clconv.conv2d(put(np.ones((0, 3, 5, 5), np.float32)), np.ones((4, 3, 3, 3), np.float32),
                      backend=cl_backend)
    assert y.shape == (0, 4, 3, 3)
    y = clconv.conv2d(put(np.ones((2, 3, 5, 5), np.float32)), np.ones((0, 3, 3, 3), np.float32),
                      padding=1, backend=cl_backend)
    assert y.shape == (2, 0, 5, 5)
    assert isinstance(y, cla.Array) == device_input


# ------------------------------------------------------------ programs

def test_second_call_does_not_rebuild(cl_backend, rng):
    programs = clconv.get_backend(cl_backend).dctx.programs
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    first = clconv.conv2d(x, w, padding=1, padding_mode="circular", backend=cl_backend)
    builds = programs.builds
    second = clconv.conv2d(x, w, padding=1, padding_mode="circular", backend=cl_backend)
    assert programs.builds == builds
    np.testing.assert_array_equal(first, second)
    info = clconv.get_backend(cl_backend).stats()
    assert 0 < info["cache_size"] <= info["cache_max_size"] == programs.max_size


def test_build_failure_raises_kernel_build_error_with_log(be, cl_backend, rng):
    with pytest.raises(clconv.KernelBuildError) as err:
        be.dctx.program(ProgramRef.of("conv_direct.cl", {"FB": 3}))
    exc = err.value
    assert "FB" in exc.log and "-DFB=3" in exc.options
    assert exc.device == be.dctx.info.name
    assert isinstance(exc, RuntimeError)
    # The backend still works afterwards.
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    assert_close(clconv.conv2d(x, w, backend=cl_backend), reference(clconv.conv2d, x, w),
                 np.float32, 18)


def test_program_without_kernels_is_a_build_error(be, monkeypatch):
    """A driver that "builds" an empty program (PoCL reloading an unusable
    cached binary) gives KernelBuildError naming the cache, not a failure later."""
    from clconv.backends.opencl import build

    class EmptyProgram:
        def __init__(self, context, source):
            pass

        def build(self, options, devices):
            return self

        def get_info(self, what):
            return ""

    monkeypatch.setattr(cl, "Program", EmptyProgram)
    with pytest.raises(clconv.KernelBuildError, match="without kernels.*POCL_CACHE_DIR") as err:
        build.build(be.dctx.context, be.dctx.device, "conv_direct.cl", ("-DX=1",))
    assert err.value.options == ("-DX=1",)


def test_programs_reload_from_the_driver_binary_cache(cl_backend, tmp_path):
    """Every program the selftest builds also works when the driver loads it
    from its on-disk binary cache in a later process: programs calling
    vload16/vstore16 compiled on PoCL but came back from its cache with no
    kernels (and one crashed LLVM), so two fresh processes share one new
    POCL_CACHE_DIR here: the first compiles, the second reloads."""
    env = {**os.environ, "POCL_CACHE_DIR": str(tmp_path / "pocl"), "PYTHONWARNINGS": "ignore"}
    for run in ("compiles", "reloads"):
        proc = subprocess.run([sys.executable, "-m", "clconv", "selftest", "--backend",
                               cl_backend], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, (run, proc.returncode, proc.stdout[-3000:],
                                      proc.stderr[-3000:])
        assert " 0 failed" in proc.stdout, proc.stdout


def test_kernel_sources_found_and_not_in_python():
    from clconv.backends.opencl.build import kernels_dir

    folder = kernels_dir()
    assert (folder / "common.h").is_file() and (folder / "conv_direct.cl").is_file()


# ------------------------------------------------------------ tiling

def _pieces(cl_backend, spec_args):
    """The pieces a host call of these arguments runs in."""
    call = normalize_conv(*spec_args)
    be = clconv.get_backend(cl_backend)
    limits = be.dctx.limits()
    return be._pieces(be.choices(call.spec, limits)[-1], call.spec, limits)


TILE_CASES = [
    # (ndim, x shape, w shape, kwargs)
    (2, (5, 3, 12, 9), (4, 3, 3, 3), dict(padding=1)),
    (2, (1, 2, 23, 9), (3, 2, 3, 2), dict(padding=((2, 7), 1), stride=(2, 1), dilation=(3, 1),
                                          padding_mode="reflect")),
    (2, (1, 2, 30, 12), (3, 2, 3, 3), dict(padding=(14, 2), padding_mode="circular")),
    (2, (1, 2, 30, 12), (3, 2, 3, 3), dict(padding=(14, 2), padding_mode="replicate", stride=3)),
    (2, (1, 2, 30, 12), (2, 2, 2, 3), dict(padding=((11, 13), 0), padding_mode="zeros")),
    (2, (1, 40, 17, 3), (5, 3, 3, 3), dict(padding="same", data_format="channels_last",
                                          stride=2, flip=True)),
    (1, (2, 3, 60), (4, 3, 5), dict(padding="full", dilation=2, padding_mode="reflect")),
    (3, (1, 2, 11, 4, 5), (4, 1, 3, 2, 2), dict(padding=(6, 1, 0), groups=2, stride=(2, 1, 1),
                                                padding_mode="circular")),
]


@pytest.mark.parametrize("case", TILE_CASES, ids=lambda c: f"{c[0]}d-{sorted(c[3])}")
@pytest.mark.parametrize("parts", [2, 5])
def test_tiled_execution_equals_one_piece(cl_backend, monkeypatch, rng, case, parts):
    nd, xs, ws, kw = case
    fn = getattr(clconv, f"conv{nd}d")
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    whole = fn(x, w, b, backend=cl_backend, **kw)
    limit = max(x.nbytes, whole.nbytes) // parts
    monkeypatch.setenv("CLCONV_MAX_ALLOC", str(max(limit, 4 * 16 * int(np.prod(ws[1:])))))
    args = (nd, x, w, b, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
            kw.get("groups", 1), kw.get("padding_mode", "zeros"),
            kw.get("data_format", "channels_first"), kw.get("flip", False))
    assert len(_pieces(cl_backend, args)) > 1
    tiled = fn(x, w, b, backend=cl_backend, **kw)
    np.testing.assert_array_equal(tiled, whole)
    assert_close(tiled, reference(fn, x, w, b, **kw), np.float32, int(np.prod(ws[1:])))


def test_batch_split_is_used_first(cl_backend, monkeypatch):
    x = np.ones((6, 3, 8, 8), np.float32)
    monkeypatch.setenv("CLCONV_MAX_ALLOC", str(3 * 8 * 8 * 4 * 2))
    pieces = _pieces(cl_backend, (2, x, np.ones((2, 3, 3, 3), np.float32), None, 1, 1, 1, 1,
                                  "zeros", "channels_first", False))
    assert len(pieces) == 3 and all(p.rows is None and p.spec.batch == 2 for p in pieces)


@pytest.mark.parametrize("mode,fill", [("constant", 0.0), ("constant", 2.5), ("edge", 0.0),
                                       ("wrap", 0.0), ("reflect", 0.0), ("symmetric", 0.0)])
@pytest.mark.parametrize("size", [(7, 5), (1, 2), (2, 1)])
def test_borders_equal_numpy_pad_for_any_overhang(cl_backend, monkeypatch, rng, mode, fill,
                                                  size):
    """An identity kernel returns the padded input: exactly numpy.pad, tiled or not."""
    x = rng.standard_normal((1, 1, *size)).astype(np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    pads = ((16, 9), (6, 11))
    want = np.pad(x, ((0, 0), (0, 0), *pads), mode=mode,
                  **({"constant_values": fill} if mode == "constant" else {}))
    call = normalize_conv(2, x, w, None, 1, pads, 1, 1, mode, "channels_first", False,
                          fill_value=fill)
    np.testing.assert_array_equal(run_conv(call, cl_backend), want)
    monkeypatch.setenv("CLCONV_MAX_ALLOC", "300")
    np.testing.assert_array_equal(run_conv(call, cl_backend), want)


def test_untileable_allocation_is_an_allocation_error(cl_backend, monkeypatch):
    monkeypatch.setenv("CLCONV_MAX_ALLOC", "64")
    with pytest.raises(clconv.AllocationError):
        clconv.conv2d(np.ones((1, 3, 40, 40), np.float32), np.ones((2, 3, 3, 3), np.float32),
                      backend=cl_backend)


def test_bad_max_alloc_setting(cl_backend, monkeypatch):
    monkeypatch.setenv("CLCONV_MAX_ALLOC", "lots")
    with pytest.raises(clconv.ArgumentError, match="CLCONV_MAX_ALLOC"):
        clconv.conv1d(np.ones((1, 1, 5), np.float32), np.ones((1, 1, 3), np.float32),
                      backend=cl_backend)


# ------------------------------------------------------------ limits

def test_strict_mode_caps_limits_and_still_computes(be, cl_backend, monkeypatch, rng):
    from clconv.backends.opencl.paths.direct import direct_config

    monkeypatch.setenv("CLCONV_STRICT_LIMITS", "1")
    limits = be.dctx.limits()
    assert limits.strict and limits.max_work_group <= 256 and limits.local_mem <= 32 * 1024
    x = rng.standard_normal((2, 8, 13, 11)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    y = clconv.conv2d(x, w, padding=2, dilation=2, backend=cl_backend)
    assert_close(y, reference(clconv.conv2d, x, w, padding=2, dilation=2), np.float32, 72)
    spec = normalize_conv(2, x, w, None, 1, 1, 1, 1, "zeros", "channels_first", False).spec
    cfg = direct_config(spec, limits)
    assert cfg.wg_x * cfg.wg_y <= 256


def test_launch_respects_small_device_work_group(be, rng):
    from clconv.backends.opencl.context import compute_limits
    from clconv.backends.opencl.paths.direct import direct_config

    small = dataclasses.replace(be.dctx.info, max_work_group_size=4)
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    spec = normalize_conv(2, x, np.ones((3, 2, 3, 3), np.float32), None, 1, 0, 1, 1, "zeros",
                          "channels_first", False).spec
    cfg = direct_config(spec, compute_limits(small))
    assert cfg.wg_x * cfg.wg_y <= 4


GROUP_CASES = {  # path -> (input shape, weight shape, conv2d keywords)
    "gemm": ((2, 8, 13, 11), (16, 8, 3, 3), {"padding": 1}),
    "pointwise": ((2, 16, 9, 10), (8, 16, 1, 1), {}),
    "rows": ((1, 4, 20, 30), (4, 1, 3, 3), {"padding": 1, "groups": 4}),
}


@pytest.mark.parametrize("path", list(GROUP_CASES))
def test_gpu_like_devices_get_wide_work_groups(be, cl_backend, monkeypatch, rng, path):
    """On GPUs (and in strict mode, which CI uses to launch kernels as a GPU would) the
    fast paths plan groups of 64 items instead of the CPU's 1-16, the launches use
    them, and the numbers match the oracle."""
    from clconv.backends.opencl.context import GPU_GROUP_ITEMS, compute_limits

    monkeypatch.delenv("CLCONV_STRICT_LIMITS", raising=False)  # CI's second pass sets it
    gpu = dataclasses.replace(be.dctx.info, type="gpu")
    assert compute_limits(gpu).group_items == GPU_GROUP_ITEMS
    assert be.dctx.limits().group_items == (1 if be.dctx.info.type == "cpu"
                                            else GPU_GROUP_ITEMS)
    monkeypatch.setenv("CLCONV_STRICT_LIMITS", "1")
    monkeypatch.setenv("CLCONV_OPENCL_PATH", path)
    assert be.dctx.limits().group_items == GPU_GROUP_ITEMS
    launched = spy_launches(monkeypatch)
    xs, ws, kw = GROUP_CASES[path]
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y = clconv.conv2d(x, w, backend=cl_backend, **kw)
    assert_close(y, reference(clconv.conv2d, x, w, **kw), np.float32, 16 * 9)
    kernel = {"gemm": "conv_gemm", "pointwise": "conv_gemm", "rows": "conv_rows"}[path]
    sizes = [math.prod(local) for name, local in launched if name == kernel]
    assert sizes and all(size == GPU_GROUP_ITEMS for size in sizes), launched


def test_work_group_shrinks_to_what_the_kernel_allows(be, monkeypatch):
    """A built kernel that allows fewer items than planned (registers on a GPU) gets a
    smaller group (wg_y halved first), not a failed launch."""
    from clconv.backends.opencl.build import BuiltProgram
    from clconv.backends.opencl.paths.common import fitted_program

    monkeypatch.setattr(BuiltProgram, "max_work_group", lambda self, name, dev: 8)
    ref, wg_x, wg_y = fitted_program(be.dctx, "pad.cl", "pad_input", {}, 16, 4, 256)
    assert (wg_x, wg_y) == (8, 1)
    prg = be.dctx.program(ref)
    assert "-DWG_X=8" in prg.options and "-DWG_Y=1" in prg.options


SEPARABLE_CASES = [  # (input shape, kernel (KH, KW), conv2d keywords, dtype)
    ((2, 3, 23, 30), (5, 7), {"padding": "same"}, "float32"),
    ((1, 2, 20, 26), (4, 6), {"padding": ((2, 1), (3, 0)), "padding_mode": "reflect"},
     "float32"),
    ((1, 1, 25, 19), (3, 5), {"padding": 4, "padding_mode": "circular", "dilation": (2, 3)},
     "float64"),
    ((2, 2, 21, 24), (5, 3), {"padding": 2, "padding_mode": "replicate", "stride": (2, 1)},
     "float32"),
    ((1, 3, 18, 22), (3, 4), {"padding": "valid"}, "uint8"),
    ((1, 4, 16, 20), (5, 5), {"padding": "same", "data_format": "channels_last"}, "float32"),
]


def _spy_rows(monkeypatch):
    """Record (KH, KW) of every conv_rows launch the backend plans from now on."""
    from clconv.backends.opencl import backend

    calls = []
    real = backend.run

    def run(dctx, queue, plan, bound, allocate):
        for step in plan.steps:
            if step.kernel == "conv_rows":
                defines = dict(step.program.defines)
                calls.append((defines["KH"], defines["KW"]))
        return real(dctx, queue, plan, bound, allocate)

    monkeypatch.setattr(backend, "run", run)
    return calls


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize(("shape", "kernel", "kw", "dtype"), SEPARABLE_CASES)
def test_separable_path_equals_oracle(cl_backend, monkeypatch, rng, shape, kernel, kw, dtype,
                                      flip):
    """Rank-1 one-filter kernels run as a column pass and a row pass (conv_rows.cl twice),
    with every padding form, border mode, dilation, H stride, layout, flip and bias, and
    give the oracle's numbers; the path is forced so that small cases take it."""
    calls = _spy_rows(monkeypatch)
    channels_last = kw.get("data_format") == "channels_last"
    c = shape[-1] if channels_last else shape[1]
    x = rng.standard_normal(shape) * 3
    x = (rng.integers(0, 256, shape) if dtype == "uint8" else x).astype(dtype)
    wdtype = np.float64 if dtype == "float64" else np.float32
    w = (rng.standard_normal((c, 1, kernel[0], 1))
         * rng.standard_normal((c, 1, 1, kernel[1]))).astype(wdtype)
    b = rng.standard_normal(c).astype(wdtype)
    with paths.override("separable"):
        y = clconv.conv2d(x, w, b, groups=c, flip=flip, backend=cl_backend, **kw)
    assert calls == [(kernel[0], 1), (1, kernel[1])]
    ref = reference(clconv.conv2d, x, w, b, groups=c, flip=flip, **kw)
    assert y.dtype == (np.float64 if dtype == "float64" else np.float32)
    scale = 1 + np.abs(ref).max()
    assert_close(y / scale, ref / scale, wdtype, kernel[0] * kernel[1])


def test_separable_path_with_tiling(cl_backend, monkeypatch, rng):
    """Pieces of a tiled call (CLCONV_MAX_ALLOC) each run the two passes and the
    stitched result equals the oracle."""
    calls = _spy_rows(monkeypatch)
    x = rng.standard_normal((3, 2, 60, 70)).astype(np.float32)
    w = (rng.standard_normal((2, 1, 7, 1)) * rng.standard_normal((2, 1, 1, 5))).astype(
        np.float32)
    monkeypatch.setenv("CLCONV_MAX_ALLOC", "20000")
    with paths.override("separable"):
        y = clconv.conv2d(x, w, padding=(3, 2), groups=2, padding_mode="reflect",
                          backend=cl_backend)
    assert len(calls) > 2 and calls == [(7, 1), (1, 5)] * (len(calls) // 2)
    ref = reference(clconv.conv2d, x, w, padding=(3, 2), groups=2, padding_mode="reflect")
    assert_close(y, ref, np.float32, 35)


@st.composite
def _separable_cases(draw):
    kh, kw = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(1, 14)) + (kh - 1) * dh
    w = draw(st.integers(1, 14)) + (kw - 1) * dw
    pad = st.tuples(st.integers(0, 3), st.integers(0, 3))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]), st.tuples(pad, pad)))
    stride = (draw(st.integers(1, 3)), 1)
    if padding == "same" and stride != (1, 1):
        padding = "valid"
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w),
                kernel=(kh, kw), stride=stride, dilation=(dh, dw), padding=padding,
                padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate",
                                                   "circular"])),
                flip=draw(st.booleans()), bias=draw(st.booleans()),
                dtype=draw(st.sampled_from(["float32", "float64"])))


@given(case=_separable_cases(), seed=st.integers(0, 2**16))
def test_separable_path_hypothesis(cl_backend, case, seed):
    """Random rank-1 one-filter convolutions take the two passes and equal the oracle."""
    rng = np.random.default_rng(seed)
    n, c, h, w_ = case["shape"]
    kh, kw = case["kernel"]
    x = rng.standard_normal((n, c, h, w_)).astype(case["dtype"])
    w = (rng.standard_normal((c, 1, kh, 1)) * rng.standard_normal((c, 1, 1, kw))).astype(
        case["dtype"])
    b = rng.standard_normal(c).astype(case["dtype"]) if case["bias"] else None
    kwargs = dict(stride=case["stride"], dilation=case["dilation"], padding=case["padding"],
                  padding_mode=case["padding_mode"], groups=c, flip=case["flip"])
    spec = normalize_conv(2, x, w, b, kwargs["stride"], kwargs["padding"], kwargs["dilation"],
                          c, kwargs["padding_mode"], "channels_first", kwargs["flip"]).spec
    be = clconv.get_backend(cl_backend)
    with paths.override("separable"):
        assert be.choices(spec, be.dctx.limits())[0].path.name == "separable"
        y = clconv.conv2d(x, w, b, backend=cl_backend, **kwargs)
    ref = reference(clconv.conv2d, x, w, b, **kwargs)
    scale = 1 + np.abs(ref).max()
    assert_close(y / scale, ref / scale, np.dtype(case["dtype"]), kh * kw)


def test_separable_path_leaves_full_rank_and_fill_to_the_rows_path(cl_backend, monkeypatch,
                                                                   rng):
    """Kernels not all of rank 1 make the separable path decline: the call runs as one 2-D
    rows pass (the path CLCONV_OPENCL_PATH names next); a constant border with a non-zero
    fill (convolve2d's fillvalue) is not offered to the separable path at all."""
    calls = _spy_rows(monkeypatch)
    monkeypatch.setenv("CLCONV_OPENCL_PATH", "rows")
    x = rng.standard_normal((1, 2, 20, 20)).astype(np.float32)
    w = rng.standard_normal((2, 1, 5, 5)).astype(np.float32)
    with paths.override("separable"):
        y = clconv.conv2d(x, w, padding=2, groups=2, backend=cl_backend)
    assert calls == [(5, 5)]
    assert_close(y, reference(clconv.conv2d, x, w, padding=2, groups=2), np.float32, 25)
    w[0, 0] = np.outer(rng.standard_normal(5), rng.standard_normal(5))  # only filter 1 not
    calls.clear()
    with paths.override("separable"):
        y = clconv.conv2d(x, w, padding=2, groups=2, backend=cl_backend)
    assert calls == [(5, 5)]
    assert_close(y, reference(clconv.conv2d, x, w, padding=2, groups=2), np.float32, 25)
    img = rng.standard_normal((1, 1, 300, 300))
    k = np.outer(rng.standard_normal(15), rng.standard_normal(15))[None, None]
    call = normalize_conv(2, img, k, None, 1, 7, 1, 1, "zeros", "channels_first", True,
                          fill_value=2.5)
    be = clconv.get_backend(cl_backend)
    assert not paths.PATHS["separable"].supports(call.spec, be.dctx.limits())
    monkeypatch.delenv("CLCONV_OPENCL_PATH")
    assert be.choices(call.spec, be.dctx.limits())[0].path.name != "separable"
    got = clconv.convolve2d(img[0, 0], k[0, 0], mode="same", boundary="fill", fillvalue=2.5,
                            backend=cl_backend)
    want = clconv.convolve2d(img[0, 0], k[0, 0], mode="same", boundary="fill", fillvalue=2.5,
                             backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


def test_separable_path_is_the_default_for_large_rank_1_kernels(cl_backend, monkeypatch, rng):
    """At the real thresholds: a 15x15 rank-1 kernel on 512x512 takes the two passes."""
    calls = _spy_rows(monkeypatch)
    x = rng.standard_normal((1, 1, 512, 512)).astype(np.float32)
    g = np.exp(-0.5 * (np.arange(15) - 7) ** 2 / 9)
    w = np.outer(g, g).astype(np.float32)[None, None]
    y = clconv.conv2d(x, w, padding=7, backend=cl_backend)
    assert calls == [(15, 1), (1, 15)]
    assert_close(y, reference(clconv.conv2d, x, w, padding=7), np.float32, 225)


def test_float64_without_fp64_is_backend_unavailable(be):
    from clconv.backends.opencl.backend import OpenCLBackend

    no_fp64 = types.SimpleNamespace(info=dataclasses.replace(be.dctx.info, fp64=False))
    fake = OpenCLBackend("opencl:test", no_fp64)
    call = normalize_conv(1, np.ones((1, 1, 4)), np.ones((1, 1, 2)), None, 1, 0, 1, 1, "zeros",
                          "channels_first", False)
    with pytest.raises(clconv.BackendUnavailable, match=be.dctx.info.name):
        fake.conv_forward(call.x, call.weight, call.bias, call.spec)


# ------------------------------------------------------------ threads and dtypes

def test_problems_sharing_a_kernel_object_keep_their_own_arguments(cl_backend, rng,
                                                                    monkeypatch):
    """A kernel object keeps the last launch's arguments set, and a repeated launch
    sets only its buffers: problems of one build alternating, and a large input
    whose offset from its page boundary changes on every call, still get their
    own sizes, strides and offsets (that they share a kernel object is checked).
    The large input is used in place at 5 offsets from its page boundary in turn."""
    launched = []
    real = cl.enqueue_nd_range_kernel

    def spy(queue, kernel, *args, **kwargs):
        launched.append(kernel)
        return real(queue, kernel, *args, **kwargs)

    monkeypatch.setattr(cl, "enqueue_nd_range_kernel", spy)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    raw = rng.standard_normal(3 * 200 * 300 + 8).astype(np.float32)
    small = [rng.standard_normal((1, 3, h, 300)).astype(np.float32) for h in (20, 33)]
    bigs = [raw[i:i + 3 * 200 * 300].reshape(1, 3, 200, 300) for i in range(5)]
    for x in [*bigs, *bigs[:2], *small, *small, bigs[3], small[0], bigs[4], bigs[4]]:
        y = clconv.conv2d(x, w, padding=1, groups=3, backend=cl_backend)
        assert_close(y, reference(clconv.conv2d, x, w, padding=1, groups=3), np.float32, 9)
    assert len({id(k) for k in launched}) < 3, "the three problems built apart"


def test_eight_threads_at_once(cl_backend, rng):
    xs = [rng.standard_normal((2, 4, 17, 15)).astype(np.float32) for _ in range(8)]
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    modes = ["zeros", "reflect", "replicate", "circular"] * 2
    results: list = [None] * 8
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        for _ in range(3):
            results[i] = clconv.conv2d(xs[i], w, padding=2, padding_mode=modes[i],
                                       backend=cl_backend)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i in range(8):
        ref = reference(clconv.conv2d, xs[i], w, padding=2, padding_mode=modes[i])
        assert_close(results[i], ref, np.float32, 36)


def test_pin_pocl_workers_rules(monkeypatch):
    from clconv.backends.opencl.device import pin_pocl_workers

    def pin(env, allowed=frozenset({0, 1}), cpus=2):
        return pin_pocl_workers(env, set(allowed), cpus), env.get("POCL_AFFINITY")

    assert pin({}) == (True, "1")
    assert pin({"POCL_AFFINITY": "0"}) == (False, "0")  # the user's choice stands
    assert pin({}, allowed={1}) == (False, None)  # PoCL would pin a worker to CPU 0
    assert pin({}, allowed={0, 1}, cpus=4) == (False, None)
    assert pin({"POCL_CPU_MAX_CU_COUNT": "1"}) == (False, None)  # one worker: no pinning
    assert pin({"POCL_MAX_PTHREAD_COUNT": "3"}) == (False, None)  # a worker past the CPUs
    assert pin({"POCL_CPU_MAX_CU_COUNT": "2"}) == (True, "1")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert pin({}) == (False, None)


_AFFINITY_PROBE = """
import os, sys, numpy as np, clconv
be = clconv.get_backend(sys.argv[1])
y = clconv.conv2d(np.ones((1, 8, 40, 40), np.float32), np.ones((16, 8, 3, 3), np.float32),
                  backend=sys.argv[1])
assert float(y[0, 0, 5, 5]) == 72.0, y[0, 0, 5, 5]
main = os.getpid()
pinned = sorted(sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")
                if int(t) != main and len(os.sched_getaffinity(int(t))) == 1)
print(be.dctx.info.platform, "|", os.environ.get("POCL_AFFINITY"), "|", pinned)
"""


@pytest.mark.parametrize("user_value", [None, "0"])
def test_pocl_workers_pinned_one_per_cpu(cl_backend, user_value):
    """On PoCL, clconv asks for one worker per CPU (POCL_AFFINITY=1) unless the
    user decided: unpinned workers shared one CPU for whole processes here,
    halving every kernel's speed. The variable is removed again once PoCL has
    started, so child processes (perhaps confined to other CPUs) decide anew."""
    from clconv.backends.opencl.device import POCL_THREAD_COUNT_VARS, pin_pocl_workers

    env = {k: v for k, v in os.environ.items()
           if k != "POCL_AFFINITY" and k not in POCL_THREAD_COUNT_VARS}
    if user_value is not None:
        env["POCL_AFFINITY"] = user_value
    expected = pin_pocl_workers(dict(env))
    if not sys.platform.startswith("linux"):
        assert not expected  # PoCL pins threads on Linux only: clconv leaves it alone
        return
    proc = subprocess.run([sys.executable, "-c", _AFFINITY_PROBE, cl_backend],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    platform, value, pinned = (part.strip() for part in proc.stdout.split("|"))
    # Set only while PoCL starts: child processes do not inherit it.
    assert value == (user_value or "None")
    cpus = os.cpu_count()
    if "Portable Computing Language" in platform and cpus > 1:
        assert pinned == (str([[i] for i in range(cpus)]) if expected else "[]")


@pytest.mark.parametrize("dtype", ["float16", "float64", "uint8", "int32", "bool"])
@pytest.mark.parametrize("device_input", [False, True])
def test_dtypes(cl_backend, be, rng, dtype, device_input):
    if dtype == "float64" and not be.dctx.info.fp64:
        with pytest.raises(clconv.BackendUnavailable):
            clconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), backend=cl_backend)
        return
    x = (rng.standard_normal((2, 3, 10, 9)) * 4).astype(dtype)
    if dtype in ("uint8", "int32"):
        x = rng.integers(0, 256, (2, 3, 10, 9)).astype(dtype)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    xin = clconv.to_device(x, cl_backend) if device_input else x
    y = clconv.conv2d(xin, w, b, padding=1, padding_mode="reflect", backend=cl_backend)
    y = y.get() if device_input else y
    expect = {"float16": np.float16, "float64": np.float64}.get(dtype, np.float32)
    assert y.dtype == expect
    cast = (lambda a: a.astype(np.float16)) if dtype == "float16" else (lambda a: a)
    ref = reference(clconv.conv2d, x, cast(w), cast(b), padding=1, padding_mode="reflect")
    scale = 1 + np.abs(ref).max()
    assert_close(y / scale, ref / scale, expect, 27)


def test_nan_and_inf_propagate(cl_backend):
    x = np.zeros((1, 1, 9), np.float32)
    x[0, 0, 2], x[0, 0, 7] = np.nan, np.inf
    y = clconv.conv1d(x, np.ones((1, 1, 3), np.float32), backend=cl_backend)
    ref = clconv.conv1d(x, np.ones((1, 1, 3), np.float32), backend="numpy")
    np.testing.assert_array_equal(y, ref)


# ------------------------------------------------------------ command line

def test_devices_command_prints_the_table(be):
    out = subprocess.run([sys.executable, "-m", "clconv", "devices"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "backend" in out.stdout and be.dctx.info.name in out.stdout
    assert be.dctx.info.backend in out.stdout


# ------------------------------------------------------------ forward paths
#
# The oracle grid (tests/test_conv_oracle.py) runs with the default choice of
# path; here every fast path is forced (CLCONV_OPENCL_PATH) on the grid cases
# it supports, in normal and strict (small-GPU) limits, so each path's whole
# sub-contract is checked against the float64 NumPy oracle.

from test_conv_oracle import GRID, check_against_oracle, make_operands  # noqa: E402


def _pointwise_cases() -> list:
    cases = [dataclasses.replace(c, kernel=(1,) * c.ndim, padding=0, stride=1, dilation=1)
             for c in GRID[::3] if c.filters // c.groups >= 4 or c.groups == 1]
    seen: set[str] = set()
    return [c for c in cases if not (c.ident() in seen or seen.add(c.ident()))]


PATH_CASES = {
    "gemm": [c for c in GRID if c.filters // c.groups >= 4],
    "rows": [c for c in GRID if c.filters == c.groups],
    # rows with borders applied inside the kernel (no pad pass) for every case
    "rows-inplace": [c for c in GRID if c.filters == c.groups],
    # rows reading a padded copy (pad.cl, border code compiled out) for every case
    "rows-padded": [c for c in GRID if c.filters == c.groups],
    "pointwise": _pointwise_cases(),
    # the work-item-parallel kernel of the "lanes" style, on every case
    "lanes": list(GRID),
    # vectorised along the pixels, weights in place or packed one filter per block
    "pixels": list(GRID),
}
PATH_PARAMS = [pytest.param(path, case, strict, id=f"{path}-{case.ident()}{'-strict' * strict}")
               for path, cases in PATH_CASES.items() for i, case in enumerate(cases)
               for strict in ((False, True) if i % 4 == 0 else (False,))]


def case_spec(case):
    """The ConvSpec of an oracle-grid case."""
    return normalize_conv(case.ndim, *make_operands(case, 0)[:2], None, case.stride,
                          case.padding, case.dilation, case.groups, case.padding_mode,
                          "channels_last" if case.channels_last else "channels_first",
                          False).spec


def rows_borders(be, case, inplace: bool):
    """The rows path reading the input in place (True) or from a padded copy, where it
    supports the case (else the usual choice)."""
    if not paths.ROWS.supports(case_spec(case), be.dctx.limits()):
        return contextlib.nullcontext()
    return paths.override("rows", pad_pass=0 if inplace else 1)


@pytest.mark.parametrize(("path", "case", "strict"), PATH_PARAMS)
def test_forced_path_against_oracle(cl_backend, be, monkeypatch, path, case, strict):
    if strict:
        monkeypatch.setenv("CLCONV_STRICT_LIMITS", "1")
    if path.startswith("rows-"):
        with rows_borders(be, case, path == "rows-inplace"):
            check_against_oracle(case, cl_backend)
        return
    monkeypatch.setenv("CLCONV_OPENCL_PATH", path)
    check_against_oracle(case, cl_backend)


def spy_choices(monkeypatch) -> list[str]:
    """Record the name of the path each forward call of the OpenCL backend runs on."""
    from clconv.backends.opencl.backend import OpenCLBackend

    chosen = []
    real = OpenCLBackend._pack

    def pack(self, *args):
        choice, packed = real(self, *args)
        chosen.append(choice.path.name)
        return choice, packed

    monkeypatch.setattr(OpenCLBackend, "_pack", pack)
    return chosen


ROWS_SW2_CASES = [
    dataclasses.replace(GRID[0], ndim=2, size=size, kernel=kernel, batch=2, channels=3,
                        filters=3, groups=3, stride=stride, padding=padding,
                        dilation=dilation, padding_mode=mode, channels_last=last, dtype=dtype)
    for size, kernel, stride, padding, dilation, mode, last, dtype in [
        ((9, 37), (3, 3), (1, 2), 1, 1, "zeros", False, "float32"),
        ((10, 41), (3, 3), 2, 1, 1, "reflect", False, "float32"),
        ((7, 50), (3, 5), (2, 2), (1, 2), (1, 2), "circular", False, "float64"),
        ((8, 35), (5, 3), (1, 2), 2, 1, "replicate", True, "float16"),
        ((6, 70), (1, 7), (1, 2), (0, 3), 1, "zeros", False, "float32"),
        ((5, 33), (3, 2), 2, "same", (2, 3), "reflect", False, "float32"),
    ]]


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("case", ROWS_SW2_CASES, ids=lambda c: c.ident())
def test_rows_path_with_stride_two_along_w(cl_backend, monkeypatch, case, inplace):
    """Stride 2 along W on the rows kernel (every other input column per lane),
    rows wide enough for interior, border and tail blocks, borders read in place
    or from the padded copy."""
    chosen = spy_choices(monkeypatch)
    with paths.override("rows", pad_pass=0 if inplace else 1):
        check_against_oracle(case, cl_backend)
    assert chosen == ["rows"]


ROWS_EDGE_CASES = [
    dataclasses.replace(GRID[0], ndim=nd, size=size, kernel=kernel, batch=2, channels=2,
                        filters=2, groups=2, stride=stride, padding=padding,
                        dilation=dilation, padding_mode=mode, channels_last=last, dtype=dtype)
    for nd, size, kernel, stride, padding, dilation, mode, last, dtype in [
        # widths whose last block reads 0, 1 and 2 elements past the row
        (2, (9, 40), (3, 3), 1, 1, 1, "zeros", False, "float32"),
        (2, (9, 41), (3, 3), 1, (1, 2), 1, "reflect", False, "float32"),
        (2, (7, 45), (3, 5), 1, (1, 2), 1, "symmetric", False, "float32"),
        (2, (6, 38), (3, 3), 1, 1, (1, 2), "circular", False, "float64"),
        (2, (5, 90), (3, 3), (1, 2), 1, 1, "replicate", False, "float32"),
        (2, (5, 101), (2, 3), (2, 2), (1, 2), 1, "reflect", False, "float16"),
        (1, (70,), (7,), 1, 3, 1, "symmetric", False, "float32"),
        (3, (3, 4, 44), (2, 2, 3), 1, (0, 1, 1), 1, "replicate", False, "float32"),
    ]]


def spy_defines(monkeypatch, module) -> list[dict]:
    """Record the defines of every program ``module`` fits from now on."""
    defines = []
    real = module.fitted_program

    def spy(dctx, name, kernel, params, *args):
        defines.append(params)
        return real(dctx, name, kernel, params, *args)

    monkeypatch.setattr(module, "fitted_program", spy)
    return defines


@pytest.mark.parametrize("case", ROWS_EDGE_CASES, ids=lambda c: c.ident())
def test_rows_edge_blocks_fold_the_border_rule(cl_backend, monkeypatch, case):
    """Rows at least twice a block's reads long build their first and last column
    blocks lane by lane from build-time positions (EDGE), the last block aligned to
    the row's end: every border mode, overhangs of 0 to 2 elements, strides,
    dilation, 1-D to 3-D and dtypes (interleaved rows: test_opencl_interleaved.py)."""
    from clconv.backends.opencl.paths import rows as rows_module

    defines = spy_defines(monkeypatch, rows_module)
    # Edge blocks are built where the rows are not gathered first (PREFILL).
    monkeypatch.setattr(rows_module.RowsPath, "PREFILL_MAX", 0)
    with paths.override("rows", pad_pass=0):
        check_against_oracle(case, cl_backend)
    assert [d.get("EDGE") for d in defines] == [1], defines


@pytest.mark.parametrize("inplace", [False, True])
def test_rows_path_long_dilated_rows_take_the_padded_copy(cl_backend, monkeypatch, inplace):
    """A row too long for the kernel's private row buffer (k=9, dilation 40:
    352 elements) is read from the padded copy even when in place is preferred."""
    from clconv.backends.opencl.paths.rows import RowsPath

    case = dataclasses.replace(GRID[0], ndim=1, size=(400,), kernel=(9,), batch=2, channels=2,
                               filters=2, groups=2, stride=1, padding=160, dilation=40,
                               padding_mode="zeros", channels_last=False, dtype="float32")
    assert (8 * 4 - 1) + 8 * 40 + 1 > RowsPath.MAX_ROW_BUFFER
    launched = spy_launches(monkeypatch)
    with paths.override("rows", pad_pass=0 if inplace else 1):
        check_against_oracle(case, cl_backend)
    kernels = {name for name, _ in launched}
    assert "pad_input" in kernels and "conv_rows" in kernels


GEMM_FLAT_CASES = [
    dataclasses.replace(GRID[0], ndim=nd, size=size, kernel=kernel, batch=2, channels=ch,
                        filters=f, groups=g, stride=stride, padding=padding, dilation=dil,
                        padding_mode=mode, channels_last=last, dtype=dtype)
    for nd, size, kernel, ch, f, g, stride, padding, dil, mode, last, dtype in [
        (2, (7, 7), (3, 3), 24, 20, 1, 1, 1, 1, "zeros", False, "float32"),
        (2, (9, 15), (3, 3), 8, 32, 2, 2, 1, (1, 2), "reflect", True, "float32"),
        (2, (5, 13), (2, 3), 6, 12, 1, (1, 2), (0, 1), 1, "circular", False, "float64"),
        (2, (4, 4), (3, 3), 4, 8, 1, 1, "same", 1, "replicate", False, "float16"),
        (3, (3, 5, 4), (2, 3, 3), 4, 8, 1, 1, 1, 1, "zeros", False, "float32"),
    ]]


@pytest.mark.parametrize("case", GEMM_FLAT_CASES, ids=lambda c: c.ident())
def test_gemm_blocks_crossing_rows(cl_backend, monkeypatch, case):
    """Narrow outputs take gemm blocks of consecutive pixels across rows (FLAT):
    every pixel written once, in the right place, for strides, dilation, layouts,
    3-D depth slices, groups and dtypes."""
    from clconv.backends.opencl.paths.gemm import gemm_config

    spec = case_spec(case)
    limits = clconv.get_backend(cl_backend).dctx.limits()
    assert gemm_config(spec, limits, spec.out_size[-1]).flat == 1
    monkeypatch.setenv("CLCONV_OPENCL_PATH", "gemm")
    check_against_oracle(case, cl_backend)



GEMM_WIDE_CASES = [
    (dataclasses.replace(GRID[0], ndim=nd, size=size, kernel=kernel, channels=ch, filters=f,
                         groups=g, stride=stride, padding=padding, channels_last=last,
                         dtype=dtype), nv, ob)
    for nd, size, kernel, ch, f, g, stride, padding, last, dtype, nv, ob in [
        # 40 filters are 3 blocks of 16: the last group of blocks is partly past them
        (2, (9, 14), (3, 3), 5, 40, 1, 1, 1, False, "float32", 2, 6),
        (2, (9, 14), (3, 3), 5, 40, 1, 1, 1, False, "float32", 4, 4),
        (2, (6, 21), (3, 3), 8, 64, 1, 1, 1, False, "float32", 4, 8),   # 21 = 2 x 8 + 5
        (2, (5, 17), (3, 3), 8, 32, 1, 1, 1, False, "float64", 2, 4),
        (2, (7, 7), (3, 3), 6, 64, 2, 1, 1, True, "float32", 2, 12),   # flat blocks, groups
        (2, (12, 30), (1, 1), 8, 50, 1, 2, 0, False, "float16", 3, 6),
        (3, (3, 5, 6), (2, 3, 3), 4, 33, 1, 1, 1, False, "float32", 3, 4),
        (1, (40,), (5,), 3, 64, 1, 1, 2, False, "float32", 4, 6),
    ]]


@pytest.mark.parametrize("case,nv,ob", GEMM_WIDE_CASES,
                         ids=lambda c: c.ident() if hasattr(c, "ident") else str(c))
@pytest.mark.parametrize("vs", [0, 1])
def test_gemm_several_filter_blocks_per_work_item(cl_backend, case, nv, ob, vs):
    """NV blocks of 16 filters per work-item: every filter of every block, the
    blocks past the last filter stored nowhere, for tails, groups, flat blocks,
    strides, layouts, ranks and dtypes; with vector stores of whole blocks of
    columns too (vs=1: the partial blocks and other layouts store by element)."""
    with paths.override("gemm", fb=16, nv=nv, ob=ob, vs=vs):
        check_against_oracle(case, cl_backend)


def test_wide_registers_take_several_filter_blocks():
    """A device with 16 floats per vector gets several filter blocks per work-item
    for many filters, one for few; narrower devices keep one."""
    from clconv.backends.opencl.context import Limits
    from clconv.backends.opencl.paths.gemm import gemm_config

    def config(filters, width):
        spec = case_spec(dataclasses.replace(GRID[0], ndim=2, size=(20, 30), kernel=(3, 3),
                                             channels=8, filters=filters))
        limits = Limits(1 << 30, 1 << 30, 1024, 32768, False, vector_width=width)
        return gemm_config(spec, limits, spec.out_size[-1])

    assert (config(64, 16).nv, config(64, 16).ob) == (4, 4)
    assert (config(32, 16).nv, config(32, 16).ob) == (2, 12)
    assert config(16, 16).nv == 1
    assert (config(64, 8).nv, config(64, 8).ob) == (1, 6)


@pytest.mark.parametrize("weights", ["host-offset", "device", "device-strided",
                                     "float64-host", "flip"])
def test_pixels_path_weights_in_place_or_packed(cl_backend, rng, weights):
    """The pixels path reads a contiguous weight of the accumulator type where it
    lies (a host array at any element offset, a device array) and packs any other
    (strided, another dtype, flipped taps) with one filter per block."""
    x = rng.standard_normal((2, 24, 6, 5)).astype(np.float32)
    raw = rng.standard_normal(40 * 24 * 9 + 3).astype(np.float32)
    w = raw[3:].reshape(40, 24, 3, 3)  # 12 bytes past an aligned start
    b = rng.standard_normal(40).astype(np.float32)
    kw = {"padding": 1, "flip": weights == "flip"}
    ref = reference(clconv.conv2d, x, w, b, **kw)
    be = clconv.get_backend(cl_backend)
    if weights.startswith("device"):
        wd = clconv.to_device(np.ascontiguousarray(w[:, :, ::-1] if "strided" in weights
                                                   else w), backend=cl_backend)
        w_arg = wd[:, :, ::-1] if "strided" in weights else wd
    elif weights == "float64-host":
        w_arg = w.astype(np.float64)
    else:
        w_arg = w
    with paths.override("pixels"):
        y = clconv.conv2d(x, w_arg, b, backend=cl_backend, **kw)
    if weights == "device":
        pixels = paths.PATHS["pixels"]
        call = normalize_conv(2, x, w_arg, b, 1, 1, 1, 1, "zeros", "channels_first", False)
        packed = pixels.pack(be.dctx, be.dctx.queue, Operand.of(wd), None, call.spec,
                             pixels.config(call.spec, be.dctx.limits()), None)
        assert packed["w"].buffer is wd.base_data  # read in place
    assert_close(y, ref, np.float32, w[0].size + 1)


# (input shape, filters, groups, conv keywords, pv, whether the input is its own
# column matrix); a block is pv vectors of 4 to 16 pixels (the device's width).
PIXELS_1X1_CASES = [
    ((1, 24, 8, 12), 20, 1, {}, 3, True),            # 96 pixels: two whole blocks
    ((2, 12, 7, 7), 9, 1, {"bias": True}, 3, True),   # 49: the last block moved back
    ((1, 8, 5, 13), 16, 1, {}, 4, True),              # 65: one block plus one pixel
    ((3, 16, 6, 11), 12, 4, {"bias": True}, 2, True),  # groups, batch
    ((1, 6, 3, 4, 9), 7, 1, {}, 3, True),             # 3-D, 108 pixels
    ((1, 10, 9, 9), 8, 1, {"padding": 1}, 3, True),   # padded copy: rows of 11
    ((1, 10, 1, 7), 8, 1, {}, 4, False),              # 7 pixels, less than a block: im2col
    ((1, 10, 12, 12), 8, 1, {"stride": 2}, 2, False),  # strided: im2col
    ((1, 10, 8, 8), 8, 1, {"dilation": 2}, 2, True),  # dilation means nothing at 1x1
]


@pytest.mark.parametrize("view", ["contiguous", "offset", "channels_last", "int16", "float64"])
@pytest.mark.parametrize("case", PIXELS_1X1_CASES, ids=lambda c: f"{c[0]}-f{c[1]}-g{c[2]}-pv{c[4]}")
def test_pixels_path_reads_a_1x1_input_as_its_columns(cl_backend, monkeypatch, rng, case, view):
    """A 1x1 kernel of stride 1 whose pixels lie in one run per channel: the pixels
    kernel reads the input (or its padded copy) as its column matrix, moves the
    last block back to end at the last pixel and stores each pixel once; other
    problems build the matrix first. Every layout, offset and dtype gives the
    oracle's numbers."""
    shape, filters, groups, kw, pv, direct = case
    kw = dict(kw)
    ndim = len(shape) - 2
    conv = clconv.conv3d if ndim == 3 else clconv.conv2d
    bias = rng.standard_normal(filters) if kw.pop("bias", False) else None
    dtype = np.float64 if view == "float64" else np.float32
    # Without cl_khr_fp64 float64 is the documented refusal, checked below.
    fp64 = dtype == np.float32 or clconv.get_backend(cl_backend).dctx.info.fp64
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((filters, shape[1] // groups) + (1,) * ndim).astype(dtype)
    if view == "int16":
        x = rng.integers(-3, 4, shape).astype(np.int16)
    if view == "offset":
        raw = np.zeros(x.size + 5, dtype)
        raw[5:] = x.ravel()
        x = raw[5:].reshape(shape)
    if view == "channels_last":
        x = np.moveaxis(x, 1, -1).copy()
        kw["data_format"] = "channels_last"
    before = x.copy()
    ref = reference(conv, x, w, bias, groups=groups, **kw)
    launched = spy_launches(monkeypatch)
    if not fp64:
        with pytest.raises(clconv.BackendUnavailable, match="cl_khr_fp64"):
            conv(x, w, groups=groups, backend=cl_backend, **kw)
        return
    with paths.override("pixels", pv=pv, fbk=4):
        y = conv(x, w, None if bias is None else bias.astype(dtype), groups=groups,
                 backend=cl_backend, **kw)
    np.testing.assert_array_equal(x, before)
    names = [name for name, _ in launched]
    assert "conv_pixels" in names
    # Channels-last and int16 inputs pass through the pad pass first, whose copy
    # lays each channel's pixels out in one run.
    assert ("im2col_pixels" not in names) == direct, names
    assert_close(y, ref, dtype, shape[1] // groups + 1)


DEVICE_PACK_CASES = GRID[::4]


@pytest.mark.parametrize("case", DEVICE_PACK_CASES, ids=lambda c: c.ident())
def test_host_weights_packed_on_the_device(cl_backend, monkeypatch, case):
    """Large host weights are uploaded as they are and packed by pack.cl (every
    path's layout: filter blocks, zero filters past the last, flipped taps,
    groups, dtypes); here every weight takes that route."""
    from clconv.backends.opencl.paths import pack

    monkeypatch.setattr(pack, "DEVICE_PACK_MIN", 1)
    check_against_oracle(case, cl_backend)


@pytest.mark.parametrize("flip", [False, True])
def test_large_host_weights_at_the_real_threshold(cl_backend, rng, flip):
    """A 1.2 MB weight (250 filters: the last block of 16 is padded with zeros)."""
    from clconv.backends.opencl.paths.pack import DEVICE_PACK_MIN

    w = rng.standard_normal((250, 128, 3, 3)).astype(np.float32)
    assert w.nbytes >= DEVICE_PACK_MIN
    x = rng.standard_normal((1, 128, 6, 5)).astype(np.float32)
    b = rng.standard_normal(250).astype(np.float32)
    y = clconv.conv2d(x, w, b, padding=1, flip=flip, backend=cl_backend)
    assert_close(y, reference(clconv.conv2d, x, w, b, padding=1, flip=flip), np.float32,
                 w[0].size + 1)


@pytest.mark.parametrize(("path", "shape", "kw"), [
    ("gemm", ((2, 8, 9, 10), (16, 8, 3, 3)), {"padding": 1}),
    ("gemm", ((1, 3, 20, 20), (20, 3, 7, 7)), {"padding": 3, "stride": 2}),
    ("pointwise", ((2, 9, 15, 32), (24, 32, 1, 1)), {"data_format": "channels_last"}),
    ("pixels", ((2, 32, 9, 15), (24, 32, 1, 1)), {}),  # channels-first 1x1
    ("rows", ((1, 4, 30, 33), (4, 1, 5, 5)), {"padding": 2, "groups": 4}),
    ("rows", ((1, 1, 3000), (1, 1, 41)), {"padding": 20}),
    ("tiny", ((1, 1, 8, 8), (1, 1, 3, 3)), {"padding": 1}),
    ("pixels", ((1, 128, 7, 7), (128, 128, 3, 3)), {"padding": 1}),
    ("pixels", ((1, 256, 14, 14), (512, 256, 1, 1)), {"stride": 2}),
    ("direct", ((1, 4, 9, 9), (8, 4, 3, 3)), {}),
])
def test_heuristic_and_forced_choice(cl_backend, be, monkeypatch, path, shape, kw, rng):
    """The default choice picks the intended path, forcing picks it too, and both agree."""
    chosen = spy_choices(monkeypatch)
    x = rng.standard_normal(shape[0]).astype(np.float32)
    w = rng.standard_normal(shape[1]).astype(np.float32)
    fn = clconv.conv1d if x.ndim == 3 else clconv.conv2d
    y = fn(x, w, backend=cl_backend, **kw)
    expect = "direct" if path == "direct" else path
    if path == "direct":  # the default picks gemm here; only forcing reaches direct
        monkeypatch.setenv("CLCONV_OPENCL_PATH", "direct")
        y = fn(x, w, backend=cl_backend, **kw)
    assert chosen[-1] == expect
    assert_close(y, reference(fn, x, w, **kw), np.float32, w[0].size)


def test_unknown_forced_path_is_an_argument_error(cl_backend, monkeypatch):
    monkeypatch.setenv("CLCONV_OPENCL_PATH", "fastest")
    with pytest.raises(clconv.ArgumentError, match="CLCONV_OPENCL_PATH"):
        clconv.conv1d(np.ones((1, 1, 5), np.float32), np.ones((1, 1, 3), np.float32),
                      backend=cl_backend)


HANDOVER_CASES = {  # path -> (input shape, weight shape, conv2d keywords, dtype, max alloc)
    # padding 20 and stride 8: a padded scratch ~30x the input and output
    "gemm": ((1, 6, 8, 9), (12, 6, 3, 3), {"padding": 20, "stride": 8}, "float32", 20000),
    "rows": ((1, 6, 8, 9), (6, 1, 3, 3), {"padding": 20, "stride": (8, 2), "groups": 6},
             "float32", 20000),
    # float16 input: the float32 scratch copy is twice the input
    "pointwise": ((2, 6, 8, 9), (4, 6, 1, 1), {}, "float16", 2500),
}


@pytest.mark.parametrize("path", list(HANDOVER_CASES))
def test_fast_path_hands_over_when_scratch_does_not_fit(cl_backend, monkeypatch, path, rng):
    """When the padded scratch cannot fit the device but input and output can, the plan
    runs the piece on the direct kernel with the fast path's packed weights."""
    xs, ws, kw, dtype, limit = HANDOVER_CASES[path]
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    monkeypatch.setenv("CLCONV_MAX_ALLOC", str(limit))
    launched = spy_launches(monkeypatch)
    with paths.override(path, **({"pad_pass": 1} if path == "rows" else {})):
        y = clconv.conv2d(x, w, b, backend=cl_backend, **kw)
    assert_close(y, reference(clconv.conv2d, x, w, b, **kw), np.dtype(dtype), w[0].size + 1)
    names = {name for name, _ in launched}
    assert any(name.startswith("conv_direct") for name in names), names
    assert not names & {"conv_gemm", "conv_rows", "pad_input"}, names


@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("writeable", [True, False])
def test_large_host_inputs_at_any_alignment(cl_backend, rng, offset, writeable):
    """Read-only host operands are used in place on unified memory at any element
    offset (from the page boundary before them), read-only arrays included: the
    numbers are right, the input is unchanged, and the result starts on the device's
    zero-copy alignment."""
    be = clconv.get_backend(cl_backend)
    raw = rng.standard_normal(2 * 3 * 200 * 300 + offset).astype(np.float32)
    x = raw[offset:].reshape(2, 3, 200, 300)
    x.flags.writeable = writeable
    assert x.nbytes >= 256 * 1024
    before = x.copy()
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    y = clconv.conv2d(x, w, padding=1, groups=3, backend=cl_backend)
    np.testing.assert_array_equal(x, before)
    assert_close(y, reference(clconv.conv2d, x, w, padding=1, groups=3), np.float32, 9)
    assert y.ctypes.data % be.dctx.zero_copy_align == 0


def test_results_are_mapped_exactly_where_they_use_host_memory(cl_backend):
    """A result buffer over the host array itself says so (read back by mapping, no
    copy); any other is read back by a copy, and a small result's buffer is never
    queried for its flags."""
    import pyopencl as cl

    from clconv.backends.opencl.execute import ZERO_COPY_MIN, aligned_empty, host_operand

    be = clconv.get_backend(cl_backend)
    dctx, queue = be.dctx, be.queue
    allocate = dctx.allocator(queue)
    large = be.empty_result((ZERO_COPY_MIN // 4,), np.float32)
    small = aligned_empty((64,), np.float32, 4096)
    unaligned = aligned_empty((ZERO_COPY_MIN // 4 + 1,), np.float32, 4096)[1:]
    for array, in_place in [(large, True), (large, False), (small, True), (unaligned, True)]:
        op = host_operand(dctx, queue, array, allocate, writable=True, in_place=in_place)
        uses_host = bool(op.buffer.flags & cl.mem_flags.USE_HOST_PTR)
        assert op.mapped == uses_host, (array.nbytes, in_place)
        expected = (in_place and array.nbytes >= ZERO_COPY_MIN and dctx.host_unified
                    and array.ctypes.data % dctx.zero_copy_align == 0)
        assert uses_host == expected


@pytest.mark.parametrize("path", ["gemm", "pixels", "direct"])
def test_device_calls_never_read_host_operands_after_returning(cl_backend, rng, path):
    """A call on device arrays returns before its kernels run, so host weights must
    not be used in place: here the queue is kept busy, each weight (and any packed
    copy) is freed at once and its memory refilled with NaN, and every result must
    still be right."""
    busy_x = clconv.to_device(rng.standard_normal((8, 32, 48, 48)).astype(np.float32),
                              backend=cl_backend)
    busy_w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    x_host = rng.standard_normal((1, 32, 12, 12)).astype(np.float32)
    x = clconv.to_device(x_host, backend=cl_backend)
    results, weights = [], []
    with paths.override(path):
        for _ in range(4):
            clconv.conv2d(busy_x, busy_w, padding=1, backend=cl_backend)
            w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)  # 72 KiB
            weights.append(w.copy())
            results.append(clconv.conv2d(x, w, padding=1, backend=cl_backend))
            del w
            junk = [np.full(n // 4, np.nan, np.float32)  # reuses the freed blocks
                    for n in (73728, 73728 + 4096, 73728 + 128) for _ in range(4)]
            del junk
    for y, w in zip(results, weights):
        assert_close(y.get(), reference(clconv.conv2d, x_host, w, padding=1), np.float32,
                     w[0].size)


@pytest.mark.parametrize("offset", [1, 5, 1000])
def test_unaligned_host_input_is_used_in_place(cl_backend, offset):
    """On unified memory an unaligned read-only array becomes a buffer over its own
    memory, from the alignment boundary before it, with the element offset in between."""
    from clconv.backends.opencl.execute import IN_PLACE_MIN, host_operand

    dctx = clconv.get_backend(cl_backend).dctx
    raw = aligned_empty_for_test(IN_PLACE_MIN + 8 * 1024, max(dctx.zero_copy_align, 64))
    x = raw[offset:]
    copied = host_operand(dctx, dctx.queue, x, dctx.allocator(dctx.queue))
    assert not copied.buffer.flags & cl.mem_flags.USE_HOST_PTR  # not unless asked
    op = host_operand(dctx, dctx.queue, x, dctx.allocator(dctx.queue), in_place=True)
    if not dctx.host_unified:
        assert op.offset == 0
        return
    assert op.buffer.flags & cl.mem_flags.USE_HOST_PTR
    assert op.offset == (x.ctypes.data % dctx.zero_copy_align) // 4
    assert op.buffer.size == op.offset * 4 + x.nbytes
    back = np.empty(op.buffer.size // 4, np.float32)
    cl.enqueue_copy(dctx.queue, back, op.buffer)
    np.testing.assert_array_equal(back[op.offset:], x)


def aligned_empty_for_test(nbytes: int, align: int) -> np.ndarray:
    """float32 values 0, 1, 2, ... starting on an ``align``-byte boundary."""
    from clconv.backends.opencl.execute import aligned_empty

    a = aligned_empty((nbytes // 4,), np.float32, align)
    a[:] = np.arange(a.size)
    return a


@pytest.mark.parametrize("dst", ["uint8", "int16", "uint16", "int32"])
def test_device_saturation_in_whole_chunks_and_a_tail(cl_backend, rng, dst):
    """cast.cl converts 16-element vectors per chunk and a scalar tail, from a
    device array at an element offset: the same numbers as the host rule, from
    float32, float16 and (where the device has cl_khr_fp64) float64."""
    from clconv.filters import saturate_host

    be = clconv.get_backend(cl_backend)
    sources = ["float32", "float16"] + (["float64"] if be.dctx.info.fp64 else [])
    for src in sources:
        values = rng.standard_normal(3 * 64 + 17 + 5) * 40000
        values[::7] = np.round(values[::7]) + 0.5  # ties
        values[3::11] = np.nan
        with np.errstate(over="ignore"):  # float16 overflows to inf: part of the test
            values = values.astype(src)
        device = clconv.to_device(values, backend=cl_backend)[5:]  # an element offset
        got = be.saturate(device, np.dtype(dst)).get()
        np.testing.assert_array_equal(got, saturate_host(values[5:], np.dtype(dst)), src)


def test_device_style_rules_pick_the_kernel_style():
    """Device -> vendor -> platform -> type -> built-in default, first match wins; the
    heuristic then takes only paths of that style (or of none)."""
    from clconv.backends._base import DeviceInfo
    from clconv.backends.opencl import tuning
    from clconv.backends.opencl.context import compute_limits

    def info(name, platform, kind):
        return DeviceInfo("opencl:9:9", platform, name, kind, 2, 2**30, 2**28, True, True,
                          max_work_group_size=256, local_mem=32768)

    rules = {("device", "fancy"): "vector", ("platform", "acme cl"): "lanes",
             ("type", "gpu"): "lanes"}
    assert tuning.device_style(info("Fancy GPU", "Acme CL", "gpu"), "", rules) == "vector"
    assert tuning.device_style(info("Other", "Acme CL", "cpu"), "", rules) == "lanes"
    assert tuning.device_style(info("Other", "Else", "gpu"), "", rules) == "lanes"
    assert tuning.device_style(info("Other", "Else", "cpu"), "", rules) == tuning.DEFAULT_STYLE
    spec = normalize_conv(2, np.zeros((1, 16, 20, 20), np.float32),
                          np.zeros((16, 16, 3, 3), np.float32), None, 1, 1, 1, 1, "zeros",
                          "channels_first", False).spec
    limits = compute_limits(info("Other", "Else", "cpu"))

    def first(style):
        return paths.choices(spec, limits, lambda name: {}, lambda s: None, style)[0].path.name

    assert first("vector") == "gemm"
    assert first("lanes") == "lanes"


def test_lanes_path_leads_on_intels_cpu_runtime_where_it_is_faster(monkeypatch):
    """Intel's CPU runtime (vector style, but its compiler vectorises across
    work-items too) takes the lanes path ahead of gemm for float32 channels-first
    layers, stride 1 along W, >= 8 filters per group and >= 9 taps per plane, whose
    rows fill 16-lane vectors or whose groups have at most 16 filters; gemm and the
    other paths keep everything else, and PoCL (which does not vectorise across
    work-items) never takes it."""
    from clconv.backends._base import DeviceInfo
    from clconv.backends.opencl.context import compute_limits

    monkeypatch.delenv("CLCONV_STRICT_LIMITS", raising=False)

    def first(platform, x_shape, w_shape, stride=1, groups=1, dtype=np.float32,
              data_format="channels_first"):
        info = DeviceInfo("opencl:9:9", platform, "AMD EPYC", "cpu", 2, 2**34, 2**32, True,
                          True, max_work_group_size=8192, local_mem=262144)
        spec = normalize_conv(len(x_shape) - 2, np.zeros(x_shape, dtype),
                              np.zeros(w_shape, dtype), None, stride, 1, 1, groups, "zeros",
                              data_format, False).spec
        return paths.choices(spec, compute_limits(info), lambda name: {}, lambda s: None,
                             "vector")[0].path.name

    intel, pocl = "Intel(R) OpenCL", "Portable Computing Language"
    batch8 = ((8, 32, 64, 64), (64, 32, 3, 3))
    assert first(intel, *batch8) == "lanes" and first(pocl, *batch8) == "gemm"
    assert first(intel, (1, 64, 56, 56), (64, 16, 3, 3), groups=4) == "lanes"  # 16 per group
    assert first(intel, (1, 8, 32, 32, 32), (16, 8, 3, 3, 3)) == "lanes"  # 3-D
    assert first(intel, (1, 64, 56, 56), (64, 64, 3, 3)) == "gemm"  # 56 wide, 64 filters
    assert first(intel, (8, 32, 64, 64), (64, 32, 3, 3), stride=2) == "gemm"
    assert first(intel, (8, 32, 64, 64), (64, 32, 1, 1)) == "pixels"  # one tap: not lanes
    assert first(intel, *batch8, dtype=np.float64) == "gemm"
    assert first(intel, (8, 64, 64, 32), (64, 32, 3, 3), data_format="channels_last") == "gemm"
    assert first(intel, (1, 4, 16, 16), (8, 4, 3, 3)) != "lanes"  # too small to pay
    assert first(intel, (1, 16, 64, 64), (16, 1, 3, 3), groups=16) == "rows"  # depthwise


def test_gemm_groups_neighbouring_column_blocks_on_intels_cpu_runtime(monkeypatch):
    """On Intel's CPU runtime (one task per work-group) the gemm path puts up to four
    neighbouring work-items of a row (its column blocks, and the filter blocks of
    each) in a work-group, fewer where a row has fewer; other CPU
    runtimes keep one work-item per group, GPUs their GPU-shaped groups."""
    from clconv.backends._base import DeviceInfo
    from clconv.backends.opencl.context import compute_limits
    from clconv.backends.opencl.paths.gemm import gemm_config

    monkeypatch.delenv("CLCONV_STRICT_LIMITS", raising=False)  # CPU shapes, not GPU ones

    def limits(platform, kind="cpu"):
        return compute_limits(DeviceInfo("opencl:9:9", platform, "Some CPU", kind, 2, 2**30,
                                         2**28, True, True, max_work_group_size=8192,
                                         local_mem=32768))

    def spec(width, filters=64):
        return normalize_conv(2, np.zeros((1, 16, 20, width), np.float32),
                              np.zeros((filters, 16, 3, 3), np.float32), None, 1, 1, 1, 1,
                              "zeros", "channels_first", False).spec

    intel, pocl = limits("Intel(R) OpenCL"), limits("Portable Computing Language")
    assert intel.group_tasks and not pocl.group_tasks
    assert gemm_config(spec(56), intel, 56).wg_x == 4
    assert gemm_config(spec(56), pocl, 56).wg_x == 1
    # 16 filters, 8 columns: one filter block and at most two column blocks a row
    narrow = gemm_config(spec(8, filters=16), intel, 8, rows=False)
    assert 1 <= narrow.wg_x <= 2 and narrow.wg_y == 1
    gpu = limits("Intel(R) OpenCL Graphics", "gpu")
    assert not gpu.group_tasks and gemm_config(spec(56), gpu, 56).wg_x > 4
