"""``clconv bench --filters``: image filtering against OpenCV and scipy.ndimage.

Rows: a 1080x1920 RGB photo (uint8 and float32) through cv2.filter2D (3x3,
5x5), cv2.GaussianBlur (sigma 2 and 5; clconv runs the same kernel size), and
a 256^3 float32 volume and a 4096^2 float32 image through
scipy.ndimage.gaussian_filter (sigma 2), uniform_filter (size 5) and correlate
(3^d box). Host arrays in and out; every clconv result is checked against the
peer's; median of ``--repeat`` calls after a warm-up. ``--quick`` shrinks every
array (for tests). OpenCV and SciPy are measuring peers only: a missing one
leaves its rows out.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import numpy as np

__all__ = ["rows", "run_filters"]


def rows(rng: np.random.Generator, quick: bool = False):
    """``(name, peer call, clconv call taking a backend name)`` per row."""
    from . import ndimage as cnd

    photo_shape, volume, image = ((36, 64, 3), 16, 64) if quick else (
        (1080, 1920, 3), 256, 4096)
    photo8 = (rng.random(photo_shape) * 255).astype(np.uint8)
    photo32 = photo8.astype(np.float32) / 255
    vol = rng.random((volume,) * 3, dtype=np.float32)
    img = rng.random((image, image), dtype=np.float32)
    yield from _opencv_rows(photo8, photo32)
    try:
        import scipy.ndimage as ndi
    except ImportError:
        return
    for name, arr in ((f"volume {volume}^3", vol), (f"image {image}^2", img)):
        box = np.ones((3,) * arr.ndim, np.float32) / 3**arr.ndim
        yield (f"{name} gaussian_filter s2", lambda a=arr: ndi.gaussian_filter(a, 2),
               lambda b, a=arr: cnd.gaussian_filter(a, 2, backend=b))
        yield (f"{name} uniform_filter 5", lambda a=arr: ndi.uniform_filter(a, 5),
               lambda b, a=arr: cnd.uniform_filter(a, 5, backend=b))
        yield (f"{name} correlate box3", lambda a=arr, k=box: ndi.correlate(a, k),
               lambda b, a=arr, k=box: cnd.correlate(a, k, backend=b))


def _opencv_rows(photo8: np.ndarray, photo32: np.ndarray):
    try:
        import cv2
    except ImportError:
        return
    from . import kernels
    from .filters import filter2d

    cv2.setNumThreads(os.cpu_count() or 1)
    k3 = kernels.get("sharpen")
    k5 = np.random.default_rng(1).random((5, 5)).astype(np.float32)
    for name, photo in (("u8", photo8), ("f32", photo32)):
        same = "same" if name == "u8" else None
        for kname, k in (("3x3", k3), ("5x5", k5)):
            yield (f"photo {name} filter2D {kname}", lambda p=photo, k=k: cv2.filter2D(p, -1, k),
                   lambda b, p=photo, k=k, d=same: filter2d(p, k, dtype=d, backend=b))
        for sigma in (2, 5):
            # OpenCV's own size for (0, 0): 3 sigma each side for 8-bit images,
            # 4 for float ones (its createGaussianKernels).
            size = int(round(sigma * (3 if name == "u8" else 4) * 2 + 1)) | 1
            gk = kernels.get("gaussian", size=size, sigma=sigma)
            yield (f"photo {name} GaussianBlur s{sigma}",
                   lambda p=photo, s=sigma: cv2.GaussianBlur(p, (0, 0), s),
                   lambda b, p=photo, gk=gk, d=same: filter2d(p, gk, dtype=d, backend=b))


def median_ms(fn: Any, repeat: int) -> tuple[float, Any]:
    """Median ms of ``repeat`` calls after one untimed warm-up call, and its result."""
    out = fn()                                   # warm-up: builds, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def run_filters(backends: list[str], repeat: int, quick: bool = False,
                names: list[str] | None = None, out: Any = sys.stdout) -> list[dict[str, Any]]:
    """Time every row (or those whose name contains one of ``names``); print the table
    to ``out`` and return the rows (peer ms, per backend ms, ratio and correctness)."""
    head = f"{'row':<34} {'peer ms':>9} " + " ".join(f"{b:>16}" for b in backends)
    print(head + "\n" + "-" * len(head), file=out)
    results = []
    for name, peer, ours in rows(np.random.default_rng(0), quick):
        if names and not any(n in name for n in names):
            continue
        peer_ms, want = median_ms(peer, repeat)
        row: dict[str, Any] = {"row": name, "peer_ms": peer_ms, "clconv": {}}
        cells = []
        for b in backends:
            try:
                ms, got = median_ms(lambda b=b, ours=ours: ours(b), repeat)
            except Exception as exc:  # a failing backend is reported, never fatal
                row["clconv"][b] = {"error": f"{type(exc).__name__}: {exc}"}
                cells.append("n/a")
                continue
            got, ref = np.asarray(got, np.float64), np.asarray(want, np.float64)
            ok = bool(np.allclose(got, ref, rtol=1e-3,
                                  atol=1.01 if want.dtype.kind == "u" else 1e-3))
            row["clconv"][b] = {"ms": ms, "ratio": peer_ms / ms, "correct": ok}
            cells.append(f"{ms:8.2f} ({peer_ms / ms:4.2f}x){'' if ok else '!'}")
        results.append(row)
        print(f"{name:<34} {peer_ms:9.2f} " + " ".join(f"{c:>16}" for c in cells), file=out,
              flush=True)
    print("(Nx) = peer time / clconv time: above 1 means clconv is faster; ! = result "
          "differs from the peer's by more than float32 rounding or one 8-bit level",
          file=out)
    return results
