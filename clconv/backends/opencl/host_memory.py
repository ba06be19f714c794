"""glibc's malloc told to keep freed blocks for the next call (Linux).

A host call allocates its result and its temporaries afresh. Where glibc hands
a freed block back to the kernel (a block above its mmap threshold, or the top
of the heap trimmed), the next call's block is fresh pages, and the device
kernels that write a result in place take a page fault per 4 KiB: on a small
VM that doubles the time of a 0.3 ms layer (benchmarks/README.md, "Page
faults"). glibc raises both thresholds by itself as large blocks are freed, up
to 32 MiB (mmap) and twice that (trim), but whether a process gets there
depends on the order of its allocations, so one process runs a layer at full
speed and the next at half. :func:`keep_freed_memory` sets those upper values
from the start: at most 64 MiB of freed memory stays with the process.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
from collections.abc import Mapping
from typing import Any

ENV = "CLCONV_MALLOC"  # "0": leave glibc's malloc as it is
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
# The user's own malloc settings, which win.
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "MALLOC_MMAP_MAX_")

_lock = threading.Lock()
_done = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds, once per process (see
    :func:`set_thresholds`); True when this call did."""
    global _done
    with _lock:
        if _done:
            return False
        _done = True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    # glibc reads its variables when the process starts: what a library put in
    # os.environ since (dask sets MALLOC_TRIM_THRESHOLD_ for its workers) is
    # not the process's setting.
    environ = {**_startup_environ(), ENV: os.environ.get(ENV, "")}
    return set_thresholds(environ, ctypes.CDLL(None))


def _startup_environ() -> dict[str, str]:
    """The environment this process started with (Linux), else the current one."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return dict(os.environ)
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def set_thresholds(environ: Mapping[str, str], libc: Any) -> bool:
    """Set the thresholds through ``libc.mallopt``, unless ``CLCONV_MALLOC=0`` or the
    user set malloc thresholds themselves (``MALLOC_*_`` variables, or
    ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``); True when both took."""
    if environ.get(ENV, "").strip() == "0" or any(v in environ for v in USER_SETTINGS):
        return False
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return False
    # mmap first: setting either fixes both (glibc stops adapting them).
    took = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and took
