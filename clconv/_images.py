"""Image files <-> arrays for the ``clconv filter`` command (Pillow, imported lazily).

Supported files: PNG and JPEG (and anything else Pillow reads) in grey or
RGB, 8 or 16 bits per channel: Pillow modes ``L`` (8-bit grey), ``I;16`` /
``I;16B`` / ``I`` (16-bit grey PNG) and ``RGB`` (8 bits per channel), and
16-bit RGB PNGs (48 bits per pixel), which Pillow would cut to 8 bits: their
header (bit depth 16, colour type 2) sends them to pypng instead, read as
uint16 ``(H, W, 3)`` and written back the same way. Palette, bilevel, CMYK,
alpha and float images are refused with :class:`ImageModeError` naming the
mode.

Writing: uint8 grey/RGB and uint16 grey go through Pillow, uint16 RGB to a
``.png`` through pypng. 16-bit pixels written as JPEG, and 16-bit RGB written
as anything but PNG (Pillow has no 16-bit RGB mode), are reduced to 8 bits.

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

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArgumentError

__all__ = ["IMAGE_SUFFIXES", "ImageModeError", "read_image", "to_pixels", "write_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SCALES = ("clip", "rescale")
_MODES = {"L": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535, "RGB": 255}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageModeError(ValueError):
    """An image file whose pixel format is not grey or RGB."""


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # a runtime dependency, but say so clearly
        raise ArgumentError("reading images needs Pillow: pip install Pillow") from exc
    return Image


def _png() -> Any:
    try:
        import png
    except ImportError as exc:  # a runtime dependency, but say so clearly
        raise ArgumentError("16-bit RGB PNGs need pypng: pip install pypng") from exc
    return png


def _is_png_rgb16(head: bytes) -> bool:
    """Whether a file's first 26 bytes are a PNG header of 16-bit RGB (colour type 2)."""
    return (len(head) >= 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR"
            and head[24] == 16 and head[25] == 2)


def _read_png_rgb16(file: Any) -> np.ndarray:
    """uint16 ``(H, W, 3)`` pixels of an open 16-bit RGB PNG file, via pypng."""
    png = _png()
    try:
        # read(), not asDirect(): no alpha from a tRNS chunk, no sBIT rescaling
        width, height, rows, info = png.Reader(file=file).read()
        if info["bitdepth"] != 16 or info["planes"] != 3:
            raise ValueError(f"pypng reads {info['bitdepth']}-bit with {info['planes']} "
                             "planes; expected 16-bit RGB")
        pixels = np.empty((height, width * 3), dtype=np.uint16)
        count = 0
        for count, row in enumerate(rows, start=1):
            pixels[count - 1] = np.asarray(row, dtype=np.uint16)
        if count != height:
            raise ValueError(f"{count} of {height} rows")
    except (png.Error, zlib.error, ValueError, IndexError) as exc:
        raise OSError(f"broken 16-bit RGB PNG: {exc}") from exc
    return pixels.reshape(height, width, 3)


def max_pixels() -> int:
    """The most pixels an input may have: Pillow's decompression-bomb limit (twice
    ``Image.MAX_IMAGE_PIXELS``), which the pypng path honours too."""
    limit = getattr(_pil(), "MAX_IMAGE_PIXELS", None)
    return 2 * int(limit) if limit else 2**31


def _too_large(width: int, height: int) -> OSError:
    return OSError(f"the file claims {width}x{height} pixels, more than the {max_pixels()} "
                   "allowed (a damaged file or a decompression bomb); skipped")


def read_image(path: str | Path) -> tuple[np.ndarray, int]:
    """``(pixels, maxval)``: ``(H, W)`` or ``(H, W, 3)`` uint8/uint16 and 255 or 65535.

    Raises OSError for unreadable files and for images whose header claims more
    than :func:`max_pixels` pixels (checked before any pixel is decoded), and
    ImageModeError for other pixel formats.
    """
    with open(path, "rb") as file:
        head = file.read(26)
        if _is_png_rgb16(head):
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            if width * height > max_pixels():
                raise _too_large(width, height)
            file.seek(0)
            return _read_png_rgb16(file), 65535
    image_mod = _pil()
    try:
        with image_mod.open(path) as im:
            if im.mode not in _MODES:
                raise ImageModeError(f"pixel mode {im.mode!r} is not supported; expected grey "
                                     "(L, I;16) or RGB")
            maxval = _MODES[im.mode]
            pixels = np.asarray(im)
    except image_mod.DecompressionBombError as exc:  # raised by open(), from the header
        raise OSError(f"{exc} Skipped.") from None
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


def _to_8bit(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.uint32) * 255 // 65535).astype(np.uint8)


def write_image(path: str | Path, pixels: np.ndarray) -> None:
    """Write uint8 or uint16 grey/RGB pixels; 16-bit goes to 8-bit where the format lacks it.

    uint16 RGB keeps 16 bits only as PNG (via pypng); it and uint16 grey go to 8 bits
    for JPEG, and uint16 RGB for every other format too.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    # Written under a temporary name in the same folder and renamed: an output is
    # complete or absent, even when the writer is interrupted (Ctrl-C) or fails.
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        if pixels.dtype == np.uint16 and pixels.ndim == 3 and suffix == ".png":
            _write_png_rgb16(partial, pixels)
        else:
            if pixels.dtype == np.uint16 and (pixels.ndim == 3 or suffix in (".jpg", ".jpeg")):
                pixels = _to_8bit(pixels)    # Pillow has no 16-bit RGB mode; JPEG no 16 bits
            image_mod = _pil()
            image_mod.fromarray(np.ascontiguousarray(pixels)).save(
                partial, format=image_mod.registered_extensions().get(suffix))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _write_png_rgb16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG (colour type 2, 48 bits per pixel) via pypng."""
    png = _png()
    height, width, _ = pixels.shape
    rows = pixels.reshape(height, width * 3)
    writer = png.Writer(width, height, greyscale=False, bitdepth=16)
    with open(path, "wb") as file:   # packed rows: big-endian samples, as PNG stores them
        writer.write_packed(file, (row.astype(">u2").tobytes() for row in rows))
