"""Which objects are OpenCL device arrays, answered without importing pyopencl.

The registry asks this module before any OpenCL backend exists (a user may
hand clconv a ``pyopencl.array.Array`` made on a queue of their own), so it
must stay importable, and cheap, on machines without pyopencl.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["is_array", "to_host"]


def is_array(obj: Any) -> bool:
    """True for a ``pyopencl.array.Array`` (or a subclass).

    No such array can exist before ``pyopencl.array`` is imported, so its
    absence from ``sys.modules`` answers without importing it.
    """
    array_type = getattr(sys.modules.get("pyopencl.array"), "Array", None)
    return array_type is not None and isinstance(obj, array_type)


def to_host(obj: Any) -> np.ndarray:
    """A NumPy copy of device array ``obj``, once the work that computes it is done."""
    return obj.get()
