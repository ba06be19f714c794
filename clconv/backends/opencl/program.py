"""Finding ``kernels_cl/``, building OpenCL programs once, and caching them.

Programs are built once per (context, device, source hash, options) and kept in
a bounded LRU cache (:data:`CACHE_SIZE` entries) shared by the process. The
counter :func:`build_count` counts real builds, so tests can prove that a
second call reuses the built program. A failed build raises
:class:`clconv.KernelBuildError` with the device, the options and the full
build log; failures are not cached, so a later good build still works.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from ...errors import KernelBuildError

# Built programs kept per process; each distinct dtype/border/blocking mix
# is one entry, so a few dozen cover any realistic workload.
CACHE_SIZE = 64

_REPO_KERNELS = Path(__file__).resolve().parents[3] / "kernels_cl"


@lru_cache(maxsize=1)
def kernels_dir() -> Path:
    """The folder with the ``.cl`` sources: the installed copy, else the repository's."""
    try:
        installed = importlib.resources.files("clconv") / "kernels_cl"
        if installed.is_dir():
            return Path(str(installed))
    except (ModuleNotFoundError, TypeError, NotADirectoryError):
        pass
    if _REPO_KERNELS.is_dir():
        return _REPO_KERNELS
    raise FileNotFoundError(
        f"clconv's OpenCL sources were not found: neither clconv/kernels_cl in the installed "
        f"package nor {_REPO_KERNELS}")


@cache
def load_source(filename: str) -> tuple[str, str]:
    """``(source text, digest)`` of a kernel file; the digest covers the headers it includes."""
    folder = kernels_dir()
    text = (folder / filename).read_text()
    digest = hashlib.sha256(text.encode())
    for header in sorted(set(re.findall(r'#include\s+"([^"]+)"', text))):
        digest.update(header.encode())
        digest.update((folder / header).read_bytes())
    return text, digest.hexdigest()


def opencl_c_std(device: Any) -> str:
    """``-cl-std=CL1.2``, or the device's own OpenCL C version when it is lower."""
    match = re.search(r"OpenCL C (\d+)\.(\d+)", getattr(device, "opencl_c_version", "") or "")
    if match and (int(match.group(1)), int(match.group(2))) < (1, 2):
        return f"-cl-std=CL{match.group(1)}.{match.group(2)}"
    return "-cl-std=CL1.2"


def build_options(device: Any, defines: Mapping[str, Any], extra: tuple[str, ...] = (),
                  ) -> tuple[str, ...]:
    """The full option list: standard, ``-cl-mad-enable``, include path, ``-D`` macros."""
    opts = [opencl_c_std(device), "-cl-mad-enable", "-I", str(kernels_dir())]
    opts += [f"-D{key}={value}" for key, value in sorted(defines.items())]
    opts += list(extra)
    return tuple(opts)


class BuiltProgram:
    """A built program plus one reusable kernel object (and its lock) per kernel name.

    ``clSetKernelArg`` is not thread-safe on one kernel object, so a caller
    holds the kernel's lock from setting arguments to enqueueing.
    """

    def __init__(self, program: Any, options: tuple[str, ...]) -> None:
        self.program = program
        self.options = options
        self._kernels: dict[str, tuple[Any, threading.Lock]] = {}
        self._lock = threading.Lock()

    def max_work_group(self, name: str, device: Any) -> int:
        """The largest work-group this build of kernel ``name`` can run on ``device``."""
        import pyopencl as cl

        kernel, lock = self.kernel(name)
        with lock:
            return int(kernel.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE,
                                                  device))

    def kernel(self, name: str) -> tuple[Any, threading.Lock]:
        """``(pyopencl.Kernel, lock)`` for kernel ``name``."""
        with self._lock:
            entry = self._kernels.get(name)
            if entry is None:
                import pyopencl as cl

                entry = (cl.Kernel(self.program, name), threading.Lock())
                self._kernels[name] = entry
            return entry


_cache: OrderedDict[tuple, BuiltProgram] = OrderedDict()
_cache_lock = threading.Lock()
# Builds are rare; one at a time keeps pyopencl's warning filter change safe.
_build_lock = threading.Lock()
_builds = 0
# (context, device, file, sorted defines, extra options) -> the cache key above.
_keys: dict[tuple, tuple] = {}


