"""The OpenCL backend: kernels from ``kernels_cl/`` on any OpenCL device.

Nothing here imports pyopencl until a backend object is created.
"""

from __future__ import annotations

from ...errors import BackendUnavailable
from .devices import DeviceInfo, list_devices, select_device

__all__ = ["DeviceInfo", "factory", "list_devices"]


def factory(option: str | None):
    """Registry factory for ``opencl``, ``opencl:gpu``, ``opencl:cpu``, ``opencl:P:D``."""
    select_device(option)  # raises BackendUnavailable with the reason
    raise BackendUnavailable("the OpenCL backend's kernels are not implemented yet")
