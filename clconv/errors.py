"""The exception classes of the clconv contract (API.md section 6)."""

from __future__ import annotations

__all__ = [
    "ClconvError",
    "ArgumentError",
    "ShapeError",
    "DTypeError",
    "BackendUnavailable",
    "KernelBuildError",
    "AllocationError",
]


class ClconvError(Exception):
    """Base class of every error clconv raises on purpose."""


class ArgumentError(ClconvError, ValueError):
    """A bad argument value or option."""


class ShapeError(ArgumentError):
    """Ranks, channel/group mismatches, or stride/dilation/padding values that do not fit."""


class DTypeError(ArgumentError, TypeError):
    """A complex, object, string or other non-numeric dtype."""


class BackendUnavailable(ClconvError, RuntimeError):
    """A named backend or device that is unknown or cannot run here."""


class KernelBuildError(ClconvError, RuntimeError):
    """An OpenCL program failed to build; carries the device, options and build log."""

    def __init__(self, message: str, *, device: str = "", options: tuple[str, ...] = (),
                 log: str = "") -> None:
        self.device = device
        self.options = tuple(options)
        self.log = log
        detail = f"{message}\n  device: {device}\n  options: {' '.join(self.options)}"
        if log:
            detail += f"\n  build log:\n{log}"
        super().__init__(detail)


class AllocationError(ClconvError, MemoryError):
    """Memory that can be neither allocated nor avoided by tiling."""
