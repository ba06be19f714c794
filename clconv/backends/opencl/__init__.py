"""The OpenCL backend: kernels from ``kernels_cl/`` on any OpenCL device.

Nothing here imports pyopencl until a backend object is created.
"""

from __future__ import annotations

from typing import Any

from .devices import DeviceInfo, list_devices, select_device

__all__ = ["DeviceInfo", "factory", "list_devices"]


def factory(option: str | None) -> Any:
    """Registry factory for ``opencl``, ``opencl:gpu``, ``opencl:cpu``, ``opencl:P:D``."""
    p, d, platform, device = select_device(option)  # raises BackendUnavailable with the reason
    from .backend import OpenCLBackend
    from .context import device_context

    name = "opencl" if option is None else f"opencl:{option}"
    return OpenCLBackend(name, device_context(p, d, platform, device))
