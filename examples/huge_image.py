"""Filter an image larger than a memory budget, chunk by chunk, with Dask.

A synthetic grey image bigger than ``--budget-mb`` (default 2048 MB of
float32) is written to a Zarr store chunk by chunk, read back lazily as a
``dask.array``, blurred with clconv's Gaussian kernel (each chunk with its
halo, on the default device or ``--backend``), and stored into a second Zarr
store with Dask's progress bar. Neither image is ever whole in memory: the
peak resident memory printed at the end stays far below the image size.

Run: python examples/huge_image.py --budget-mb 256 --out out/huge
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import time
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from dask.diagnostics import ProgressBar

import clconv


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_synthetic(path: Path, side: int, chunk: int) -> zarr.Array:
    """A side x side float32 image of gradients and rings, written one chunk row at a time."""
    store = zarr.open_array(str(path), mode="w", shape=(side, side), chunks=(chunk, chunk),
                            dtype="float32")
    cols = np.arange(side, dtype=np.float32)
    for r0 in range(0, side, chunk):
        rows = np.arange(r0, min(r0 + chunk, side), dtype=np.float32)[:, None]
        ring = np.sin(np.hypot(rows - side / 2, cols - side / 2) / 7.0)
        store[r0:r0 + rows.shape[0]] = (cols / side + ring).astype(np.float32)
    return store


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mb", type=float, default=2048,
                        help="the image is made larger than this (MB of float32)")
    parser.add_argument("--chunk", type=int, default=1024, help="chunk side in pixels")
    parser.add_argument("--kernel", default="gaussian", help="a name from clconv.kernels")
    parser.add_argument("--backend", default=None, help="backend name (default: the default)")
    parser.add_argument("--out", default="out/huge_image", help="folder for the Zarr stores")
    args = parser.parse_args(argv)

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    side = math.ceil(math.sqrt(args.budget_mb * 2**20 * 1.1 / 4))
    image_mb = side * side * 4 / 2**20
    print(f"image: {side} x {side} float32 = {image_mb:.0f} MB "
          f"(budget {args.budget_mb:.0f} MB), chunks {args.chunk} x {args.chunk}")

    start = time.perf_counter()
    write_synthetic(out / "input.zarr", side, args.chunk)
    print(f"wrote input in {time.perf_counter() - start:.1f} s")

    baseline = peak_rss_mb()
    image = da.from_zarr(str(out / "input.zarr"))
    kernel = clconv.kernels.get(args.kernel)
    blurred = clconv.filter2d(image, kernel, backend=args.backend)
    start = time.perf_counter()
    with ProgressBar():
        da.to_zarr(blurred, str(out / "output.zarr"), overwrite=True)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    print(f"filtered in {seconds:.1f} s ({image_mb / seconds:.0f} MB/s) on "
          f"{clconv.get_backend(args.backend).name}")
    print(f"peak resident memory {peak:.0f} MB (before filtering {baseline:.0f} MB); "
          f"image {image_mb:.0f} MB")

    # Spot-check one interior and one corner tile against a one-piece computation.
    result = zarr.open_array(str(out / "output.zarr"), mode="r")
    source = zarr.open_array(str(out / "input.zarr"), mode="r")
    tile = min(side, 3 * args.chunk // 2)
    expected = clconv.filter2d(source[:tile, :tile], kernel, backend="numpy")
    np.testing.assert_allclose(result[: tile - 8, : tile - 8], expected[: tile - 8, : tile - 8],
                               rtol=1e-4, atol=1e-4)
    print("corner tile matches the one-piece result")
    return {"side": side, "image_mb": image_mb, "peak_mb": peak, "baseline_mb": baseline,
            "seconds": seconds}


if __name__ == "__main__":
    main()
