"""Image filtering against the libraries image users pick: OpenCV and scipy.ndimage.

Rows: a 1080x1920 RGB photo (uint8 and float32) through cv2.filter2D (3x3,
5x5), cv2.GaussianBlur (sigma 2 and 5; clconv runs the same kernel size), and
a 256^3 float32 volume and a 4096^2 float32 image through
scipy.ndimage.gaussian_filter (sigma 2), uniform_filter (size 5) and correlate
(3^d box). Host arrays in and out; every implementation's result is checked
against the peer's; median of --repeat calls, implementations interleaved.

Usage: python benchmarks/image_filters.py [--backend B ...] [--repeat N] [--rows NAME ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def rows(rng: np.random.Generator):
    import cv2
    import scipy.ndimage as ndi

    import clconv
    from clconv import ndimage as cnd

    photo8 = (rng.random((1080, 1920, 3)) * 255).astype(np.uint8)
    photo32 = photo8.astype(np.float32) / 255
    vol = rng.random((256, 256, 256), dtype=np.float32)
    img = rng.random((4096, 4096), dtype=np.float32)
    k3 = clconv.kernels.get("sharpen")
    k5 = np.random.default_rng(1).random((5, 5)).astype(np.float32)
    for name, photo in (("u8", photo8), ("f32", photo32)):
        same = "same" if name == "u8" else None
        for kname, k in (("3x3", k3), ("5x5", k5)):
            yield (f"photo {name} filter2D {kname}", lambda p=photo, k=k: cv2.filter2D(p, -1, k),
                   lambda b, p=photo, k=k, d=same: clconv.filter2d(p, k, dtype=d, backend=b))
        for sigma in (2, 5):
            size = int(round(sigma * 3 * 2 + 1)) | 1
            gk = clconv.kernels.get("gaussian", size=size, sigma=sigma)
            yield (f"photo {name} GaussianBlur s{sigma}",
                   lambda p=photo, s=sigma: cv2.GaussianBlur(p, (0, 0), s),
                   lambda b, p=photo, gk=gk, d=same: clconv.filter2d(p, gk, dtype=d, backend=b))
    for name, arr in (("volume 256^3", vol), ("image 4096^2", img)):
        box = np.ones((3,) * arr.ndim, np.float32) / 3**arr.ndim
        yield (f"{name} gaussian_filter s2", lambda a=arr: ndi.gaussian_filter(a, 2),
               lambda b, a=arr: cnd.gaussian_filter(a, 2, backend=b))
        yield (f"{name} uniform_filter 5", lambda a=arr: ndi.uniform_filter(a, 5),
               lambda b, a=arr: cnd.uniform_filter(a, 5, backend=b))
        yield (f"{name} correlate box3", lambda a=arr, k=box: ndi.correlate(a, k),
               lambda b, a=arr, k=box: cnd.correlate(a, k, backend=b))


def median_ms(fn, repeat: int) -> tuple[float, object]:
    out = fn()                                   # warm-up: builds, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    import cv2

    import clconv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append",
                        help="clconv backends (default: numpy and every working device)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", nargs="*", help="substrings of the row names to run")
    args = parser.parse_args(argv)
    backends = args.backend or ["numpy"] + [d.backend for d in clconv.devices() if d.works]
    cv2.setNumThreads(2)
    print(f"backends {backends}; OpenCV {cv2.__version__} (2 threads); median of "
          f"{args.repeat}", file=sys.stderr)
    head = f"{'row':<34} {'peer ms':>9} " + " ".join(f"{b:>16}" for b in backends)
    print(head + "\n" + "-" * len(head))
    for name, peer, ours in rows(np.random.default_rng(0)):
        if args.rows and not any(r in name for r in args.rows):
            continue
        peer_ms, want = median_ms(peer, args.repeat)
        cells = []
        for b in backends:
            ms, got = median_ms(lambda b=b, ours=ours: ours(b), args.repeat)
            got, ref = np.asarray(got, np.float64), np.asarray(want, np.float64)
            ok = np.allclose(got, ref, rtol=1e-3, atol=1.01 if want.dtype.kind == "u" else 1e-3)
            cells.append(f"{ms:8.2f} ({peer_ms / ms:4.2f}x){'' if ok else '!'}")
        print(f"{name:<34} {peer_ms:9.2f} " + " ".join(f"{c:>16}" for c in cells), flush=True)
    print("(Nx) = peer time / clconv time: above 1 means clconv is faster; ! = result differs "
          "from the peer's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
