"""Reliability under load and faults: threads, leaks, faults, numerical limits.

Every test runs for real: on the NumPy backend and on each OpenCL device
(CI has PoCL). RELIABILITY.md lists the guarantees and points at these
tests. Argument fuzzing lives in tests/test_fuzz.py.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from typing import Any

import numpy as np
import pyopencl as cl
import pytest

import clconv
from clconv import backends as registry
from clconv.backends import numpy_ as numpy_backend

CONVS = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; ru_maxrss is a peak, not a level)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_buffers() -> int:
    """pyopencl memory objects alive in this process (pooled or not)."""
    gc.collect()
    with warnings.catch_warnings():
        # isinstance() on some objects of other libraries (PyTorch, when installed)
        # touches deprecated attributes that warn
        warnings.simplefilter("ignore", FutureWarning)
        return sum(isinstance(o, cl.MemoryObjectHolder) for o in gc.get_objects())


@pytest.fixture
def restore_registry():
    """Put the registry's factories, instances and fallback flag back after a test."""
    factories, instances = dict(registry._factories), dict(registry._instances)
    fallback = registry._implicit_fallback
    yield
    with registry._lock:
        registry._factories.clear()
        registry._factories.update(factories)
        registry._instances.clear()
        registry._instances.update(instances)
        registry._implicit_fallback = fallback


# ------------------------------------------------------------ 1. concurrency

def mixed_cases(rng: np.random.Generator) -> list[tuple[int, tuple, dict]]:
    """conv1d/2d/3d calls of different shapes, dtypes and options: (ndim, operands, kwargs)."""
    specs = [
        (1, (2, 3, 31), (4, 3, 5), {"padding": 2}),
        (1, (3, 17), (6, 3, 3), {"stride": 2, "padding": "same", "padding_mode": "reflect"}),
        (1, (1, 4, 40), (4, 1, 7), {"groups": 4, "dilation": 2, "padding": "full"}),
        (2, (2, 3, 13, 11), (8, 3, 3, 3), {"padding": 1, "padding_mode": "circular"}),
        (2, (1, 4, 9, 9), (4, 2, 3, 2), {"groups": 2, "stride": (2, 1), "flip": True}),
        (2, (12, 10, 3), (5, 3, 3, 3), {"data_format": "channels_last", "padding": "same"}),
        (2, (1, 16, 8, 8), (16, 16, 1, 1), {}),
        (2, (2, 2, 20, 7), (3, 2, 5, 3), {"padding": ((2, 1), 0), "padding_mode": "replicate"}),
        (3, (1, 2, 6, 7, 5), (3, 2, 3, 3, 3), {"padding": 1}),
        (3, (2, 6, 5, 4), (2, 2, 2, 2, 2), {"stride": 2, "padding": "same",
                                            "padding_mode": "reflect"}),
        (3, (1, 3, 4, 4, 4), (3, 1, 3, 1, 2), {"groups": 3, "dilation": (1, 1, 2)}),
    ]
    cases = []
    for i, (nd, xs, ws, kw) in enumerate(specs):
        dtype = np.float16 if i % 4 == 3 else np.float32
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32) if i % 2 else None
        cases.append((nd, (x, w, b), kw))
    return cases


class ScopedName:
    """A backend registered under its own name that delegates to ``inner``.

    Each thread scopes its own one; seeing another thread's name inside a
    scope would be a leak."""

    def __init__(self, name: str, inner: Any) -> None:
        self.name, self.inner = name, inner

    def conv_forward(self, x, weight, bias, spec):
        return self.inner.conv_forward(x, weight, bias, spec)

    def conv_backward(self, x, weight, grad_output, spec):
        return self.inner.conv_backward(x, weight, grad_output, spec)


