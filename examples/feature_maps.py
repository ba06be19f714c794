"""An RGB photo through named kernels and a small bank of random filters.

Top row: the photo and what several named kernels (clconv.filter2d, one
kernel per colour channel) make of it. Lower rows: a bank of random 3x3
filters across all three channels (clconv.conv2d on the (H, W, 3) image with
data_format="channels_last", the way a first CNN layer sees a photo), run
with stride 2 and once with each padding mode; every feature map is
``ceil(H / 2) x ceil(W / 2)``, and the modes differ only along the border.
On this even-sized photo, stride 2 with ``padding="same"`` pads just one row
(at the bottom) and one column (at the right), so the maps differ only in their
last row and column: each mode row (labelled on the left) ends with the
bottom-right corner enlarged (8 x 8 pixels, nearest neighbour, one colour
scale for all modes) and with that corner's difference from zeros padding.

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
ZOOM = 8                      # side of the enlarged corner, in feature-map pixels


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
    from matplotlib.patches import Rectangle

    cols = max(len(NAMED) + 1, args.filters + 2)           # + the corner and the difference
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

    # One grey scale per filter across the modes, so equal values look equal
    # and only the padded row and column change from row to row.
    scales = [(min(float(maps[m][..., f].min()) for m in MODES),
               max(float(maps[m][..., f].max()) for m in MODES)) for f in range(args.filters)]
    h, w = maps["zeros"].shape[:2]
    corner = (slice(h - ZOOM, h), slice(w - ZOOM, w))
    corner_lo = min(float(maps[m][corner + (0,)].min()) for m in MODES)
    corner_hi = max(float(maps[m][corner + (0,)].max()) for m in MODES)
    diff_hi = max(float(np.abs(maps[m][corner + (0,)] - maps["zeros"][corner + (0,)]).max())
                  for m in MODES)
    for r, mode in enumerate(MODES, start=1):
        for f in range(args.filters):
            ax = axes[r, f]
            ax.imshow(maps[mode][..., f], cmap="gray", vmin=scales[f][0], vmax=scales[f][1])
            if r == 1:
                ax.set_title(f"filter {f}", fontsize=8)
        axes[r, 0].add_patch(Rectangle((w - ZOOM - 0.5, h - ZOOM - 0.5), ZOOM, ZOOM,
                                       fill=False, edgecolor="red", linewidth=1))
        axes[r, 0].text(-0.06, 0.5, mode, transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=10, fontweight="bold")
        zoom = axes[r, args.filters]
        zoom.imshow(maps[mode][corner + (0,)], cmap="gray", vmin=corner_lo, vmax=corner_hi,
                    interpolation="nearest")
        zoom.set_title(f"filter 0, red box\n(bottom-right {ZOOM}x{ZOOM})", fontsize=7)
        diff = axes[r, args.filters + 1]
        diff.imshow(np.abs(maps[mode][corner + (0,)] - maps["zeros"][corner + (0,)]),
                    cmap="magma", vmin=0, vmax=diff_hi or 1, interpolation="nearest")
        diff.set_title(f"red box, |{mode} - zeros|", fontsize=7)
        for ax in (zoom, diff):      # right of and below the dashed lines: reads the padding
            ax.axvline(ZOOM - 1.5, color="tab:cyan", linestyle="--", linewidth=0.8)
            ax.axhline(ZOOM - 1.5, color="tab:cyan", linestyle="--", linewidth=0.8)
    fig.suptitle("named kernels (per channel) and random 3x3x3 filters, stride 2",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))              # room for the suptitle
    path = out / "feature_maps.png"
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
