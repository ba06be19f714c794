"""The OpenCL backend: kernels from ``kernels_cl/`` on any OpenCL device.

Nothing here imports pyopencl until a backend object is created. Modules
(docs/architecture.md has the map):

- ``runtimes``: pip-installed OpenCL runtimes made visible to the ICD loader;
- ``device``: discovery, health probes, ``opencl[:option]`` names;
- ``context``: the per-device context, limits, and the owner of every cache;
- ``build``: kernel sources, build options, building, the program cache type;
- ``arrays``: recognising device arrays without importing pyopencl;
- ``backend``: the backend object, one straight line from spec to result;
- ``plan``: typed plans and splitting host inputs into pieces;
- ``execute``: running plans, transfers, events, driver errors;
- ``paths``: one module per way of computing (direct, tiny, gemm, pointwise,
  rows, separable, backward) plus the pad pre-pass and weight packing;
- ``tuning``: per-device defaults and the autotune cache; ``tune``: the autotuner.
"""

from __future__ import annotations

from typing import Any

from .._base import DeviceInfo
from .device import list_devices, select_device

__all__ = ["DeviceInfo", "factory", "list_devices"]


def factory(option: str | None) -> Any:
    """Registry factory for ``opencl[:option]`` (see :data:`.devices.NAME_FORMS`)."""
    found = select_device(option)  # a working device, or BackendUnavailable with the reason
    from .backend import OpenCLBackend
    from .context import device_context

    name = "opencl" if option is None else f"opencl:{option}"
    return OpenCLBackend(name, device_context(found))