@pytest.mark.timeout(240)
def test_eight_threads_times_200_mixed_calls_equal_single_threaded(backend, restore_registry):
    """8 threads x 200 mixed conv1d/2d/3d calls on one backend: bit-identical to the
    single-threaded results, no deadlock, and each thread's use_backend scope stays its own."""
    threads_n, calls = 8, 200
    cases = mixed_cases(np.random.default_rng(8))
    want = [CONVS[nd](*ops, backend=backend, **kw) for nd, ops, kw in cases]
    inner = clconv.get_backend(backend)
    names = [f"reliability-thread-{i}" for i in range(threads_n)]
    for name in names:
        clconv.register_backend(name, lambda option, n=name: ScopedName(n, inner), replace=True)
    barrier = threading.Barrier(threads_n + 1, timeout=60)
    failures: list[str] = []
    done = [0] * threads_n

    def work(t: int) -> None:
        try:
            barrier.wait()
            for j in range(calls):
                k = (t * 5 + j) % len(cases)
                nd, ops, kw = cases[k]
                if j % 2:  # the thread's own scope: no backend= argument
                    with clconv.use_backend(names[t]) as scoped:
                        assert scoped.name == names[t]
                        y = CONVS[nd](*ops, **kw)
                        seen = clconv.get_backend().name
                        if seen != names[t]:
                            failures.append(f"thread {t} saw scope {seen!r}")
                else:
                    y = CONVS[nd](*ops, backend=backend, **kw)
                if y.dtype != want[k].dtype or not np.array_equal(y, want[k], equal_nan=True):
                    failures.append(f"thread {t} call {j} case {k}: result differs")
                done[t] += 1
        except Exception as exc:  # reported below; a thread must not die silently
            failures.append(f"thread {t}: {exc!r}")

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads_n)]
    for w in workers:
        w.start()
    barrier.wait()
    # The main thread never entered a scope: it sees no thread's default.
    while any(w.is_alive() for w in workers):
        assert registry._scoped.get() is None
        assert clconv.get_backend(backend).name == inner.name
        time.sleep(0.05)
    for w in workers:
        w.join(timeout=200)
    assert not any(w.is_alive() for w in workers), "a worker is stuck (deadlock?)"
    assert failures == []
    assert done == [calls] * threads_n
    assert registry.default_backend_name() in (None, os.environ.get("CLCONV_BACKEND"))


# ------------------------------------------------------------ 2. no leaks

LEAK_CALLS = int(os.environ.get("CLCONV_LEAK_CALLS", "5000"))


@pytest.mark.timeout(300)
def test_5000_calls_do_not_leak_host_or_device_memory(cl_backend):
    """conv2d with varying shapes: RSS grows < 50 MB after warm-up; live pooled device buffers
    return to the baseline; the program cache stays within its bound and builds nothing new."""
    be = clconv.get_backend(cl_backend)
    rng = np.random.default_rng(2)
    shapes = [((1 + i % 3, 2 + i % 4, 6 + i, 5 + 2 * i), (1 + i % 5, 2 + i % 4, 1 + i % 3, 3))
              for i in range(10)]
    ops = [(rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32))
           for xs, ws in shapes]
    modes = ["zeros", "reflect", "replicate", "circular"]

    def call(i: int) -> np.ndarray:
        x, w = ops[i % len(ops)]
        return clconv.conv2d(x, w, padding=1 + i % 2, padding_mode=modes[i % 4],
                             backend=cl_backend)

    for i in range(200):  # warm-up: every program built, the pool at its working size
        call(i)
    gc.collect()
    base = be.stats()
    # Every OpenCL object (buffers, also the unpooled zero-copy ones of host operands,
    # programs, kernels) retains its context: the driver's count of live objects.
    refs0 = be.context.get_info(cl.context_info.REFERENCE_COUNT)
    buffers0 = live_buffers()
    rss0 = rss_bytes()
    start = time.perf_counter()
    for i in range(LEAK_CALLS):
        y = call(i)
        if i % 997 == 0:  # the results stay right all along
            x, w = ops[i % len(ops)]
            ref = clconv.conv2d(x, w, padding=1 + i % 2, padding_mode=modes[i % 4],
                                backend="numpy")
            np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    elapsed = time.perf_counter() - start
    del y
    gc.collect()
    after = be.stats()
    grown = rss_bytes() - rss0
    print(f"{LEAK_CALLS} conv2d calls in {elapsed:.1f} s; RSS grew {grown / 2**20:.1f} MiB; "
          f"stats {base} -> {after}; context refs {refs0}; live buffers {buffers0}")
    assert grown < 50 * 2**20
    assert after["active_blocks"] == base["active_blocks"]
    assert after["active_bytes"] == base["active_bytes"]
    assert after["held_blocks"] <= base["held_blocks"] + 8  # the pool reuses, it does not grow
    assert after["builds"] == base["builds"]
    assert after["cache_size"] <= after["cache_max_size"]
    assert be.context.get_info(cl.context_info.REFERENCE_COUNT) == refs0
    assert live_buffers() == buffers0


