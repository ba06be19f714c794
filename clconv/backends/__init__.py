"""The backend registry: the one place that knows which backends exist.

Built-in backends are registered by module path and imported only when first
used, so ``import clconv`` never imports pyopencl. Third-party backends come
from the ``clconv.backends`` entry-point group: each entry point loads to a
factory ``factory(option) -> Backend``; a plug-in that fails to load is
warned about and left out.

Default backend resolution, first match wins: the ``backend=`` argument,
the innermost :func:`use_backend` scope, :func:`set_backend`, the
``CLCONV_BACKEND`` environment variable (read at every resolution), and last
the implicit default: ``"opencl"`` when a device works, else ``"numpy"``.
Only the implicit default falls back; every named backend that cannot run
raises :class:`~clconv.errors.BackendUnavailable`.

The registry also answers, for the front end, whether an operand is a
device array and whose (:func:`array_owner`, :func:`is_device_array`), and
reads one back (:func:`to_host`), without importing pyopencl and without
creating a backend: built-in backends name a recogniser module (imported
on first use, like their factories), and every created backend's ``owns``
is asked too.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._env import setting
from ..errors import ArgumentError, BackendUnavailable
from ._base import Backend

__all__ = [
    "Backend",
    "available_backends",
    "get_backend",
    "list_backends",
    "register_backend",
    "set_backend",
    "use_backend",
]

log = logging.getLogger("clconv")

ENTRY_POINT_GROUP = "clconv.backends"
ENV_VAR = "CLCONV_BACKEND"

# name -> "module:attribute" of the factory (imported lazily) or a callable.
_BUILTINS: dict[str, str] = {
    "numpy": "clconv.backends.numpy_:factory",
    "opencl": "clconv.backends.opencl:factory",
}

# name -> module of a built-in backend's device-array recogniser, with
# ``is_array(obj)`` and ``to_host(obj)``: importable without the backend's driver,
# so arrays a user made are recognised before any backend object exists.
_ARRAY_MODULES: dict[str, str] = {
    "opencl": "clconv.backends.opencl.arrays",
}
# Operand types that are never device arrays: the common cases skip every recogniser.
_HOST_TYPES = frozenset({np.ndarray, type(None), bool, int, float, complex, list, tuple})

_lock = threading.RLock()
_factories: dict[str, str | Callable[[str | None], Any]] = dict(_BUILTINS)
_entry_points_loaded = False
_recognisers: list[tuple[str, Callable[[Any], bool], Callable[[Any], Any]]] | None = None
_instances: dict[str, Any] = {}
_process_default: str | None = None
# True once the implicit default found OpenCL unusable: probing (and logging)
# again on every call would cost each convolution a platform query.
# Registering a backend named "opencl" clears it.
_implicit_fallback = False
_scoped: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "clconv_backend", default=None)


def _load_entry_points() -> None:
    """Register plug-ins from the entry-point group once; warn about broken ones."""
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _factories:
                continue
            try:
                factory = ep.load()
                if not callable(factory):
                    raise TypeError(f"{ep.value} is not callable")
            except Exception as exc:  # a broken plug-in must not break clconv
                warnings.warn(f"clconv: backend plug-in {ep.name!r} ({ep.value}) failed to load "
                              f"and is left out: {exc!r}", RuntimeWarning, stacklevel=2)
                continue
            _factories[ep.name] = factory


def _split(name: str) -> tuple[str, str | None]:
    base, sep, option = name.partition(":")
    return base, (option if sep else None)


def _factory_for(base: str) -> Callable[[str | None], Any]:
    _load_entry_points()
    with _lock:
        factory = _factories.get(base)
    if factory is None:
        raise BackendUnavailable(
            f"backend {base!r} is unknown; expected one of {sorted(_factories)}")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise BackendUnavailable(f"backend {base!r} cannot be imported: {exc}") from exc
    return factory


def list_backends() -> list[str]:
    """Names of all registered backends (registered is not the same as usable)."""
    _load_entry_points()
    with _lock:
        return list(_factories)


def register_backend(name: str, factory: Callable[[str | None], Any], *,
                     replace: bool = False) -> None:
    """Register ``factory(option) -> Backend`` under ``name``.

    >>> import clconv
    >>> clconv.register_backend("mine", lambda option: clconv.get_backend("numpy"))
    >>> "mine" in clconv.list_backends()
    True
    """
    global _implicit_fallback
    if not isinstance(name, str) or not name or ":" in name:
        raise ArgumentError(f"name={name!r}; expected a non-empty string without ':'")
    if not callable(factory):
        raise ArgumentError(f"factory={factory!r}; expected a callable factory(option)")
    _load_entry_points()
    with _lock:
        if name in _factories and not replace:
            raise ArgumentError(
                f"backend {name!r} is already registered; pass replace=True to replace it")
        _factories[name] = factory
        if name == "opencl":
            _implicit_fallback = False
        for key in [k for k in _instances if _split(k)[0] == name]:
            del _instances[key]


def _create(name: str) -> Any:
    if not isinstance(name, str) or not name:
        raise BackendUnavailable(f"backend name {name!r} is not a non-empty string")
    with _lock:
        cached = _instances.get(name)
    if cached is not None:
        return cached
    base, option = _split(name)
    factory = _factory_for(base)
    try:
        backend = factory(option)
    except BackendUnavailable:
        raise
    except Exception as exc:
        raise BackendUnavailable(f"backend {name!r} failed to start: {exc!r}") from exc
    if backend is None:
        raise BackendUnavailable(f"backend {name!r}: its factory returned None")
    with _lock:
        return _instances.setdefault(name, backend)


def _implicit_default() -> Any:
    """OpenCL when it starts, else NumPy; the failed probe is logged and remembered once."""
    global _implicit_fallback
    if _implicit_fallback:
        return _create("numpy")
    try:
        return _create("opencl")
    except BackendUnavailable as exc:
        log.warning("clconv: no usable OpenCL device, falling back to NumPy: %s", exc)
        with _lock:
            _implicit_fallback = True
        return _create("numpy")


def default_backend_name() -> str | None:
    """The explicitly chosen default (scope, process, env), or None for implicit."""
    return _scoped.get() or _process_default or setting(ENV_VAR) or None


def get_backend(name: str | None = None) -> Any:
    """The backend object for ``name``, or for the current default when ``name`` is None.

    One object is cached per full name. Raises ``BackendUnavailable`` when a
    named backend is unknown or cannot run.
    """
    if name is not None and not isinstance(name, str):
        # A backend object passed through (duck-typed: isinstance on a Protocol is slow).
        if callable(getattr(name, "conv_forward", None)):
            return name
        raise BackendUnavailable(f"backend={name!r}; expected a backend name or object")
    if name is not None:
        return _create(name)
    chosen = default_backend_name()
    if chosen is not None:
        return _create(chosen)
    return _implicit_default()


def available_backends() -> list[str]:
    """The registered backends that can run on this machine now (computed live)."""
    usable = []
    for name in list_backends():
        try:
            _create(name)
        except BackendUnavailable:
            continue
        usable.append(name)
    return usable


def set_backend(name: str | None) -> None:
    """Set the process-wide default backend; ``None`` clears it.

    The name is checked at once: an unknown or unusable backend raises
    ``BackendUnavailable`` and leaves the default unchanged.
    """
    global _process_default
    if name is not None:
        _create(name)
    with _lock:
        _process_default = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Any]:
    """Make ``name`` the default inside a ``with`` block (thread- and task-local, nestable).

    >>> import clconv
    >>> with clconv.use_backend("numpy") as backend:
    ...     backend.name
    'numpy'
    """
    backend = _create(name)
    token = _scoped.set(name)
    try:
        yield backend
    finally:
        _scoped.reset(token)


# ---------------------------------------------------------------- device arrays

def _builtin_recognisers() -> list[tuple[str, Callable[[Any], bool], Callable[[Any], Any]]]:
    """``(name, is_array, to_host)`` of every built-in recogniser module that imports."""
    global _recognisers
    if _recognisers is None:
        found = []
        for name, module_name in _ARRAY_MODULES.items():
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:  # that backend's arrays cannot exist here
                log.debug("clconv: array recogniser %s not loaded: %s", module_name, exc)
                continue
            found.append((name, module.is_array, module.to_host))
        _recognisers = found
    return _recognisers


def _owner(obj: Any) -> tuple[str, Callable[[Any], Any]] | None:
    """``(owner name, its to_host)`` for a device array, None for anything else."""
    if type(obj) in _HOST_TYPES:
        return None
    for name, is_array, read in _builtin_recognisers():
        if is_array(obj):
            return name, read
    with _lock:
        created = list(_instances.items())
    for name, backend in created:
        # A backend without ``owns`` has no device arrays to recognise.
        owns = getattr(backend, "owns", None)
        if owns is not None and owns(obj):
            return name, backend.to_host
    return None


def array_owner(obj: Any) -> str | None:
    """The backend whose device array ``obj`` is, or None for host data.

    A built-in backend's arrays answer with its base name (``"opencl"``), a
    created plug-in's with the full name it was created under.
    """
    owner = _owner(obj)
    return None if owner is None else owner[0]


def is_device_array(obj: Any) -> bool:
    """Whether ``obj`` is a device array of some backend (never imports pyopencl)."""
    return _owner(obj) is not None


def to_host(obj: Any) -> np.ndarray:
    """``obj`` as a NumPy array: device arrays are read back by their owner."""
    owner = _owner(obj)
    return np.asarray(obj if owner is None else owner[1](obj))


def has_device_memory(backend: Any) -> bool:
    """Whether ``backend`` keeps arrays in device memory of its own (it has ``to_device``)."""
    return callable(getattr(backend, "to_device", None))
