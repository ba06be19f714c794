"""OpenCL platform and device discovery, device health, and ``opencl[:option]`` names.

A device *works* when the probe kernel (``kernels_cl/probe.cl``) builds and
runs on it and gives the right numbers; each device is probed once per
process, before it is first listed or used, and the probe's context is the
one clconv then uses for it. Importing this module does not import pyopencl;
the functions do.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import BackendUnavailable, KernelBuildError
from .._base import DeviceInfo
from .build import build, build_options
from .runtimes import register_pip_runtimes

log = logging.getLogger("clconv")


POCL_THREAD_COUNT_VARS = ("POCL_CPU_MAX_CU_COUNT", "POCL_MAX_PTHREAD_COUNT")


def pin_pocl_workers(environ: MutableMapping[str, str] | None = None,
                     allowed: set[int] | None = None, cpus: int | None = None) -> bool:
    """Set ``POCL_AFFINITY=1`` (PoCL's CPU driver pins worker thread i to CPU i) when safe.

    Without it the kernel scheduler of a small Linux VM often keeps both PoCL
    workers on one CPU for a whole process, and every kernel takes twice as
    long (benchmarks/README.md). PoCL pins to absolute CPU
    numbers and aborts when that fails, so this only happens on Linux when the
    process may run on every CPU, PoCL will start one worker per CPU (no
    thread-count variable asks otherwise) and the user has not set
    ``POCL_AFFINITY`` themselves. It must run before PoCL starts (the first
    platform query); later it changes nothing. Returns True when it set it
    (:func:`enumerate_devices` removes it again once PoCL's workers have
    started, in the first device query, so that child processes, which may
    be confined to other CPUs, decide for themselves).
    """
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or "POCL_AFFINITY" in environ:
        return False
    if not hasattr(os, "sched_getaffinity"):
        return False
    cpus = os.cpu_count() if cpus is None else cpus
    allowed = os.sched_getaffinity(0) if allowed is None else allowed
    if not cpus or allowed != set(range(cpus)):
        return False
    for var in POCL_THREAD_COUNT_VARS:
        if environ.get(var, "").strip() not in ("", str(cpus)):
            return False
    environ["POCL_AFFINITY"] = "1"
    return True


# ------------------------------------------------------------------ fork safety

# Set in a child forked after this process touched OpenCL: the runtimes' worker
# threads and driver state do not survive fork(), and any OpenCL call there can
# hang forever, so every entry point refuses instead.
_forked_after_init = False
_fork_hook_installed = False


def _mark_forked() -> None:
    global _forked_after_init
    _forked_after_init = True


def check_not_forked() -> None:
    """Raise ``BackendUnavailable`` in a process forked after OpenCL was initialised."""
    if _forked_after_init:
        raise BackendUnavailable(
            "OpenCL cannot be used in this process: it was forked from a process that had "
            "already initialised OpenCL, and OpenCL runtimes do not survive fork(); start "
            "workers with multiprocessing's 'spawn' or 'forkserver' start method "
            "(multiprocessing.get_context('spawn')), or use backend='numpy' in the child")


def _import_pyopencl():
    global _fork_hook_installed
    check_not_forked()
    register_pip_runtimes()  # before the loader's first platform query
    try:
        import pyopencl as cl
    except Exception as exc:  # ImportError, or a broken ICD loader
        raise BackendUnavailable(f"OpenCL is not usable: pyopencl cannot be imported ({exc})"
                                 ) from exc
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_mark_forked)
        _fork_hook_installed = True
    return cl


def device_type(device: Any) -> str:
    cl = _import_pyopencl()
    t = device.type
    if t & cl.device_type.GPU:
        return "gpu"
    if t & cl.device_type.ACCELERATOR:
        return "accelerator"
    return "cpu"


def enumerate_devices() -> list[tuple[int, int, Any, Any]]:
    """``(platform_index, device_index, platform, device)`` for every device found.

    A platform that lists no device (or fails to) is left out; no platform or
    no device at all raises ``BackendUnavailable``.
    """
    cl = _import_pyopencl()
    pinned = pin_pocl_workers()
    try:
        try:
            platforms = cl.get_platforms()
        except Exception as exc:  # pyopencl raises LogicError when there is no platform
            raise BackendUnavailable(f"no OpenCL platform found ({exc})") from exc
        found = []
        for p, platform in enumerate(platforms):
            try:
                devs = platform.get_devices()  # PoCL starts its workers here
            except Exception:
                continue
            for d, device in enumerate(devs):
                found.append((p, d, platform, device))
    finally:
        if pinned:  # the workers have read it; child processes decide for themselves
            os.environ.pop("POCL_AFFINITY", None)
    if not found:
        raise BackendUnavailable("no OpenCL device found on any platform")
    return found


# ------------------------------------------------------------------ health

PROBE_ITEMS = 64
PROBE_GROUP = 16
# A probe still running after this long marks its device as not working
# (the wait polls, so a hung driver never hangs the caller).
PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Probe:
    """The health probe's verdict on one device, and the context it ran in."""

    works: bool
    problem: str | None
    log: str = ""
    context: Any = None


_probes: dict[int, Probe] = {}
_probe_lock = threading.Lock()


def probe_expected(a: np.ndarray, group: int) -> np.ndarray:
    """What ``probe.cl`` must write for input ``a`` and work-group size ``group``."""
    i = np.arange(a.size)
    reversed_in_group = (i // group) * group + (group - 1 - i % group)
    first = (i // 8) * 8
    return (a[reversed_in_group] * 2 + (a[first] + a[first + 7]) + i).astype(np.float32)


def run_probe(context: Any, device: Any, filename: str = "probe.cl",
              timeout_s: float = PROBE_TIMEOUT_S) -> Probe:
    """Build ``filename``'s ``probe`` kernel on ``device``, run it and check its numbers."""
    import pyopencl as cl

    try:
        program = build(context, device, filename, build_options(device, {}))
    except KernelBuildError as exc:
        first = next((line.strip() for line in exc.log.splitlines() if line.strip()), str(exc))
        return Probe(False, f"the probe kernel does not build: {first}", exc.log)
    group = max(1, min(PROBE_GROUP, int(device.max_work_group_size)))
    a = (np.arange(PROBE_ITEMS, dtype=np.float32) * 0.75 + 0.5)
    out = np.full(PROBE_ITEMS, np.nan, dtype=np.float32)
    mf = cl.mem_flags
    queue = cl.CommandQueue(context, device)
    a_buf = cl.Buffer(context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=a)
    b_buf = cl.Buffer(context, mf.WRITE_ONLY, out.nbytes)
    kernel = cl.Kernel(program, "probe")
    kernel.set_args(a_buf, b_buf, cl.LocalMemory(4 * group))
    event = cl.enqueue_nd_range_kernel(queue, kernel, (PROBE_ITEMS,), (group,))
    queue.flush()
    deadline = time.monotonic() + timeout_s
    while event.command_execution_status != cl.command_execution_status.COMPLETE:
        if event.command_execution_status < 0:
            return Probe(False, f"the probe kernel failed to run (status "
                                f"{event.command_execution_status})")
        if time.monotonic() > deadline:
            return Probe(False, f"the probe kernel did not finish within {timeout_s:g} s")
        time.sleep(0.0005)
    cl.enqueue_copy(queue, out, b_buf, is_blocking=True)
    expected = probe_expected(a, group)
    if not np.array_equal(out, expected):
        bad = int(np.flatnonzero(out != expected)[0])
        return Probe(False, f"the probe kernel returned wrong numbers (element {bad}: "
                            f"{out[bad]!r}, expected {expected[bad]!r})")
    return Probe(True, None, context=context)


def probe(device: Any) -> Probe:
    """The (once per process) health probe of ``device``; never raises."""
    key = int(device.int_ptr)
    with _probe_lock:
        hit = _probes.get(key)
        if hit is not None:
            return hit
        cl = _import_pyopencl()
        try:
            context = cl.Context([device])
        except Exception as exc:
            result = Probe(False, f"no OpenCL context can be created on it: {exc}")
        else:
            try:
                result = run_probe(context, device)
            except Exception as exc:  # a driver error mid-probe: this device does not work
                result = Probe(False, f"the probe kernel failed: {_one_line(exc)}")
        if not result.works:
            log.info("clconv: OpenCL device %r does not work: %s", device.name.strip(),
                     result.problem)
        _probes[key] = result
        return result


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def describe(p: int, d: int, platform: Any, device: Any) -> DeviceInfo:
    """The :class:`DeviceInfo` of one enumerated device, its health probed."""
    exts = device.extensions.split()
    verdict = probe(device)
    return DeviceInfo(
        backend=f"opencl:{p}:{d}",
        platform=platform.name.strip(),
        name=device.name.strip(),
        type=device_type(device),
        compute_units=int(device.max_compute_units),
        global_mem=int(device.global_mem_size),
        max_alloc=int(device.max_mem_alloc_size),
        fp64="cl_khr_fp64" in exts,
        fp16="cl_khr_fp16" in exts,
        driver_version=device.driver_version.strip(),
        works=verdict.works,
        problem=verdict.problem,
        opencl_c_version=device.opencl_c_version.strip(),
        max_work_group_size=int(device.max_work_group_size),
        local_mem=int(device.local_mem_size),
        native_float_width=int(device.native_vector_width_float or 1),
    )


def list_devices() -> list[DeviceInfo]:
    """Every OpenCL device, working or not; ``[]`` when there is no OpenCL at all."""
    try:
        return [describe(*entry) for entry in enumerate_devices()]
    except BackendUnavailable:
        return []


# ------------------------------------------------------------------ selection

@dataclass(frozen=True)
class Found:
    """One enumerated device with its description (health included)."""

    p: int
    d: int
    platform: Any
    device: Any
    info: DeviceInfo

    @property
    def context(self) -> Any:
        """The context the probe ran in (only for a working device)."""
        return probe(self.device).context

    def searchable(self) -> str:
        parts = (self.platform.name, self.platform.vendor, self.device.name, self.device.vendor)
        return " ".join(str(part).strip() for part in parts).lower()


TYPE_ORDER = {"gpu": 0, "cpu": 1, "accelerator": 2}
# Among working CPU devices, PoCL first: clconv's CPU kernels are written in
# the explicit-vector style PoCL's compiler vectorises, and run at least as
# fast there as on Intel's CPU runtime on the same machine (benchmarks/README.md).
CPU_PLATFORM_ORDER = ("portable computing language",)

NAME_FORMS = ("'opencl' (the preferred working device), 'opencl:gpu', 'opencl:cpu', "
              "'opencl:accelerator', 'opencl:P:D' (platform and device index), "
              "'opencl:TEXT' (the first working device whose platform, vendor or device "
              "name contains TEXT, e.g. 'opencl:intel', 'opencl:pocl')")


def preference(found: Found) -> tuple[int, int, int, int]:
    """Sort key of the default choice: GPUs first (platform order), then the preferred
    CPU runtimes, then accelerators."""
    platform = found.info.platform.lower()
    rank = next((i for i, name in enumerate(CPU_PLATFORM_ORDER) if name in platform),
                len(CPU_PLATFORM_ORDER))
    return (TYPE_ORDER.get(found.info.type, 3), rank if found.info.type == "cpu" else 0,
            found.p, found.d)


def _summary(entries: list[Found]) -> str:
    return "; ".join(
        f"{e.info.backend} {e.info.name!r} on {e.info.platform!r} ({e.info.type}): "
        + ("works" if e.info.works else f"does not work: {e.info.problem}") for e in entries)


def select_device(option: str | None) -> Found:
    """The device an ``opencl[:option]`` name asks for (see :data:`NAME_FORMS`).

    Only working devices are picked; raises ``BackendUnavailable`` with the
    reason (and, for a named device that does not work, its probe's log).
    """
    found = [Found(p, d, platform, device, describe(p, d, platform, device))
             for p, d, platform, device in enumerate_devices()]
    name = "opencl" if option is None else f"opencl:{option}"
    key = None if option is None else option.strip().lower()
    if key is None or key in TYPE_ORDER:
        matching = [e for e in found if key is None or e.info.type == key]
        working = sorted((e for e in matching if e.info.works), key=preference)
        if working:
            return working[0]
        what = "OpenCL device" if key is None else f"{key} device"
        raise BackendUnavailable(f"backend {name!r}: no working {what}; found: "
                                 f"{_summary(found)}")
    parts = key.split(":")
    if all(part.isdigit() for part in parts):
        if len(parts) == 2:
            p, d = int(parts[0]), int(parts[1])
            for entry in found:
                if (entry.p, entry.d) == (p, d):
                    if not entry.info.works:
                        log_text = probe(entry.device).log.strip()
                        raise BackendUnavailable(
                            f"backend {name!r}: device {entry.info.name!r} on "
                            f"{entry.info.platform!r} does not work: {entry.info.problem}"
                            + (f"\nbuild log:\n{log_text}" if log_text else ""))
                    return entry
            raise BackendUnavailable(
                f"backend {name!r}: no device {d} on platform {p}; found: {_summary(found)}")
        raise BackendUnavailable(f"backend {name!r}: expected one of {NAME_FORMS}")
    matching = [e for e in found if key in e.searchable()]
    working = [e for e in matching if e.info.works]
    if working:
        return working[0]
    if matching:
        raise BackendUnavailable(f"backend {name!r}: no device matching {option!r} works: "
                                 f"{_summary(matching)}")
    raise BackendUnavailable(
        f"backend {name!r}: no OpenCL device's platform, vendor or name contains "
        f"{option!r}; found: {_summary(found)}; expected one of {NAME_FORMS}")
