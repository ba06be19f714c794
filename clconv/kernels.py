"""Named 2-D image kernels for :func:`clconv.filter2d` (API.md section 3).

Every kernel is a fresh float32 array, written for cross-correlation (the
default ``flip=False``): the kernel's top-left weight multiplies the pixel
up and to the left of the output pixel.

>>> import clconv
>>> clconv.kernels.names()[:3]
['identity', 'box', 'gaussian']
>>> clconv.kernels.get("sobel_x")
array([[-1.,  0.,  1.],
       [-2.,  0.,  2.],
       [-1.,  0.,  1.]], dtype=float32)
>>> round(float(clconv.kernels.get("gaussian", size=7, sigma=2.0).sum()), 6)
1.0

Kernels (name, parameters: matrix -- what it does or detects):

- ``identity``: ``[[0,0,0],[0,1,0],[0,0,0]]`` -- nothing, returns the image.
- ``box(size=3)``: ``ones((size, size)) / size**2`` -- blur, the mean of the
  neighbourhood.
- ``gaussian(size=5, sigma=1.0)``: ``outer(g, g)`` with
  ``g[i] ~ exp(-(i - (size-1)/2)**2 / (2 sigma**2))``, normalised to sum 1 --
  smooth blur, less blocky than box; suppresses noise.
- ``sharpen``: ``[[0,-1,0],[-1,5,-1],[0,-1,0]]`` -- boosts local contrast
  (identity minus the laplacian).
- ``laplacian``: ``[[0,1,0],[1,-4,1],[0,1,0]]`` -- edges and spots in every
  direction (second derivative); 0 on flat areas and linear ramps.
- ``sobel_x``: ``[[-1,0,1],[-2,0,2],[-1,0,1]]`` -- vertical edges (gradient
  along x, positive where the image gets brighter to the right), smoothed
  across the edge.
- ``sobel_y``: ``[[-1,-2,-1],[0,0,0],[1,2,1]]`` (transpose of sobel_x) --
  horizontal edges (gradient along y, positive where it gets brighter going
  down).
- ``prewitt_x``: ``[[-1,0,1],[-1,0,1],[-1,0,1]]`` -- vertical edges, unweighted
  average across the edge.
- ``prewitt_y``: ``[[-1,-1,-1],[0,0,0],[1,1,1]]`` (transpose of prewitt_x) --
  horizontal edges.
- ``emboss``: ``[[-2,-1,0],[-1,1,1],[0,1,2]]`` -- relief look: a diagonal
  (top-left to bottom-right) gradient added to the image.

box, gaussian, sobel and prewitt are separable (outer products of two 1-D
kernels); :func:`clconv.filter2d` may run them as two 1-D passes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from .errors import ArgumentError

__all__ = ["box", "gaussian", "get", "names", "rank1_factors"]

def _fixed(rows: list[list[float]]) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        return np.array(rows, dtype=np.float32)
    return make


# A 4096 x 4096 float32 kernel is 64 MiB; anything larger is a typo, not a filter,
# and would otherwise die in a MemoryError while being built.
MAX_SIZE = 4096


def _check_size(size: object) -> int:
    if (not isinstance(size, numbers.Integral) or isinstance(size, bool)
            or not 1 <= size <= MAX_SIZE):
        raise ArgumentError(f"size={size!r}; expected an int from 1 to {MAX_SIZE}")
    return int(size)


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def box(size: int = 3) -> np.ndarray:
    """``size x size`` mean filter (sums to 1): a blur."""
    size = _check_size(size)
    return np.full((size, size), 1.0 / (size * size), dtype=np.float32)


def gaussian(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """``size x size`` Gaussian blur with standard deviation ``sigma`` pixels (sums to 1)."""
    size = _check_size(size)
    if not isinstance(sigma, numbers.Real) or isinstance(sigma, bool) or not sigma > 0 \
            or not np.isfinite(sigma):
        raise ArgumentError(f"sigma={sigma!r}; expected a finite number > 0")
    g = _gaussian_1d(size, float(sigma))
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


_KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "identity": _fixed([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "box": box,
    "gaussian": gaussian,
    "sharpen": _fixed([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "laplacian": _fixed([[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "sobel_x": _fixed([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "sobel_y": _fixed([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "prewitt_x": _fixed([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]),
    "prewitt_y": _fixed([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]),
    "emboss": _fixed([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
}


def names() -> list[str]:
    """The names :func:`get` knows, in a fixed order."""
    return list(_KERNELS)


def _lookup(name: object) -> Callable[..., np.ndarray]:
    key = name.lower() if isinstance(name, str) else None
    if key not in _KERNELS:
        raise ArgumentError(f"kernel name {name!r} is unknown; expected one of "
                            f"{', '.join(_KERNELS)}")
    return _KERNELS[key]


def get(name: str, **params: object) -> np.ndarray:
    """The named kernel as a new float32 array; ``params`` go to box / gaussian.

    Raises ArgumentError for an unknown name (listing the known ones) or a
    parameter the kernel does not take.
    """
    make = _lookup(name)
    try:
        return make(**params)
    except TypeError:
        raise ArgumentError(
            f"kernel {name!r} does not take parameters {sorted(params)}; "
            "only box(size) and gaussian(size, sigma) take parameters") from None



def rank1_factors(kernels: object, dtype: object = np.float32,
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(columns, rows)`` whose outer products are the 2-D ``kernels``, or None.

    ``kernels`` is one ``(KH, KW)`` kernel or a stack ``(F, KH, KW)``; the
    factors have the same leading shape (``(KH,)`` / ``(KW,)`` per kernel).
    Each kernel's column is its column through its largest entry and its row
    the matching row divided by that pivot, so integer kernels such as sobel
    factor exactly. None unless every kernel is rank 1 within 8 ``dtype``
    epsilons of its largest entry (all-zero kernels factor as zeros), or when
    any entry is not finite. Used by :func:`clconv.filter2d`'s two-pass
    route and by the OpenCL backend's separable path.
    """
    k = np.asarray(kernels).astype(dtype).astype(np.float64)
    one = k.ndim == 2
    k = k[None] if one else k
    if k.ndim != 3 or not np.all(np.isfinite(k)):
        return None
    f = np.arange(k.shape[0])
    size = np.abs(k).reshape(len(f), -1)
    i, j = np.divmod(size.argmax(axis=1), k.shape[2])
    pivot = k[f, i, j]
    columns = k[f, :, j]
    rows = k[f, i, :] / np.where(pivot == 0, 1.0, pivot)[:, None]
    misfit = np.abs(k - columns[:, :, None] * rows[:, None, :]).reshape(len(f), -1).max(axis=1)
    if (misfit > 8 * np.finfo(np.dtype(dtype)).eps * size.max(axis=1)).any():
        return None
    return (columns[0], rows[0]) if one else (columns, rows)
