"""Per-device default parameters and the autotuner's on-disk cache.

Per-device defaults (:data:`DEVICE_DEFAULTS`) adjust a path's built-in
configuration on a device, looked up as CLBlast's database does: the device
name, then its vendor, then its type, then nothing (the built-in
configuration). Their keys are the paths' configuration fields.

One JSON file (``CLCONV_TUNE_CACHE``, else ``<user cache dir>/clconv/tune.json``)
holds the winners of :func:`clconv.tune` per *device key* (device name, driver
version, clconv version) and *problem class* (:func:`problem_class`)::

    {"format": 1,
     "devices": {"<device>|<driver>|<clconv version>": {
         "<problem class>": {"path": "rows", "params": {"rows": 4, "nv": 2}, "ms": 0.31,
                             ...}}}}

Each device context reads its own device's entries once (again when the
variable names another file, or after :func:`store` / :func:`forget`), and
:func:`tuned_choice` looks them up when a call's path is chosen. A file that
cannot be read, is not a regular file (a FIFO, a device), is larger than
:data:`MAX_BYTES`, is not UTF-8 JSON, has another format, or holds entries
that make no sense is ignored with one :class:`RuntimeWarning`: the heuristic
decides. Writers take a lock file and merge, so concurrent ``clconv tune``
runs keep each other's entries. Entries of other devices, drivers or clconv
versions simply never match.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from ..._spec import ConvSpec
from ...errors import ArgumentError
from .context import live_contexts
from .paths import check_params

ENV = "CLCONV_TUNE_CACHE"
FORMAT = 1
# A cache of every problem class of a few devices is tens of KiB.
MAX_BYTES = 4 * 2**20

# Rules are {(level, text): value}; level is "device" (the device name
# contains text), "vendor" (the device vendor contains it), "platform" (the
# platform name contains it) or "type" ("cpu", "gpu", "accelerator"). The
# first level, in that order, with a matching rule wins.
_LEVELS = ("device", "vendor", "platform", "type")

# Per-device default parameters: {path: rules of parameter dicts}.
DEVICE_DEFAULTS: dict[str, dict[tuple[str, str], dict[str, int]]] = {}

# The kernel style a device's compiler vectorises: "vector" (explicit vectors
# per work-item: PoCL) or "lanes" (one output per work-item, vectorised
# across work-items: GPUs). The heuristic picks only paths of the device's
# style (or of none), except where a path of the other style says it leads
# (``preferred_across_styles``: the lanes path on Intel's CPU runtime, whose
# compiler vectorises both styles); benchmarks/README.md has the measurements
# behind these rules.
STYLE_DEFAULTS: dict[tuple[str, str], str] = {
    ("type", "gpu"): "lanes",
    ("type", "accelerator"): "lanes",
}
DEFAULT_STYLE = "vector"


def _lookup(rules: dict[tuple[str, str], Any], info: Any, vendor: str) -> Any:
    """The value of the first matching rule, by level (None when none matches)."""
    seen = {"device": info.name.lower(), "vendor": vendor.lower(),
            "platform": info.platform.lower(), "type": info.type}
    for level in _LEVELS:
        for (rule_level, text), value in rules.items():
            if rule_level == level and (text == seen[level] if level == "type"
                                        else text.lower() in seen[level]):
                return value
    return None


def device_defaults(path: str, info: Any, vendor: str = "",
                    table: dict[str, dict[tuple[str, str], dict[str, int]]] | None = None,
                    ) -> dict[str, int]:
    """The default parameters of ``path`` on the device ``info`` describes."""
    found = _lookup((DEVICE_DEFAULTS if table is None else table).get(path, {}), info, vendor)
    return dict(found or {})


def device_style(info: Any, vendor: str = "",
                 table: dict[tuple[str, str], str] | None = None) -> str:
    """The kernel style the heuristic picks on the device ``info`` describes."""
    return _lookup(STYLE_DEFAULTS if table is None else table, info, vendor) or DEFAULT_STYLE


# One writer at a time in this process (the lock file orders processes).
_lock = threading.Lock()


def clconv_version() -> str:
    from ... import __version__

    return __version__


def cache_file() -> Path:
    """``CLCONV_TUNE_CACHE``, else the user cache directory's ``clconv/tune.json``."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "clconv" / "tune.json"


def device_key(dctx: Any) -> str:
    """``device name|driver version|clconv version``."""
    return f"{dctx.tune_key}|{clconv_version()}"


def _bucket(n: int) -> int:
    """``ceil(log2(n))``: sizes within a factor of two share a bucket."""
    return 0 if n <= 1 else math.ceil(math.log2(n))


