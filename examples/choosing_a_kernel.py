"""Choosing a kernel: the same photo through blur, sharpen and edge kernels side by side.

- blur (box, gaussian): average the neighbourhood; noise and fine texture go,
  edges soften. Gaussian weights the centre more, so it blurs without the
  blocky look of a box of the same size. Both sum to 1: brightness is kept.
- sharpen: identity minus the laplacian; sums to 1, so flat areas stay, and
  edges get a bright and a dark rim (more contrast, and more noise).
- edges (sobel_x, sobel_y, their magnitude, laplacian): sum to 0, so flat
  areas become 0; the sign says which way the brightness changes. Shown
  rescaled, the way ``clconv filter --scale rescale`` writes them.

Each panel's title gives the kernel and, in brackets, its "detail": the
mean difference between neighbouring pixels over the mean value, which
falls with blur and rises with sharpening.

Run: python examples/choosing_a_kernel.py [--out OUT] [--backend B]
Writes OUT/choosing_a_kernel.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import clconv

PHOTO = Path(__file__).parent / "data" / "photo.png"


def detail(y: np.ndarray) -> float:
    """Mean |difference between neighbours| / mean |value|: how much fine detail is left."""
    grey = y.mean(axis=-1) if y.ndim == 3 else y
    d = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
    return float(d / max(np.abs(grey).mean(), 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    parser.add_argument("--backend", help="backend name (default: the default device)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = clconv.get_backend(args.backend).name
    from PIL import Image

    with Image.open(PHOTO) as im:
        photo = np.asarray(im.convert("RGB"))
    x = photo.astype(np.float32) / 255.0

    panels: list[tuple[str, np.ndarray, bool]] = [("input", x, False)]
    for title, name, params in [("box 5x5", "box", {"size": 5}),
                                ("gaussian 5x5, sigma 1", "gaussian", {}),
                                ("sharpen", "sharpen", {})]:
        panels.append((title, clconv.filter2d(x, clconv.kernels.get(name, **params),
                                              backend=backend), False))
    grey = x.mean(axis=-1)                                    # edges on brightness
    gx = clconv.filter2d(grey, "sobel_x", backend=backend)
    gy = clconv.filter2d(grey, "sobel_y", backend=backend)
    panels += [("sobel_x", gx, True), ("sobel_y", gy, True),
               ("sobel magnitude", np.hypot(gx, gy), True),
               ("laplacian", clconv.filter2d(grey, "laplacian", backend=backend), True)]

    print(f"backend {backend}; photo {photo.shape}")
    print(f"{'kernel':<24}{'min':>8}{'max':>8}{'detail':>8}")
    for title, y, _ in panels:
        print(f"{title:<24}{float(y.min()):8.2f}{float(y.max()):8.2f}{detail(y):8.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(12, 5.2))
    for ax, (title, y, signed) in zip(axes.flat, panels):
        if signed:
            lim = float(np.abs(y).max()) or 1.0
            if y.min() >= 0:
                ax.imshow(y, cmap="magma", vmin=0, vmax=lim)
            else:
                ax.imshow(y, cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            ax.imshow(np.clip(y, 0, 1))
        ax.set_title(f"{title} [{detail(y):.2f}]", fontsize=9)
        ax.axis("off")
    fig.suptitle("blur | sharpen | edges (red = brighter to the right/below, blue = darker)",
                 fontsize=10)
    fig.tight_layout()
    path = out / "choosing_a_kernel.png"
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