def build_count() -> int:
    """How many programs this process has really built (cache hits do not count)."""
    return _builds


def cache_info() -> dict[str, int]:
    """Current size and bound of the program cache, and the build count."""
    with _cache_lock:
        return {"size": len(_cache), "max_size": CACHE_SIZE, "builds": _builds}


def clear_cache() -> None:
    """Forget every built program (they are rebuilt on next use)."""
    with _cache_lock:
        _cache.clear()


def get_program(context: Any, device: Any, filename: str,
                defines: Mapping[str, Any] | tuple[tuple[str, Any], ...],
                extra_options: tuple[str, ...] = ()) -> BuiltProgram:
    """The program ``filename`` built for ``device`` with ``defines`` (cached).

    ``defines`` is a mapping or the tuple of its items sorted by name (what
    launch plans keep: no sorting per call).
    """
    global _builds
    # Per-call lookups skip re-formatting the options (~35 us: the regex on
    # the device's OpenCL C version and the -D strings) via a memo of the key.
    items = defines if isinstance(defines, tuple) else tuple(sorted(defines.items()))
    short = (context.int_ptr, device.int_ptr, filename, items, extra_options)
    key = _keys.get(short)
    if key is None:
        source, digest = load_source(filename)
        options = build_options(device, dict(items), extra_options)
        key = (context.int_ptr, device.int_ptr, digest, options)
        if len(_keys) > 16 * CACHE_SIZE:
            _keys.clear()
        _keys[short] = key
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    source, digest = load_source(filename)
    options = key[3]
    with _build_lock:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
        built = BuiltProgram(_build(context, device, source, options, filename), options)
        with _cache_lock:
            _builds += 1
            _cache[key] = built
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        return built


def build_uncached(context: Any, device: Any, filename: str,
                   defines: Mapping[str, Any] | None = None) -> Any:
    """``filename`` built for ``device`` outside the cache (the health probe: one
    build per device and process, which must not count as a cached program)."""
    source, _ = load_source(filename)
    return _build(context, device, source, build_options(device, defines or {}), filename)


def _build(context: Any, device: Any, source: str, options: tuple[str, ...], filename: str,
           ) -> Any:
    import pyopencl as cl

    # pyopencl's binary cache reads this variable unguarded when a build fails with
    # an error other than BUILD_PROGRAM_FAILURE (Intel's runtime rejecting an option):
    # unset, that is a KeyError instead of the driver's error. Empty is its default.
    os.environ.setdefault("PYOPENCL_CACHE_FAILURE_FATAL", "")
    program = cl.Program(context, source)
    try:
        with warnings.catch_warnings():
            # pyopencl warns with the (empty or informational) log of good builds,
            # and once more when its cache falls back to a plain build.
            warnings.simplefilter("ignore", cl.CompilerWarning)
            warnings.filterwarnings("ignore", "PyOpenCL compiler caching failed")
            built = program.build(options=list(options), devices=[device])
    except cl.Error as exc:
        log = _build_log(program, device) or str(exc)
        raise KernelBuildError(f"building kernels_cl/{filename} failed",
                               device=device.name.strip(), options=options, log=log) from None
    if not built.get_info(cl.program_info.KERNEL_NAMES):
        # Seen with PoCL 3.0 reloading a binary from its kernel cache that it
        # cannot use: the build "succeeds" with no kernels in the program.
        raise KernelBuildError(
            f"building kernels_cl/{filename} gave a program without kernels (a stale or "
            "broken driver kernel cache? for PoCL, empty the folder POCL_CACHE_DIR or "
            "~/.cache/pocl)", device=device.name.strip(), options=options,
            log=_build_log(built, device))
    return built


def _build_log(program: Any, device: Any) -> str:
    import pyopencl as cl

    try:
        with warnings.catch_warnings():  # "pre-build attribute access": the build is over
            warnings.simplefilter("ignore", UserWarning)
            return program._get_prg().get_build_info(device, cl.program_build_info.LOG).strip()
    except Exception:  # the log is best effort; the exception text is the fallback
        return ""
