"""Draw the synthetic RGB "photo" the examples use (examples/data/photo.png).

A small outdoor scene (sky gradient, sun, hills, a house with windows, a
striped field and a chequered flag) with edges in every direction, smooth
gradients and fine texture, so that blur, sharpen and edge kernels each show
something. Drawn with NumPy only, deterministic; the PNG is committed, so no
example downloads anything. Run again to regenerate:

    python examples/make_photo.py [--out examples/data/photo.png]

``--out`` is a PNG file name or a folder (made if missing), which then gets
``photo.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 160, 224


def draw_photo(height: int = HEIGHT, width: int = WIDTH, seed: int = 3) -> np.ndarray:
    """The scene as an ``(height, width, 3)`` uint8 array."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    t = y / height
    img = np.empty((height, width, 3))
    img[..., 0] = 90 + 110 * t                     # sky: blue at the top, paler below
    img[..., 1] = 150 + 80 * t
    img[..., 2] = 235 - 20 * t

    sun = (x - 0.8 * width) ** 2 + (y - 0.2 * height) ** 2 < (0.09 * height) ** 2
    img[sun] = (255, 225, 90)

    hill = y > 0.55 * height + 0.08 * height * np.sin(x / width * 2 * np.pi * 1.3)
    img[hill] = np.stack([40 + 0 * x, 130 + 40 * (y / height), 50 + 0 * x], -1)[hill]
    field = hill & (y > 0.78 * height)
    stripes = (np.floor((x + 0.6 * y) / 6) % 2 == 0)
    img[field & stripes] = (200, 170, 60)
    img[field & ~stripes] = (170, 140, 40)

    hx0, hx1, hy0, hy1 = int(0.18 * width), int(0.45 * width), int(0.45 * height), int(0.8 * height)
    img[hy0:hy1, hx0:hx1] = (205, 90, 70)          # walls
    roof = (y < hy0) & (y > hy0 - 0.18 * height) \
        & (np.abs(x - (hx0 + hx1) / 2) < (y - (hy0 - 0.18 * height)) * 1.3)
    img[roof] = (110, 50, 40)
    for wx in (hx0 + 6, hx1 - 18):                 # two windows with crossbars
        img[hy0 + 8:hy0 + 22, wx:wx + 12] = (250, 240, 160)
        img[hy0 + 14, wx:wx + 12] = (60, 40, 30)
        img[hy0 + 8:hy0 + 22, wx + 6] = (60, 40, 30)
    door = slice((hx0 + hx1) // 2 - 5, (hx0 + hx1) // 2 + 5)
    img[hy1 - 22:hy1, door] = (80, 50, 30)

    pole = int(0.65 * width)
    img[int(0.3 * height):int(0.7 * height), pole:pole + 2] = (70, 70, 70)
    fy, fx = np.mgrid[0:16, 0:24]
    flag = np.where(((fy // 4 + fx // 4) % 2 == 0)[..., None], 250, 20)
    img[int(0.3 * height):int(0.3 * height) + 16, pole + 2:pole + 26] = flag

    rng = np.random.default_rng(seed)
    img += rng.normal(0, 4, img.shape)             # a little sensor noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


DEFAULT_NAME = "photo.png"


def output_path(out: str) -> Path:
    """The file to write for ``--out``: a folder (existing, or ending in a slash or
    without a suffix) gets DEFAULT_NAME inside it; anything else is the file itself."""
    path = Path(out)
    if path.is_dir() or out.endswith(("/", "\\")) or not path.suffix:
        path = path / DEFAULT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "data" / DEFAULT_NAME),
                        help=f"PNG file, or a folder to write {DEFAULT_NAME} into "
                             "(default examples/data/photo.png)")
    args = parser.parse_args()
    from PIL import Image

    path = output_path(args.out)
    Image.fromarray(draw_photo()).save(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
