"""Filter an image larger than a memory budget, chunk by chunk, with Dask.

A synthetic grey image bigger than ``--budget-mb`` MB of float32 is written
to a Zarr store chunk by chunk, read back lazily as a ``dask.array``, blurred
with clconv's Gaussian kernel (each chunk with its halo, on the default device
or ``--backend``), and stored into a second Zarr store with Dask's progress
bar. Neither image is ever whole in memory: the peak resident memory printed
at the end stays far below the image size for images much larger than a chunk.

The default image is small (32 MB, a few seconds, at most ~70 MB on disk
while it runs). ``--big`` makes it 2048 MB, larger than many laptops' free
memory: that run needs up to ~4.5 GB of disk and minutes, and says so before
it starts. Images over 512 MB need ``--big``. The input store is temporary
and deleted at the end (``--keep-input`` keeps it); the blurred image stays
in OUT/output.zarr.

Run: python examples/huge_image.py [--out out/huge_image] [--backend B]
     python examples/huge_image.py --big          # the 2 GB image
     python examples/huge_image.py --budget-mb 256 --chunk 512
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import sys
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


DEFAULT_MB, BIG_MB = 32, 2048
# Above this, a run takes minutes and gigabytes of disk: only with --big.
UNASKED_LIMIT_MB = 512


def disk_mb(path: Path) -> float:
    """Bytes under ``path`` (a Zarr store is a folder of chunk files), in MB."""
    if not path.exists():
        return 0.0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


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
    parser.add_argument("--budget-mb", type=float, default=None,
                        help=f"the image is made larger than this (MB of float32; default "
                             f"{DEFAULT_MB}, {BIG_MB} with --big; over {UNASKED_LIMIT_MB} "
                             "needs --big)")
    parser.add_argument("--big", action="store_true",
                        help=f"the {BIG_MB} MB image: minutes, and gigabytes of disk")
    parser.add_argument("--chunk", type=int, default=None,
                        help="chunk side in pixels (default 512, 1024 with --big)")
    parser.add_argument("--kernel", default="gaussian", help="a name from clconv.kernels")
    parser.add_argument("--backend", default=None, help="backend name (default: the default)")
    parser.add_argument("--out", default="out/huge_image", help="folder for the Zarr stores")
    parser.add_argument("--keep-input", action="store_true",
                        help="keep the synthetic input store (OUT/input.zarr)")
    args = parser.parse_args(argv)

    budget_mb = args.budget_mb if args.budget_mb is not None else (
        BIG_MB if args.big else DEFAULT_MB)
    if budget_mb > UNASKED_LIMIT_MB and not args.big:
        parser.error(f"--budget-mb {budget_mb:.0f} writes gigabytes to disk; add --big "
                     "to confirm")
    # Enough chunks per side that one chunk (with its halo) is a small part of the image.
    chunk = args.chunk if args.chunk is not None else (1024 if args.big else 512)
    side = math.ceil(math.sqrt(budget_mb * 2**20 * 1.1 / 4))
    image_mb = side * side * 4 / 2**20
    # Zarr compresses, but float32 mantissas barely shrink: plan for both stores
    # at full size.
    need_mb = 2 * image_mb
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    input_path, output_path = out / "input.zarr", out / "output.zarr"
    for store in (input_path, output_path):         # only our own stores, never OUT itself
        shutil.rmtree(store, ignore_errors=True)
    free_mb = shutil.disk_usage(out).free / 2**20
    print(f"image: {side} x {side} float32 = {image_mb:.0f} MB "
          f"(budget {budget_mb:.0f} MB), chunks {chunk} x {chunk}")
    print(f"needs up to {need_mb:.0f} MB of disk in {out} while it runs "
          f"({free_mb:.0f} MB free); keeps {output_path.name} (~{image_mb:.0f} MB)")
    if args.big:
        print(f"warning: a big run writes up to {need_mb / 1024:.1f} GB to {out} and takes "
              "minutes; Ctrl-C stops it and removes what it wrote", file=sys.stderr,
              flush=True)
    if need_mb > free_mb:
        parser.error(f"{out} has {free_mb:.0f} MB free; this run needs {need_mb:.0f} MB")

    finished = False
    try:
        start = time.perf_counter()
        write_synthetic(input_path, side, chunk)
        print(f"wrote input in {time.perf_counter() - start:.1f} s")

        baseline = peak_rss_mb()
        image = da.from_zarr(str(input_path))
        kernel = clconv.kernels.get(args.kernel)
        blurred = clconv.filter2d(image, kernel, backend=args.backend)
        start = time.perf_counter()
        with ProgressBar():
            da.to_zarr(blurred, str(output_path), overwrite=True)
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
        print(f"filtered in {seconds:.1f} s ({image_mb / seconds:.0f} MB/s) on "
              f"{clconv.get_backend(args.backend).name}")
        print(f"peak resident memory {peak:.0f} MB (before filtering {baseline:.0f} MB); "
              f"image {image_mb:.0f} MB")

        # Spot-check one interior and one corner tile against a one-piece computation.
        result = zarr.open_array(str(output_path), mode="r")
        source = zarr.open_array(str(input_path), mode="r")
        tile = min(side, 3 * chunk // 2)
        expected = clconv.filter2d(source[:tile, :tile], kernel, backend="numpy")
        np.testing.assert_allclose(result[: tile - 8, : tile - 8],
                                   expected[: tile - 8, : tile - 8], rtol=1e-4, atol=1e-4)
        print("corner tile matches the one-piece result")
        finished = True
    finally:
        if not args.keep_input:
            shutil.rmtree(input_path, ignore_errors=True)
        if not finished:                               # a partial result is of no use
            shutil.rmtree(output_path, ignore_errors=True)

    output_mb = disk_mb(output_path)
    print(f"wrote {output_path} ({output_mb:.0f} MB on disk, the blurred image)")
    if args.keep_input:
        print(f"kept {input_path} ({disk_mb(input_path):.0f} MB on disk, the input)")
    else:
        print(f"removed the temporary {input_path.name}")
    return {"side": side, "image_mb": image_mb, "peak_mb": peak, "baseline_mb": baseline,
            "seconds": seconds, "output_disk_mb": output_mb}


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:                          # main removed the stores already
        sys.exit("interrupted; removed the partial stores")
