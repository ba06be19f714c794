"""Image files <-> arrays for the ``clconv filter`` command (Pillow, imported lazily).

Supported files: PNG and JPEG (and anything else Pillow reads) in grey or
RGB: Pillow modes ``L`` (8-bit grey), ``I;16`` / ``I;16B`` / ``I`` (16-bit
grey PNG) and ``RGB`` (8 bits per channel; Pillow itself reads 48-bit RGB PNGs
as 8-bit). Palette, bilevel, CMYK, alpha and float images are refused with
:class:`ImageModeError` naming the mode.

Float results map back to pixels in one of two ways (``scale``):

- ``"clip"``: round to the nearest integer and clip into the input's range
  (0..255 for 8-bit, 0..65535 for 16-bit). Right for kernels that keep the
  brightness (identity, box, gaussian, sharpen); negative edge responses
  become 0.
- ``"rescale"``: map the result's min..max linearly onto the full range
  (per image, over all channels together, so colours keep their balance);
  a constant result becomes 0. Right for edge kernels (sobel, laplacian,
  emboss) whose values are signed and can exceed the input range.

NaN becomes 0 in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArgumentError

__all__ = ["IMAGE_SUFFIXES", "ImageModeError", "read_image", "to_pixels", "write_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SCALES = ("clip", "rescale")
_MODES = {"L": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535, "RGB": 255}


class ImageModeError(ValueError):
    """An image file whose pixel format is not grey or RGB."""


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # a runtime dependency, but say so clearly
        raise ArgumentError("reading images needs Pillow: pip install Pillow") from exc
    return Image


def read_image(path: str | Path) -> tuple[np.ndarray, int]:
    """``(pixels, maxval)``: ``(H, W)`` or ``(H, W, 3)`` uint8/uint16 and 255 or 65535.

    Raises OSError for unreadable files and ImageModeError for other pixel formats.
    """
    image_mod = _pil()
    with image_mod.open(path) as im:
        if im.mode not in _MODES:
            raise ImageModeError(f"pixel mode {im.mode!r} is not supported; expected grey "
                                 "(L, I;16) or RGB")
        maxval = _MODES[im.mode]
        pixels = np.asarray(im)
    if maxval == 65535:
        if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 65535:
            raise ImageModeError("32-bit integer pixels outside 0..65535; expected 8- or "
                                 "16-bit grey")
        pixels = pixels.astype(np.uint16)
    return pixels, maxval


def to_pixels(values: np.ndarray, maxval: int, scale: str = "clip") -> np.ndarray:
    """Float filter results -> uint8 (maxval 255) or uint16 (65535) pixels, as documented."""
    if scale not in SCALES:
        raise ArgumentError(f"scale={scale!r}; expected 'clip' or 'rescale'")
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    v = np.where(finite, v, 0.0)
    if scale == "rescale":
        lo, hi = (v[finite].min(), v[finite].max()) if finite.any() else (0.0, 0.0)
        v = (v - lo) * (maxval / (hi - lo)) if hi > lo else np.zeros_like(v)
    v = np.clip(np.rint(v), 0, maxval)
    return v.astype(np.uint8 if maxval == 255 else np.uint16)


def write_image(path: str | Path, pixels: np.ndarray) -> None:
    """Write uint8 grey/RGB or uint16 grey pixels; 16-bit goes to 8-bit for JPEG."""
    image_mod = _pil()
    path = Path(path)
    if pixels.dtype == np.uint16 and path.suffix.lower() in (".jpg", ".jpeg"):
        pixels = (pixels.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    image_mod.fromarray(np.ascontiguousarray(pixels)).save(path)