def test_program_cache_is_a_bounded_lru(cl_backend):
    """With the bound lowered to 2, building a third program evicts the least recently used."""
    from clconv.backends.opencl.build import CACHE_SIZE, ProgramCache, ProgramRef

    dctx = clconv.get_backend(cl_backend).dctx
    assert dctx.programs.max_size == CACHE_SIZE == 64
    cache = ProgramCache(dctx.context, dctx.device, max_size=2)
    # An unused macro makes programs that no other test builds.
    refs = [ProgramRef.of("pack.cl", {"ELEM_KIND": 0, "W_T": "float", "W_HALF": 0, "FB": 1,
                                      "WG_PACK": 64, "ROUND_HALF": 0, "CLCONV_LRU_TEST": tag})
            for tag in (1, 2, 3)]
    first = cache.get(refs[0])
    cache.get(refs[1])
    assert cache.get(refs[0]) is first  # a hit refreshes it
    cache.get(refs[2])  # evicts refs[1], the least recently used
    assert len(cache) <= 2
    builds = cache.builds
    assert cache.get(refs[0]) is first
    assert cache.builds == builds
    cache.get(refs[1])
    assert cache.builds == builds + 1
    assert len(cache) <= 2


def test_plans_do_not_keep_evicted_programs_alive(cl_backend, monkeypatch, rng):
    """Memoised plans name their programs instead of holding them, so the LRU bound is
    the real bound: an evicted program is freed, and a plan that needs it again gets it
    rebuilt."""
    import weakref

    from clconv.backends.opencl.build import ProgramCache

    dctx = clconv.get_backend(cl_backend).dctx
    monkeypatch.setattr(dctx, "programs", ProgramCache(dctx.context, dctx.device))
    x = rng.standard_normal((1, 8, 12, 11)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    ref = clconv.conv2d(x, w, padding=1, backend="numpy")
    np.testing.assert_allclose(clconv.conv2d(x, w, padding=1, backend=cl_backend), ref,
                               rtol=1e-4, atol=1e-4)
    built = [weakref.ref(p) for p in dctx.programs._programs.values()]
    assert built
    dctx.programs.clear()
    gc.collect()
    assert all(r() is None for r in built)
    builds = dctx.programs.builds
    np.testing.assert_allclose(clconv.conv2d(x, w, padding=1, backend=cl_backend), ref,
                               rtol=1e-4, atol=1e-4)
    assert dctx.programs.builds > builds


# ------------------------------------------------------------ 3. faults

def test_invalid_build_option_is_a_kernel_build_error_and_backend_recovers(cl_backend):
    """An option the compiler rejects (not a source error: the log may be empty) still gives
    KernelBuildError naming the option; the next call builds and computes normally."""
    from clconv.backends.opencl.build import build, build_options

    dctx = clconv.get_backend(cl_backend).dctx
    defines = {"ELEM_KIND": 0, "W_T": "float", "W_HALF": 0, "FB": 1, "WG_PACK": 64,
               "ROUND_HALF": 0}
    options = build_options(dctx.device, defines, ("-cl-no-such-option-for-clconv",))
    with pytest.raises(clconv.KernelBuildError) as err:
        build(dctx.context, dctx.device, "pack.cl", options)
    assert "-cl-no-such-option-for-clconv" in err.value.options
    assert "-cl-no-such-option-for-clconv" in str(err.value)
    assert err.value.log  # the build log, or the driver's error text when there is none
    x = np.arange(2 * 3 * 7 * 7, dtype=np.float32).reshape(2, 3, 7, 7)
    w = np.ones((4, 3, 3, 3), np.float32)
    np.testing.assert_array_equal(clconv.conv2d(x, w, backend=cl_backend),
                                  clconv.conv2d(x, w, backend="numpy"))


def test_result_beyond_the_device_is_an_allocation_error(cl_backend, monkeypatch):
    """A device-array input whose result exceeds the device's largest buffer (lowered
    to 64 MiB, so that host memory is no limit on any runtime): AllocationError before
    allocating anything; the backend keeps working."""
    monkeypatch.setenv("CLCONV_MAX_ALLOC", str(64 * 2**20))
    be = clconv.get_backend(cl_backend)
    side = int((64 * 2**20 // 4) ** 0.5) + 2
    pad = side // 2
    x = clconv.to_device(np.ones((1, 1, 1, 1), np.float32), backend=cl_backend)
    w = np.ones((1, 1, 1, 1), np.float32)
    before = be.stats()["active_blocks"]
    start = time.perf_counter()
    with pytest.raises(clconv.AllocationError, match=r"largest buffer \(67108864 bytes\)"):
        clconv.conv2d(x, w, padding=pad, backend=cl_backend)
    assert time.perf_counter() - start < 5
    assert be.stats()["active_blocks"] == before
    y = clconv.conv2d(x, w, padding=1, backend=cl_backend).get()
    assert y.sum() == 1 and y[0, 0, 1, 1] == 1


@pytest.mark.parametrize("refuse_at", [1, 2, 3])
def test_driver_refusing_memory_is_an_allocation_error(cl_backend, monkeypatch, refuse_at):
    """The driver refusing a buffer mid-call (a pyopencl MemoryError from the pool or from
    ``clCreateBuffer``, first, second or third buffer of the call) surfaces as
    AllocationError; pooled buffers of the failed call are released; the next call is right."""
    be = clconv.get_backend(cl_backend)
    x = np.random.default_rng(3).standard_normal((2, 3, 40, 40)).astype(np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    ref = clconv.conv2d(x, w, backend=cl_backend)
    gc.collect()
    before = be.stats()["active_blocks"]
    count = {"n": 0}

    def refusing(real: Any) -> Any:
        def create(*args: Any, **kwargs: Any) -> Any:
            count["n"] += 1
            if count["n"] >= refuse_at:
                raise cl.MemoryError("clCreateBuffer failed: MEM_OBJECT_ALLOCATION_FAILURE")
            return real(*args, **kwargs)
        return create

    with monkeypatch.context() as m:
        m.setattr(be.dctx, "allocate", refusing(be.dctx.allocate))
        m.setattr(cl, "Buffer", refusing(cl.Buffer))
        with pytest.raises(clconv.AllocationError, match="ran out of memory"):
            clconv.conv2d(x, w, backend=cl_backend)
    assert count["n"] >= refuse_at
    gc.collect()
    assert be.stats()["active_blocks"] == before
    np.testing.assert_array_equal(clconv.conv2d(x, w, backend=cl_backend), ref)


@pytest.mark.parametrize("where", ["forward", "device_forward", "backward"])
def test_device_failing_mid_call_is_backend_unavailable(cl_backend, monkeypatch, where):
    """A driver error during a call (a GPU lost or reset mid-run: simulated by failing the
    kernel launch) is BackendUnavailable naming the device, the driver's error chained;
    the pooled buffers of the failed call are released and, once the device answers
    again, the next call is right."""
    be = clconv.get_backend(cl_backend)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    ref = clconv.conv2d(x, w, padding=1, backend=cl_backend)
    gc.collect()
    before = be.stats()["active_blocks"]

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise cl.RuntimeError("clEnqueueNDRangeKernel failed: DEVICE_NOT_AVAILABLE (simulated)")

    with monkeypatch.context() as m:
        m.setattr(cl, "enqueue_nd_range_kernel", lost)
        with pytest.raises(clconv.BackendUnavailable) as err:
            if where == "forward":
                clconv.conv2d(x, w, padding=1, backend=cl_backend)
            elif where == "device_forward":
                clconv.conv2d(clconv.to_device(x, backend=cl_backend), w, padding=1,
                              backend=cl_backend)
            else:
                clconv.conv_backward(x, w, np.ones_like(ref), padding=1, backend=cl_backend)
    assert be.dctx.info.name in str(err.value) and "DEVICE_NOT_AVAILABLE" in str(err.value)
    assert isinstance(err.value.__cause__, cl.Error)
    del err  # the exception's traceback holds the failed call's frames
    gc.collect()
    assert be.stats()["active_blocks"] == before
    np.testing.assert_array_equal(clconv.conv2d(x, w, padding=1, backend=cl_backend), ref)


def test_numpy_backend_out_of_memory_is_an_allocation_error(monkeypatch):
    def no_memory(*args):
        raise MemoryError("simulated")

    monkeypatch.setattr(numpy_backend, "correlate", no_memory)
    with pytest.raises(clconv.AllocationError, match="host memory"):
        clconv.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), backend="numpy")


def test_padding_near_2_31_is_refused_before_allocating(backend):
    """padding=2**31 passes the 2**46-element guard; the padded input and output (~1 TiB) can
    never fit host memory: AllocationError at once, naming the sizes, nothing allocated."""
    x = np.ones((1, 64, 1), np.float32)
    w = np.ones((1, 64, 1), np.float32)
    rss0 = rss_bytes()
    start = time.perf_counter()
    with pytest.raises(clconv.AllocationError, match="GiB of host memory") as err:
        clconv.conv1d(x, w, padding=2**31, backend=backend)
    assert time.perf_counter() - start < 2
    assert rss_bytes() - rss0 < 64 * 2**20
    assert "padding ((2147483648, 2147483648),)" in str(err.value)
    assert isinstance(err.value, MemoryError)


def test_steps_beyond_int32_that_matter_are_a_shape_error(backend, monkeypatch):
    """Regression (OpenCL raised OverflowError): padding, stride and dilation of 2**31 on a
    one-pixel input leave two output positions, so the 2**31 steps matter; the kernels take
    32-bit steps, so this is a ShapeError on every backend, raised before any allocation."""
    monkeypatch.setenv("CLCONV_MAX_HOST_BYTES", str(2**45))  # not the memory check
    x = np.ones((1, 1, 1), np.float32)
    w = np.ones((1, 1, 2), np.float32)
    with pytest.raises(clconv.ShapeError, match="2147483647"):
        clconv.conv1d(x, w, padding=2**31, dilation=2**31, stride=2**31, backend=backend)


def test_stride_of_a_single_output_is_not_a_step(cl_backend, monkeypatch):
    """One output position: any stride (2**40 here) gives the same result as stride 1."""
    monkeypatch.setenv("CLCONV_MAX_HOST_BYTES", str(2**45))  # the device never pads on host
    x = np.ones((1, 1, 1), np.float32)
    w = np.ones((1, 1, 2), np.float32)
    y = clconv.conv1d(x, w, padding=2**31, stride=2**40, backend=cl_backend)
    np.testing.assert_array_equal(y, np.zeros((1, 1, 1), np.float32))
    x5 = np.arange(1, 6, dtype=np.float32).reshape(1, 1, 5)
    for be in (cl_backend, "numpy"):
        np.testing.assert_array_equal(
            clconv.conv1d(x5, np.ones((1, 1, 2), np.float32), padding=1, stride=2**40,
                          backend=be), [[[1.0]]])


@pytest.mark.parametrize("batch,filters", [(0, 0), (0, 1), (1, 0)])
def test_empty_result_of_unrepresentable_shape_is_an_allocation_error(backend, batch, filters):
    """Regression (fuzzer, long profile; OpenCL raised NumPy's ValueError "array is too big"):
    an empty batch or zero filters with padding 2**31-1 makes an empty result whose other
    axes multiply to 2**64, which NumPy cannot describe. AllocationError, like the same call
    with a non-empty batch."""
    x = np.ones((batch, 1, 1, 1), np.float16)
    w = np.ones((filters, 1, 1, 1), np.float16)
    with pytest.raises(clconv.AllocationError, match="elements"):
        clconv.conv2d(x, w, padding=2**31 - 1, backend=backend)
    y = clconv.conv2d(x, w, padding=2**10, backend=backend)  # representable: empty result
    assert y.shape == (batch, filters, 2049, 2049) and y.size == 0


def test_host_memory_limit_setting(backend, monkeypatch):
    """CLCONV_MAX_HOST_BYTES lowers the limit (padded input + output, accumulator precision);
    a bad value is an ArgumentError naming the variable."""
    x = np.ones((1, 1, 100, 100), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    need = (102 * 102 + 100 * 100) * 4
    monkeypatch.setenv("CLCONV_MAX_HOST_BYTES", str(need))
    assert clconv.conv2d(x, w, padding=1, backend=backend).shape == (1, 1, 100, 100)
    monkeypatch.setenv("CLCONV_MAX_HOST_BYTES", str(need - 1))
    with pytest.raises(clconv.AllocationError, match="CLCONV_MAX_HOST_BYTES"):
        clconv.conv2d(x, w, padding=1, backend=backend)
    monkeypatch.setenv("CLCONV_MAX_HOST_BYTES", "plenty")
    with pytest.raises(clconv.ArgumentError, match="CLCONV_MAX_HOST_BYTES"):
        clconv.conv2d(x, w, padding=1, backend=backend)


def test_keyboard_interrupt_mid_call_leaves_backend_usable(backend, monkeypatch):
    """A KeyboardInterrupt raised inside a call (between tiles on OpenCL, inside the
    reference's correlation on NumPy) propagates unchanged; device buffers are released and
    the next call gives the right numbers."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 24, 20)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    ref = clconv.conv2d(x, w, padding=1, backend=backend)
    is_cl = backend != "numpy"
    if is_cl:
        from clconv.backends.opencl import backend as cl_module

        be = clconv.get_backend(backend)
        gc.collect()
        before = be.stats()["active_blocks"]
        monkeypatch.setenv("CLCONV_MAX_ALLOC", str(24 * 20 * 4 * 4))  # one sample a piece
        real, target, attr = cl_module.take_piece, cl_module, "take_piece"
    else:
        real, target, attr = numpy_backend.correlate, numpy_backend, "correlate"
    calls = {"n": 0}

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(target, attr, interrupted)
    with pytest.raises(KeyboardInterrupt):
        clconv.conv2d(x, w, padding=1, backend=backend)
        clconv.conv2d(x, w, padding=1, backend=backend)  # NumPy: the second call is hit
    monkeypatch.setattr(target, attr, real)
    assert calls["n"] == 2
    np.testing.assert_array_equal(clconv.conv2d(x, w, padding=1, backend=backend), ref)
    if is_cl:
        gc.collect()
        assert be.stats()["active_blocks"] == before


SIGINT_SCRIPT = textwrap.dedent("""
    import os, signal, threading, time
    import numpy as np
    import clconv

    name = {backend!r}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 64, 64)).astype(np.float32)
    w = rng.standard_normal((8, 8, 5, 5)).astype(np.float32)
    clconv.conv2d(x[:1], w, backend=name)  # build first
    os.environ["CLCONV_MAX_ALLOC"] = str(8 * 64 * 64 * 4)  # 16+ pieces a call: a long call
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    start, calls = time.time(), 0
    try:
        while time.time() - start < 60:
            clconv.conv2d(x, w, padding=2, backend=name)
            calls += 1
    except KeyboardInterrupt:
        print("interrupted after", calls, "whole calls")
    else:
        raise SystemExit("no interrupt arrived")
    del os.environ["CLCONV_MAX_ALLOC"]
    y = clconv.conv2d(x[:2], w, padding=2, backend=name)
    ref = clconv.conv2d(x[:2].astype(np.float64), w.astype(np.float64), padding=2,
                        backend="numpy")
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-3)
    print("USABLE")
