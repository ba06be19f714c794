"""The OpenCL backend: kernels from ``kernels_cl/`` on any OpenCL device.

Nothing here imports pyopencl until a backend object is created. Modules:

- ``runtimes``: pip-installed OpenCL runtimes made visible to the ICD loader;
- ``devices``, ``context``, ``program``, ``limits``: finding devices and
  probing their health, one context and queue per device, building and
  caching programs, launch limits;
- ``backend``: the backend object (operands in, kernels launched, results out),
  ``tiling``: host inputs split into pieces that fit the device;
- ``conv``: the forward path registry and choice; the paths themselves in
  ``direct``, ``gemm`` and ``rows``, sharing ``launch`` (operands, buffers,
  enqueue, the plan memo), ``weights`` (packing) and ``padding`` (pad pass);
- ``backward``: the gradients; ``tune``, ``tunecache``: the autotuner and its cache.
"""

from __future__ import annotations

from typing import Any

from .devices import DeviceInfo, list_devices, select_device

__all__ = ["DeviceInfo", "factory", "list_devices"]


def factory(option: str | None) -> Any:
    """Registry factory for ``opencl[:option]`` (see :data:`.devices.NAME_FORMS`)."""
    found = select_device(option)  # a working device, or BackendUnavailable with the reason
    from .backend import OpenCLBackend
    from .context import device_context

    name = "opencl" if option is None else f"opencl:{option}"
    return OpenCLBackend(name, device_context(found))
