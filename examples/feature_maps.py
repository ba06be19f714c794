"""An RGB photo through named kernels and a small bank of random filters.

Top row: the photo and what several named kernels (clconv.filter2d, one
kernel per colour channel) make of it. Lower rows: a bank of random 3x3
filters across all three channels (clconv.conv2d on the (H, W, 3) image with
data_format="channels_last", the way a first CNN layer sees a photo), run
with stride 2 and once with each padding mode; every feature map is
``ceil(H / 2) x ceil(W / 2)``, and the modes differ only along the border.

Run: python examples/feature_maps.py [--out OUT] [--backend B] [--filters N]
Writes OUT/feature_maps.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import clconv

PHOTO = Path(__file__).parent / "data" / "photo.png"
NAMED = ["gaussian", "sharpen", "sobel_x", "sobel_y", "laplacian", "emboss"]
MODES = ["zeros", "reflect", "replicate", "circular"]


def load_photo() -> np.ndarray:
    from PIL import Image

    with Image.open(PHOTO) as im:
        return np.asarray(im.convert("RGB"))


def to_display(y: np.ndarray) -> np.ndarray:
    """Map a float image to 0..1 for display (min..max of the map)."""
    lo, hi = float(y.min()), float(y.max())
    return (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    parser.add_argument("--backend", help="backend name (default: the default device)")
    parser.add_argument("--filters", type=int, default=4, help="random filters (default 4)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = clconv.get_backend(args.backend).name
    photo = load_photo()
    x = photo.astype(np.float32) / 255.0                     # (H, W, 3) in 0..1
    print(f"backend {backend}; photo {photo.shape} {photo.dtype}")

    named = {}
    for name in NAMED:
        named[name] = clconv.filter2d(x, name, backend=backend)
        print(f"filter2d {name:<10} -> {named[name].shape}")

    rng = np.random.default_rng(0)
    bank = rng.standard_normal((args.filters, 3, 3, 3)).astype(np.float32)  # (F, C, kH, kW)
    bank -= bank.mean(axis=(1, 2, 3), keepdims=True)       # zero-mean: respond to structure
    maps = {}
    for mode in MODES:
        maps[mode] = clconv.conv2d(x, bank, stride=2, padding="same", padding_mode=mode,
                                   data_format="channels_last", backend=backend)
        diff = np.abs(maps[mode] - maps["zeros"])
        edge = max(float(diff[[0, -1]].max()), float(diff[:, [0, -1]].max()))
        print(f"conv2d bank {bank.shape}, stride 2, padding_mode={mode:<9} -> "
              f"{maps[mode].shape}; vs zeros: border rows/cols differ by up to {edge:.2f}, "
              f"the inside by {float(diff[1:-1, 1:-1].max()):.0e}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(NAMED) + 1, args.filters)
    rows = 1 + len(MODES)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.6 * rows + 0.4))
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(photo)
    axes[0, 0].set_title("input", fontsize=8)
    for ax, name in zip(axes[0, 1:], NAMED):
        y = named[name]
        shown = np.clip(y, 0, 1) if name in ("gaussian", "sharpen") else to_display(y)
        ax.imshow(shown)
        ax.set_title(name, fontsize=8)
    for r, mode in enumerate(MODES, start=1):
        for f in range(args.filters):
            ax = axes[r, f]
            ax.imshow(maps[mode][..., f], cmap="gray")
            ax.set_title(f"filter {f}, {mode}", fontsize=7)
    fig.suptitle("named kernels (per channel) and random 3x3x3 filters, stride 2",
                 fontsize=9)
    fig.tight_layout()
    path = out / "feature_maps.png"
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