def problem_class(spec: ConvSpec) -> str:
    """The features that decide the best path and tiles, as a stable string.

    Exact: rank, grouping kind, kernel size, stride, dilation, dtype, layout,
    border mode, whether anything is padded. Bucketed (powers of two): input
    and output channels per group, batch x groups, output pixels, W extent.
    """
    if spec.out_per_group == 1:
        kind = "depthwise" if spec.in_per_group == 1 and spec.groups > 1 else "single"
    else:
        kind = "dense" if spec.groups == 1 else "grouped"
    padded = any(spec.pad_before) or any(spec.pad_after)

    def join(values: tuple[int, ...]) -> str:
        return "x".join(map(str, values))

    return (f"{spec.ndim}d/{kind}/k{join(spec.kernel_size)}/s{join(spec.stride)}"
            f"/d{join(spec.dilation)}/{spec.dtype}/{'cl' if spec.channels_last else 'cf'}"
            f"/{spec.border if padded else 'nopad'}/cg{_bucket(spec.in_per_group)}"
            f"/fg{_bucket(spec.out_per_group)}/ng{_bucket(spec.batch * spec.groups)}"
            f"/px{_bucket(math.prod(spec.out_size))}/w{_bucket(spec.out_size[-1])}")


def _valid_entry(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return False
    params = entry.get("params", {})
    if not isinstance(params, dict):
        return False
    try:
        check_params(entry["path"], params)
    except ArgumentError:
        return False
    return True


def _read_text(path: Path) -> str | None:
    """The text of a regular cache file of at most :data:`MAX_BYTES`; None when there is no
    file; ValueError saying why when it is anything else (a FIFO or device is never read:
    opened non-blocking and checked before reading)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"it is unreadable ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError("it is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > MAX_BYTES:
            raise ValueError(f"it is larger than {MAX_BYTES} bytes")
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"it is larger than {MAX_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``devices`` table of a cache file; ``{}`` (with a warning) when unusable."""
    try:
        raw = _read_text(path)
        if raw is None:
            return {}
        data = json.loads(raw)
    except RecursionError:
        data = None  # nested deeper than any cache file: the format check below says so
    except ValueError as exc:  # also json.JSONDecodeError
        warnings.warn(f"clconv: tune cache {path} is ignored: {exc}", RuntimeWarning,
                      stacklevel=3)
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(
            data.get("devices"), dict):
        warnings.warn(f"clconv: tune cache {path} has an unknown format (expected "
                      f"format {FORMAT}) and is ignored; re-run clconv tune",
                      RuntimeWarning, stacklevel=3)
        return {}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    dropped = 0
    for dev, classes in data["devices"].items():
        if not isinstance(classes, dict):
            dropped += 1
            continue
        good = {cls: e for cls, e in classes.items() if _valid_entry(e)}
        dropped += len(classes) - len(good)
        table[dev] = good
    if dropped:
        warnings.warn(f"clconv: tune cache {path}: {dropped} malformed entries ignored",
                      RuntimeWarning, stacklevel=3)
    return table


def entries(dctx: Any) -> dict[str, dict[str, Any]]:
    """The cache file's entries for ``dctx``'s device (read once, kept by the context)."""
    name = os.environ.get(ENV, "")
    return dctx.memo(("tune entries", name, dctx.tune_generation),
                     lambda: read(cache_file()).get(device_key(dctx), {}))


def tuned_choice(spec: ConvSpec, dctx: Any) -> tuple[str, dict[str, int]] | None:
    """The cached winner ``(path name, tile parameters)`` for ``spec``, or ``None``."""
    found = entries(dctx)
    if not found:
        return None
    entry = found.get(problem_class(spec))
    if entry is None:
        return None
    return entry["path"], entry.get("params", {})


def store(dctx: Any, spec: ConvSpec, entry: dict[str, Any]) -> Path:
    """Write ``entry`` (``path``, ``params`` and any notes) for ``spec``'s class.

    Re-reads the file first (another process may have added entries), writes
    atomically (temporary file + rename) and updates this process's copy.
    """
    if not _valid_entry(entry):
        raise ValueError(f"not a valid tune cache entry: {entry!r}")
    path = cache_file()
    with _lock, _file_lock(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a corrupt file is replaced
            table = read(path)
        table.setdefault(device_key(dctx), {})[problem_class(spec)] = entry
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "devices": table}, indent=1,
                                  sort_keys=True))
        os.replace(tmp, path)
    dctx.forget_tuned()
    return path


class _file_lock:
    """An exclusive lock between processes on ``<cache>.lock`` (where ``fcntl`` exists),
    so that concurrent writers each merge into the other's file instead of replacing it."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self.fh: Any = None

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a")  # noqa: SIM115 - closed in __exit__
        try:
            import fcntl
        except ImportError:  # Windows: one writer at a time is the user's to ensure
            return
        fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)

    def __exit__(self, *exc: Any) -> None:
        self.fh.close()  # closing releases the lock


def write_problem(path: Path | None = None) -> str | None:
    """Why the cache file cannot be written (None when it can): checked before tuning,
    so that minutes of timing are not lost to an unwritable file."""
    path = cache_file() if path is None else path
    try:
        if path.exists() and not path.is_file():
            return "it exists and is not a regular file"
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def forget() -> None:
    """Make every device context read the cache file again at its next lookup."""
    for dctx in live_contexts():
        dctx.forget_tuned()
