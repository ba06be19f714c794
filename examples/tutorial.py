"""Tutorial walk-through: convolution as pattern matching, then edges in a tiny image.

1. 1-D pattern matching: sliding ``[1, 2, 3, 2, 1]`` over a signal that holds
   the same bump gives the largest output where the two line up.
2. A 16x16 grey image (the letters "H" and "i" in black, 0, on white, 255,
   with a dark-going gradient down the right edge) convolved with edge
   kernels; every result is printed as an array.
3. Convolution vs cross-correlation: ``flip=True`` turns one into the other.

Run: python examples/tutorial.py [--out OUT] [--backend B]
Writes OUT/tutorial_letters.png (the image and its edge maps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import clconv


def letters_image() -> np.ndarray:
    """The 16x16 image: white background, "H" and "i" in black, a gradient on the right."""
    img = np.full((16, 16), 255, dtype=np.uint8)
    img[2:12, 3] = 0            # H: left stroke
    img[2:12, 6] = 0            #    right stroke
    img[6, 3:7] = 0             #    crossbar
    img[2:4, 9] = 0             # i: dot
    img[5:12, 9] = 0            #    stem
    img[:, 14:16] = (255 - 17 * np.arange(16))[:, None]   # 255, 238, ..., 0 down the edge
    return img


def show(title: str, array: np.ndarray) -> None:
    print(f"\n{title} {array.shape}:")
    with np.printoptions(linewidth=200, threshold=10_000):
        print(np.asarray(array).round(1).astype(np.int64 if np.allclose(array, np.round(array))
                                                 else np.float64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    parser.add_argument("--backend", help="backend name (default: the default device)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = clconv.get_backend(args.backend)
    print(f"backend: {backend.name}")

    # 1. Pattern matching in 1-D ------------------------------------------------
    signal = np.array([0, 0, 0, 1, 2, 3, 2, 1, 0, 0])
    pattern = np.array([1, 2, 3, 2, 1])
    full = clconv.convolve(signal, pattern, backend=backend.name)
    print("\n1-D pattern matching: convolve(signal, pattern), mode 'full'")
    print("signal :", signal)
    print("pattern:", pattern)
    print("result :", full.astype(int), "(numpy.convolve gives",
          np.convolve(signal, pattern), ")")
    assert np.array_equal(full, np.convolve(signal, pattern))
    print(f"peak {full.max():.0f} at index {full.argmax()}: where the pattern lines up with "
          "the bump (sum of squares 1+4+9+4+1 = 19)")

    # 2. Edges in the 16x16 letters image ---------------------------------------
    img = letters_image()
    show("letters image (0 = black, 255 = white)", img)
    names = ["sobel_x", "sobel_y", "laplacian"]
    results = {}
    for name in names:
        k = clconv.kernels.get(name)
        # 'valid' padding: only positions where the 3x3 kernel fits -> 14x14
        y = clconv.filter2d(img, k, padding="valid", backend=backend.name)
        results[name] = y
        show(f"{name} {k.astype(int).tolist()}, padding='valid'", y)
    print("\nsobel_x: -1020 where white turns black going right, +1020 where black turns "
          "white (the vertical strokes);\nsobel_y: the same for going down (the crossbar, the "
          "ends of the strokes), and negative along the\ngradient on the right, which darkens "
          "downwards;\nlaplacian: both sides of every stroke, 0 on flat areas.")

    # 3. Convolution vs cross-correlation ---------------------------------------
    k = clconv.kernels.get("sobel_x")
    corr = clconv.filter2d(img, k, padding="valid", backend=backend.name)
    conv = clconv.filter2d(img, k, padding="valid", flip=True, backend=backend.name)
    print("\nflip=True (true convolution) with sobel_x == correlation with the flipped kernel "
          f"== -correlation: {np.array_equal(conv, -corr)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    axes[0].imshow(img, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title("letters 16x16")
    for ax, name in zip(axes[1:], names):
        lim = np.abs(results[name]).max()
        ax.imshow(results[name], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{name} (valid, 14x14)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = out / "tutorial_letters.png"
    fig.savefig(path, dpi=90)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
