"""Blur, sharpen and edge-detect a batch of uint8 photos, writing every picture.

The batch ``(N, H, W, 3)`` goes through ``filter2d(..., dtype="same")`` in one
call per kernel: the result is uint8 again, rounded and saturated the way
``cv2.filter2D(img, -1, kernel)`` does, ready for ``Image.fromarray``. The
edges come from ``clconv.ndimage.sobel`` (SciPy's function, on the chosen
backend) in float32, combined into a gradient magnitude and scaled to 0..255.

Run: python examples/photo_batch.py [--out OUT] [--backend B]
Writes OUT/batch_<i>_<filter>.png for each photo and filter, and
OUT/photo_batch.png, all of them in one grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import clconv
from clconv import ndimage

PHOTO = Path(__file__).parent / "data" / "photo.png"


def make_batch() -> np.ndarray:
    """Three uint8 photos of one size: the example photo, its mirror image, a darker
    and noisier copy."""
    from PIL import Image

    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    noisy = photo.astype(np.float32) * 0.6 + np.random.default_rng(0).normal(0, 12, photo.shape)
    return np.stack([photo, photo[:, ::-1], np.clip(noisy, 0, 255).astype(np.uint8)])


def edges(batch: np.ndarray, backend: str | None) -> np.ndarray:
    """Sobel gradient magnitude of each photo's grey level, as uint8 0..255.

    One photo at a time: like SciPy's, ``sobel`` smooths along every axis but
    the derivative's, so a stacked batch axis would blend neighbouring photos.
    """
    out = []
    for photo in batch:
        grey = photo.astype(np.float32).mean(axis=-1)              # (H, W)
        magnitude = np.hypot(ndimage.sobel(grey, axis=0, backend=backend),
                             ndimage.sobel(grey, axis=1, backend=backend))
        out.append(255 * magnitude / max(float(magnitude.max()), 1e-6))
    return np.stack(out).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    parser.add_argument("--backend", default=None, help="backend name (default: the default)")
    args = parser.parse_args()
    from PIL import Image

    batch = make_batch()
    results = {
        "blur": clconv.filter2d(batch, "gaussian", size=9, sigma=2.5, dtype="same",
                                backend=args.backend),
        "sharpen": clconv.filter2d(batch, "sharpen", dtype="same", backend=args.backend),
        "edges": edges(batch, args.backend),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, images in results.items():
        assert images.dtype == np.uint8 and len(images) == len(batch)
        for i, image in enumerate(images):
            Image.fromarray(image).save(out / f"batch_{i}_{name}.png")

    rows = [np.concatenate([batch[i], results["blur"][i], results["sharpen"][i],
                            np.repeat(results["edges"][i][..., None], 3, axis=-1)], axis=1)
            for i in range(len(batch))]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out / "photo_batch.png")
    print(f"{len(batch)} photos x {len(results)} filters written to {out} "
          "(rows: photos; columns: original, blur, sharpen, edges)")


if __name__ == "__main__":
    main()
