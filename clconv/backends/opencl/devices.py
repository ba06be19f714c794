"""OpenCL platform and device discovery, and parsing of ``opencl[:option]`` names.

Importing this module does not import pyopencl; the functions do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from ...errors import BackendUnavailable

_TYPE_NAMES = {"cpu": "cpu", "gpu": "gpu", "accelerator": "accelerator"}


@dataclass(frozen=True)
class DeviceInfo:
    """One OpenCL device and the backend name that selects it."""

    backend: str
    platform: str
    name: str
    type: str
    compute_units: int
    global_mem: int
    max_alloc: int
    fp64: bool
    fp16: bool
    opencl_c_version: str = ""
    driver_version: str = ""
    max_work_group_size: int = 0
    local_mem: int = 0


POCL_THREAD_COUNT_VARS = ("POCL_CPU_MAX_CU_COUNT", "POCL_MAX_PTHREAD_COUNT")


def pin_pocl_workers(environ: MutableMapping[str, str] | None = None,
                     allowed: set[int] | None = None, cpus: int | None = None) -> bool:
    """Set ``POCL_AFFINITY=1`` (PoCL's CPU driver pins worker thread i to CPU i) when safe.

    Measured on a 2-core Linux VM: without it the kernel scheduler often
    keeps both PoCL workers on one CPU for a whole process, and every kernel
    takes twice as long (1x256x28x28 -> 128 1x1: 0.55 ms in such processes,
    0.28 ms pinned, 5 of 5 processes each way). PoCL pins to absolute CPU
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


def _import_pyopencl():
    try:
        import pyopencl as cl
    except Exception as exc:  # ImportError, or a broken ICD loader
        raise BackendUnavailable(f"OpenCL is not usable: pyopencl cannot be imported ({exc})"
                                 ) from exc
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
    """``(platform_index, device_index, platform, device)`` for every device found."""
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


def describe(p: int, d: int, platform: Any, device: Any) -> DeviceInfo:
    exts = device.extensions.split()
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
        opencl_c_version=device.opencl_c_version.strip(),
        driver_version=device.driver_version.strip(),
        max_work_group_size=int(device.max_work_group_size),
        local_mem=int(device.local_mem_size),
    )


def list_devices() -> list[DeviceInfo]:
    """Every OpenCL device, ``[]`` when there is no OpenCL at all."""
    try:
        return [describe(*entry) for entry in enumerate_devices()]
    except BackendUnavailable:
        return []


def select_device(option: str | None) -> tuple[int, int, Any, Any]:
    """The device an ``opencl[:option]`` name asks for.

    ``None``: the first GPU, else the first device; ``"gpu"``, ``"cpu"``,
    ``"accelerator"``: the first device of that type; ``"P:D"``: platform P,
    device D. Raises ``BackendUnavailable`` with the reason.
    """
    found = enumerate_devices()
    if option is None:
        gpus = [e for e in found if device_type(e[3]) == "gpu"]
        return (gpus or found)[0]
    key = option.lower()
    if key in _TYPE_NAMES:
        matching = [e for e in found if device_type(e[3]) == key]
        if not matching:
            names = ", ".join(f"{e[3].name.strip()} ({device_type(e[3])})" for e in found)
            raise BackendUnavailable(f"backend 'opencl:{option}': no {key} device; found {names}")
        return matching[0]
    parts = option.split(":")
    if len(parts) == 2 and all(part.isdigit() for part in parts):
        p, d = int(parts[0]), int(parts[1])
        for entry in found:
            if entry[0] == p and entry[1] == d:
                return entry
        raise BackendUnavailable(
            f"backend 'opencl:{option}': no device {d} on platform {p}; available: "
            + ", ".join(f"opencl:{e[0]}:{e[1]}" for e in found))
    raise BackendUnavailable(
        f"backend 'opencl:{option}': expected 'opencl', 'opencl:gpu', 'opencl:cpu' or "
        "'opencl:P:D' (platform and device index)")