""")


@pytest.mark.timeout(180)
def test_real_sigint_during_long_call_in_subprocess(backend):
    """A real SIGINT (Ctrl-C) during a long call: KeyboardInterrupt, no crash or hang, and
    the same process computes correctly afterwards."""
    proc = subprocess.run([sys.executable, "-c", SIGINT_SCRIPT.format(backend=backend)],
                          capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "interrupted after" in proc.stdout and "USABLE" in proc.stdout


def test_device_that_disappears_is_backend_unavailable_and_default_falls_back(
        cl_backend, monkeypatch, restore_registry, caplog):
    """Context creation failing (device gone): the named backend raises BackendUnavailable
    with the driver's reason; the implicit default logs a warning saying why and computes on
    NumPy."""
    from clconv.backends.opencl import context

    class GoneDevice:
        def __init__(self, *args: Any) -> None:
            raise cl.RuntimeError("clCreateContext failed: DEVICE_NOT_AVAILABLE (simulated)")

    monkeypatch.setattr(context, "DeviceContext", GoneDevice)
    monkeypatch.setattr(context, "_contexts", {})
    monkeypatch.delenv("CLCONV_BACKEND", raising=False)
    monkeypatch.setattr(registry, "_process_default", None)
    with registry._lock:
        for key in [k for k in registry._instances if k.startswith("opencl")]:
            del registry._instances[key]
        registry._implicit_fallback = False
    with pytest.raises(clconv.BackendUnavailable, match="DEVICE_NOT_AVAILABLE") as err:
        clconv.get_backend(cl_backend)
    assert cl_backend in str(err.value)
    with pytest.raises(clconv.BackendUnavailable, match="DEVICE_NOT_AVAILABLE"):
        clconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), backend=cl_backend)
    assert cl_backend not in clconv.available_backends()
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    w = np.ones((2, 1, 3, 3), np.float32)
    with caplog.at_level(logging.INFO, logger="clconv"):
        y = clconv.conv2d(x, w)
    assert clconv.get_backend().name == "numpy"
    np.testing.assert_array_equal(y, clconv.conv2d(x, w, backend="numpy"))
    assert any("falling back" in r.getMessage() and "DEVICE_NOT_AVAILABLE" in r.getMessage()
               and r.levelno == logging.WARNING for r in caplog.records)


# ------------------------------------------------------------ 5. numerical limits

def test_float16_overflow_matches_numpy_float16_cast(backend):
    """float16 results beyond the half range become +-inf exactly as NumPy's float16 cast of
    the (exact, here) float32 accumulation: 65504 and 65516 give 65504 (round to nearest),
    65520 and 65536 give inf."""
    tails = np.array([5504, 5520, 5516, 0, -5504, -5520, 1, 2048], np.float16)
    heads = np.array([60000, 60000, 60000, 60000, -60000, -60000, 65504, 63488], np.float16)
    x = np.stack([heads, tails])[None]  # (1, 2, 8): y = head + tail with a 1x1 kernel
    w = np.ones((1, 2, 1), np.float16)
    y = clconv.conv1d(x, w, backend=backend)
    want = np.array([65504, np.inf, 65504, 60000, -65504, -np.inf, 65504, np.inf], np.float16)
    exact = clconv.conv1d(x.astype(np.float64), w.astype(np.float64), backend="numpy")
    with np.errstate(over="ignore"):  # the overflow is the point
        np.testing.assert_array_equal(exact.astype(np.float32).astype(np.float16)[0, 0], want)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y[0, 0], want)
    # A 3x3 kernel over 16 channels: sums of up to 144 000 overflow, same cells on every backend.
    rng = np.random.default_rng(16)
    x2 = (rng.integers(-3, 7, (2, 16, 9, 9)) * 125).astype(np.float16)
    w2 = rng.integers(0, 5, (4, 16, 3, 3)).astype(np.float16)
    y2 = clconv.conv2d(x2, w2, padding=1, backend=backend)
    ref2 = clconv.conv2d(x2, w2, padding=1, backend="numpy")
    assert np.isinf(ref2).any() and np.isfinite(ref2).any()
    np.testing.assert_array_equal(y2, ref2)


# Documented bound (RELIABILITY.md): a float32 result differs from the float64 value by at
# most sqrt(K) * eps32 * sum_k |w_k * x_k| for a reduction of K products.
def test_float32_large_reduction_within_documented_bound(backend):
    rng = np.random.default_rng(512)
    x = rng.standard_normal((1, 512, 10, 10)).astype(np.float32)
    w = rng.standard_normal((8, 512, 7, 7)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    reduction = 512 * 7 * 7
    y = clconv.conv2d(x, w, b, padding=3, backend=backend)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    ref = clconv.conv2d(x64, w64, b.astype(np.float64), padding=3, backend="numpy")
    magnitude = clconv.conv2d(np.abs(x64), np.abs(w64), padding=3, backend="numpy")
    bound = np.sqrt(reduction) * np.finfo(np.float32).eps * magnitude + 4 * np.finfo(
        np.float32).eps * np.abs(ref)
    err = np.abs(y.astype(np.float64) - ref)
    print(f"{backend}: max err / bound = {np.max(err / bound):.3g}, max err {err.max():.3g}")
    assert y.dtype == np.float32
    assert np.all(err <= bound)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_nan_and_inf_positions_identical_to_numpy(cl_backend, dtype, nd):
    """NaN, +inf and -inf land on exactly the same outputs as on the NumPy backend, also where
    +inf meets -inf (NaN) and where inf meets a zero weight (NaN)."""
    rng = np.random.default_rng(nd)
    spatial = {1: (40,), 2: (11, 9), 3: (5, 6, 4)}[nd]
    x = rng.uniform(-1, 1, (2, 3, *spatial)).astype(dtype)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, 9, replace=False)
    flat[picks[:3]], flat[picks[3:6]], flat[picks[6:]] = np.nan, np.inf, -np.inf
    w = rng.uniform(-1, 1, (4, 3, *(3,) * nd)).astype(dtype)
    w.reshape(-1)[::7] = 0  # inf * 0 = NaN must happen identically
    for kw in ({"padding": 1}, {"padding": "same", "padding_mode": "reflect", "stride": 2},
               {"padding": "full", "padding_mode": "circular", "dilation": 2}):
        y = CONVS[nd](x, w, **kw, backend=cl_backend)
        ref = CONVS[nd](x, w, **kw, backend="numpy")
        assert np.isnan(ref).any() and np.isfinite(ref).any()
        for mask in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(mask(y), mask(ref))
