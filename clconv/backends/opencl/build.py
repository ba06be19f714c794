"""Kernel sources, build options and building OpenCL programs.

:class:`ProgramCache` (one per device context, owned by it) keeps built
programs in a bounded LRU; :class:`ProgramRef` names a program without
holding it. A failed build raises :class:`clconv.KernelBuildError` with the
device, the options and the full build log; failures are not cached, so a
later good build still works.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import KernelBuildError

# Built programs kept per device; each distinct dtype/border/blocking mix
# is one entry, so a few dozen cover any realistic workload.
CACHE_SIZE = 64

_REPO_KERNELS = Path(__file__).resolve().parents[3] / "kernels_cl"


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


def load_source(filename: str) -> str:
    """The text of a kernel file (read at build time only: builds are rare)."""
    return (kernels_dir() / filename).read_text()


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


@dataclass(frozen=True)
class ProgramRef:
    """A program by name: its ``.cl`` file and build defines (items sorted by name).

    Plans hold these, never built programs, so that the device's program
    cache stays the only owner of built code (and its bound holds).
    """

    filename: str
    defines: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, filename: str, defines: Mapping[str, Any]) -> ProgramRef:
        return cls(filename, tuple(sorted(defines.items())))


class Kernel:
    """One reusable kernel object, its lock, and the step whose arguments it holds.

    ``clSetKernelArg`` is not thread-safe on one kernel object, so a caller
    holds :attr:`lock` from setting arguments to enqueueing. A step's
    arguments stay set on the kernel object between its launches, so a
    repeated launch whose element offsets are unchanged sets only its buffers
    (40 arguments through ``set_args`` cost 3.5 us, a buffer through
    ``set_arg`` 0.2 us; a scalar through ``set_arg`` 6 us, so scalars always
    go through ``set_args``). The scalar dtypes are declared to pyopencl
    (``set_scalar_arg_dtypes``), which then packs them without guessing.
    """

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.lock = threading.Lock()
        self.arg_types: tuple[type, ...] | None = None
        self.arg_dtypes: tuple[Any, ...] | None = None
        self.step: Any = None  # whose arguments are set (held: its identity stays unique)
        self.offsets: tuple[int, ...] = ()  # the step's offsets as set

    def enqueue(self, queue: Any, step: Any, buffers: tuple[tuple[int, Any], ...],
                offsets: tuple[tuple[int, int], ...]) -> Any:
        """Launch ``step`` on ``queue`` with its slots filled: ``buffers`` as
        ``(index, buffer or None)``, ``offsets`` as ``(index, element offset)``;
        returns the event."""
        import pyopencl as cl

        with self.lock:
            values = tuple(v for _, v in offsets)
            if self.step is step and self.offsets == values:
                for i, buffer in buffers:
                    self.kernel.set_arg(i, buffer)
            else:
                args = list(step.args)
                for i, buffer in buffers:
                    args[i] = buffer
                for i, offset in offsets:
                    args[i] = np.int64(offset)
                # The Python types of the arguments identify their scalar dtypes;
                # comparing them (one C-level map) is cheaper than building the
                # dtype list.
                types = tuple(map(type, args))
                if self.arg_types != types:
                    dtypes = tuple(np.dtype(t) if issubclass(t, np.generic) else None
                                   for t in types)
                    if self.arg_dtypes != dtypes:
                        self.kernel.set_scalar_arg_dtypes(list(dtypes))
                        self.arg_dtypes = dtypes
                    self.arg_types = types
                self.kernel.set_args(*args)
                self.step, self.offsets = step, values
            return cl.enqueue_nd_range_kernel(queue, self.kernel, step.global_size,
                                              step.local_size)


class BuiltProgram:
    """A built program plus one reusable :class:`Kernel` per kernel name."""

    def __init__(self, program: Any, options: tuple[str, ...]) -> None:
        self.program = program
        self.options = options
        self._kernels: dict[str, Kernel] = {}
        self._lock = threading.Lock()

    def max_work_group(self, name: str, device: Any) -> int:
        """The largest work-group this build of kernel ``name`` can run on ``device``."""
        import pyopencl as cl

        handle = self.kernel(name)
        with handle.lock:
            return int(handle.kernel.get_work_group_info(
                cl.kernel_work_group_info.WORK_GROUP_SIZE, device))

    def kernel(self, name: str) -> Kernel:
        """The :class:`Kernel` for kernel ``name``."""
        with self._lock:
            handle = self._kernels.get(name)
            if handle is None:
                import pyopencl as cl

                handle = self._kernels[name] = Kernel(cl.Kernel(self.program, name))
            return handle


class ProgramCache:
    """The built programs of one device context: a bounded LRU of :data:`CACHE_SIZE`.

    Keyed by (file, sorted defines): the options follow from them and the
    device. ``builds`` counts real builds, so that tests can prove a second
    call reuses a program. Failed builds are not cached.
    """

    def __init__(self, context: Any, device: Any, max_size: int = CACHE_SIZE) -> None:
        self.context = context
        self.device = device
        self.max_size = max_size
        self.builds = 0
        # Macros every build on this device gets: INTEL_VEC_LEN_HINT where the
        # device takes per-kernel vectorisation hints (see common.h).
        self.device_defines: dict[str, int] = {}
        if "cl_intel_vec_len_hint" in (getattr(device, "extensions", "") or "").split():
            self.device_defines["INTEL_VEC_LEN_HINT"] = 1
        self._programs: OrderedDict[ProgramRef, BuiltProgram] = OrderedDict()
        self._lock = threading.Lock()
        # Builds are rare; one at a time keeps pyopencl's warning filter change safe.
        self._build_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._programs)

    def get(self, ref: ProgramRef) -> BuiltProgram:
        """The built program of ``ref`` (built now if absent or evicted)."""
        with self._lock:
            hit = self._programs.get(ref)
            if hit is not None:
                self._programs.move_to_end(ref)
                return hit
        with self._build_lock:
            with self._lock:
                hit = self._programs.get(ref)
                if hit is not None:
                    return hit
            options = build_options(self.device, {**self.device_defines, **dict(ref.defines)})
            built = BuiltProgram(build(self.context, self.device, ref.filename, options),
                                 options)
            with self._lock:
                self.builds += 1
                self._programs[ref] = built
                while len(self._programs) > self.max_size:
                    self._programs.popitem(last=False)
            return built

    def clear(self) -> None:
        """Forget every built program (they are rebuilt on next use)."""
        with self._lock:
            self._programs.clear()


def build(context: Any, device: Any, filename: str, options: tuple[str, ...]) -> Any:
    """``kernels_cl/<filename>`` built for ``device`` with ``options`` (no caching: the
    health probe calls it directly, :class:`ProgramCache` for everything else).

    A failed build raises :class:`clconv.KernelBuildError` with the device, the
    options and the full build log.
    """
    import pyopencl as cl

    source = load_source(filename)

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
