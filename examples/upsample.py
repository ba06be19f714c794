"""Upsampling an image 2x with a transposed convolution (a bilinear kernel).

A transposed convolution with stride 2 places every input pixel two output
pixels apart and spreads it with its kernel. With the 4x4 bilinear kernel
(the outer product of [1, 3, 3, 1] / 4), padding 1 and one group per colour
channel, each output pixel is the bilinear blend of its four nearest input
pixels, the upsampling layer decoders and super-resolution networks start
from (and then learn). Nearest-neighbour repetition, for comparison, keeps
the blocks (on a flat-coloured picture like this one it is even closer to the
original on average; bilinear trades the blocks for softer edges).

Run: python examples/upsample.py [--out OUT] [--backend B]
Writes OUT/upsample.png: a crop of the photo halved (2x2 means), then
brought back to full size by nearest repetition and by the bilinear
transposed convolution, next to the original, and prints each one's mean
error against the original.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import clconv

PHOTO = Path(__file__).parent / "data" / "photo.png"


def bilinear_kernel(channels: int) -> np.ndarray:
    """``(C, 1, 4, 4)``: the 2x bilinear upsampling kernel, one per channel (groups=C)."""
    taps = np.array([1.0, 3.0, 3.0, 1.0], np.float32) / 4
    return np.broadcast_to(np.outer(taps, taps), (channels, 1, 4, 4)).copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    parser.add_argument("--backend", default=None, help="backend name (default: the default)")
    args = parser.parse_args()

    from PIL import Image

    photo = np.asarray(Image.open(PHOTO).convert("RGB"), dtype=np.float32) / 255
    crop = photo[40:120, 40:140]                                   # (80, 100, 3)
    # Halved by 2x2 means: each small pixel is centred between four original ones,
    # where the bilinear kernel (stride 2, padding 1) expects its samples.
    small = crop.reshape(40, 2, 50, 2, 3).mean(axis=(1, 3))        # (40, 50, 3)
    # One replicated pixel around the image, so the border blends with itself and
    # not with the transposed convolution's zeros; cropped off again afterwards.
    x = np.moveaxis(np.pad(small, ((1, 1), (1, 1), (0, 0)), mode="edge"), -1, 0)[None]
    up = clconv.conv_transpose2d(x, bilinear_kernel(3), stride=2, padding=1, groups=3,
                                 backend=args.backend)             # (1, 3, 84, 104)
    bilinear = np.moveaxis(up[0, :, 2:-2, 2:-2], 0, -1)            # (80, 100, 3)
    nearest = small.repeat(2, axis=0).repeat(2, axis=1)
    for name, image in (("nearest", nearest), ("bilinear", bilinear)):
        err = float(np.abs(image - crop).mean())
        print(f"{name:9s} mean |error| against the original: {err:.4f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("halved (40x50)", small), ("nearest 2x", nearest),
              ("conv_transpose2d, bilinear 2x", bilinear), ("original (80x100)", crop)]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    fig.tight_layout()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "upsample.png", dpi=100)
    print(f"wrote {out / 'upsample.png'}")


if __name__ == "__main__":
    main()
