"""Making OpenCL runtimes installed with pip visible to the ICD loader.

pyopencl's wheels bundle an ICD loader (ocl-icd) that finds PoCL, which it
ships too, and the drivers registered in ``/etc/OpenCL/vendors``. Intel's CPU
runtime from PyPI (``intel-opencl-rt``) installs ``libintelocl.so`` but an
``.icd`` file that names an unreplaced build placeholder, so no loader finds
it. The loader reads ``OCL_ICD_VENDORS`` (a folder of ``.icd`` files that
replaces ``/etc/OpenCL/vendors``) once, at the process's first platform
query. So before clconv's first query, :func:`register_pip_runtimes` writes a
folder holding an ``.icd`` for the installed Intel library next to a copy of
every system ``.icd`` (GPU drivers stay listed) and points
``OCL_ICD_VENDORS`` at it; child processes inherit the variable and see the
same devices.

It does nothing when the user set ``OCL_ICD_VENDORS`` (theirs is used as it
is), when ``CLCONV_REGISTER_ICD=0``, off Linux, or when no pip runtime is
installed. Nothing here imports pyopencl.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger("clconv")

OPT_OUT_VAR = "CLCONV_REGISTER_ICD"
LOADER_VAR = "OCL_ICD_VENDORS"
SYSTEM_VENDORS = Path("/etc/OpenCL/vendors")
# (distribution on PyPI, the library it installs, the .icd name clconv writes for it)
PIP_RUNTIMES = (("intel-opencl-rt", "libintelocl.so", "clconv-intel-opencl-rt.icd"),)

_lock = threading.Lock()
_done = False


def installed_libraries() -> dict[str, Path]:
    """``{icd file name: library path}`` for each pip runtime that is installed."""
    from importlib.metadata import PackageNotFoundError, distribution

    found = {}
    for dist_name, library, icd_name in PIP_RUNTIMES:
        try:
            dist = distribution(dist_name)
        except PackageNotFoundError:
            continue
        for file in dist.files or ():
            if file.name == library:
                path = Path(str(dist.locate_file(file))).resolve()
                if path.is_file():
                    found[icd_name] = path
                    break
    return found


def vendor_folder_contents(libraries: dict[str, Path],
                           system: Path = SYSTEM_VENDORS) -> dict[str, str]:
    """``{file name: text}`` of the folder to give the loader: the pip runtimes'
    ``.icd`` files and a copy of each system one (unreadable ones are left out)."""
    contents = {name: f"{path}\n" for name, path in libraries.items()}
    try:
        system_files = sorted(system.glob("*.icd"))
    except OSError:
        system_files = []
    for file in system_files:
        try:
            contents.setdefault(file.name, file.read_text())
        except (OSError, UnicodeDecodeError):
            log.debug("clconv: cannot read %s; it is left out of the ICD folder", file)
    return contents


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clconv" / "icd"


def write_vendor_folder(contents: dict[str, str], root: Path | None = None) -> Path:
    """A folder holding ``contents``, named by their digest so that processes share it.

    Written under a temporary name and renamed, so a concurrent process sees
    a whole folder or none; an unwritable cache folder falls back to a fresh
    temporary one.
    """
    digest = hashlib.sha256(repr(sorted(contents.items())).encode()).hexdigest()[:16]
    root = _cache_root() if root is None else root
    target = root / digest
    if all((target / name).is_file() for name in contents):
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
    except OSError:
        staging = Path(tempfile.mkdtemp(prefix="clconv-icd-"))
        target = staging
    for name, text in contents.items():
        (staging / name).write_text(text)
    if staging != target:
        try:
            staging.rename(target)
        except OSError:  # another process renamed its copy first, or the rename is refused
            if not all((target / name).is_file() for name in contents):
                return staging
            for name in contents:
                (staging / name).unlink()
            staging.rmdir()
    return target


def register_pip_runtimes(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Point the ICD loader at pip-installed runtimes (see the module docstring).

    Must run before the process's first OpenCL platform query; later calls do
    nothing. Returns the folder it set, or None when it left the loader alone.
    Never raises: a failure is logged and the loader keeps its defaults.
    """
    global _done
    environ = os.environ if environ is None else environ
    with _lock:
        if _done and environ is os.environ:
            return None
        if environ is os.environ:
            _done = True
        if (LOADER_VAR in environ or environ.get(OPT_OUT_VAR, "").strip() == "0"
                or not sys.platform.startswith("linux")):
            return None
        try:
            libraries = installed_libraries()
            if not libraries:
                return None
            folder = str(write_vendor_folder(vendor_folder_contents(libraries)))
        except Exception as exc:  # the loader's defaults still work without it
            log.warning("clconv: could not register pip-installed OpenCL runtimes: %r", exc)
            return None
        environ[LOADER_VAR] = folder
        log.debug("clconv: %s=%s", LOADER_VAR, folder)
        return folder
