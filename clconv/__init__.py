"""clconv: convolution layers (conv1d/2d/3d) as OpenCL kernels, with a NumPy reference.

The public API is the contract in API.md. Importing clconv is cheap: it
imports neither pyopencl nor any backend until one is used.

>>> import numpy as np, clconv
>>> x = np.ones((1, 3, 5, 5), dtype=np.float32)
>>> w = np.ones((2, 3, 3, 3), dtype=np.float32)
>>> clconv.conv2d(x, w, padding=1, backend="numpy")[0, 0, 2, 2]
np.float32(27.0)
"""

from __future__ import annotations

from . import kernels, ndimage
from .backends import (
    Backend,
    available_backends,
    get_backend,
    list_backends,
    register_backend,
    set_backend,
    use_backend,
)
from .backends import has_device_memory as _has_device_memory
from .backends._base import DeviceInfo
from .backward import conv_backward
from .errors import (
    AllocationError,
    ArgumentError,
    BackendUnavailable,
    ClconvError,
    DTypeError,
    KernelBuildError,
    ShapeError,
)
from .filters import filter2d
from .functional import conv1d, conv2d, conv3d
from .layers import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .signal import convolve, convolve2d, correlate2d
from .transpose import conv_transpose1d, conv_transpose2d, conv_transpose3d

__version__ = "0.1.0"

__all__ = [
    "AllocationError",
    "ArgumentError",
    "Backend",
    "BackendUnavailable",
    "ClconvError",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "DTypeError",
    "DeviceInfo",
    "KernelBuildError",
    "ShapeError",
    "__version__",
    "available_backends",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_backward",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "convolve",
    "convolve2d",
    "correlate2d",
    "devices",
    "filter2d",
    "get_backend",
    "kernels",
    "list_backends",
    "ndimage",
    "register_backend",
    "set_backend",
    "to_device",
    "tune",
    "use_backend",
]


def devices() -> list[DeviceInfo]:
    """Every OpenCL device as a :class:`DeviceInfo`; ``[]`` when there is no OpenCL."""
    from .backends.opencl.device import list_devices

    return list_devices()


def tune(*args, **kwargs):
    """Autotune one problem on an OpenCL backend and cache the winner.

    See :func:`clconv.backends.opencl.tune.tune` (arguments, the oracle check
    of every candidate, the cache file ``CLCONV_TUNE_CACHE``).
    """
    from .backends.opencl.tune import tune as _tune

    return _tune(*args, **kwargs)


def to_device(x, backend: str | None = None):
    """Upload host array ``x`` to an OpenCL backend's queue; returns a ``pyopencl.array.Array``.

    ``backend`` names an OpenCL backend (default: the current default backend,
    which must be an OpenCL one), or any backend with device memory of its
    own. Device arrays of that backend pass through.
    """
    be = get_backend(backend)
    if not _has_device_memory(be):
        raise ArgumentError(f"backend {be.name!r} has no device memory; expected an OpenCL "
                            "backend such as 'opencl' or 'opencl:cpu'")
    return be.to_device(x)
