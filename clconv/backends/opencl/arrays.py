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


_array_type: type | None = None  # pyopencl.array.Array, once it has been imported


def is_array(obj: Any) -> bool:
    """True for a ``pyopencl.array.Array`` (or a subclass).

    No such array can exist before ``pyopencl.array`` is imported, so its
    absence from ``sys.modules`` answers without importing it; once found, the
    class is kept (a call asks this of each operand, several times).
    """
    global _array_type
    array_type = _array_type
    if array_type is None:
        array_type = getattr(sys.modules.get("pyopencl.array"), "Array", None)
        if array_type is None:
            return False
        _array_type = array_type
    return isinstance(obj, array_type)


def to_host(obj: Any) -> np.ndarray:
    """A NumPy copy of device array ``obj``, once the work that computes it is done."""
    return obj.get()
