"""The ``clconv`` command line, run as a subprocess (``python -m clconv``)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clconv
from clconv._images import ImageModeError, read_image, to_pixels, write_image


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "clconv", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr


@pytest.fixture
def images(tmp_path, rng) -> Path:
    """A folder with an RGB PNG, a 16-bit grey PNG, a grey JPEG and a corrupt PNG."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray((rng.random((24, 31, 3)) * 255).astype(np.uint8)).save(folder / "rgb.png")
    Image.fromarray((rng.random((20, 17)) * 65535).astype(np.uint16)).save(folder / "g16.png")
    Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(folder / "grey.jpg")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG body")
    return folder


def png16_bytes(pixels: np.ndarray, color_type: int = 2, filters=(0, 1, 2, 3, 4)) -> bytes:
    """A 16-bit PNG built here from the spec (no pypng, no Pillow); row i uses filter
    ``filters[i % len(filters)]`` (0 none, 1 sub, 2 up, 3 average, 4 paeth)."""
    h, w, planes = pixels.shape
    raw = pixels.astype(">u2").view(np.uint8).reshape(h, w * planes * 2).astype(np.int32)
    bpp = planes * 2
    left, up, upleft = (np.zeros_like(raw) for _ in range(3))
    left[:, bpp:], up[1:], upleft[1:, bpp:] = raw[:, :-bpp], raw[:-1], raw[:-1, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    kinds = np.resize(np.asarray(filters), h)
    predicted = np.stack([np.zeros_like(raw), left, up, (left + up) // 2, paeth])[kinds,
                                                                                 np.arange(h)]
    body = np.concatenate([kinds[:, None], (raw - predicted) % 256], axis=1).astype(np.uint8)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body.tobytes())) + chunk(b"IEND", b""))


def png_header(path: Path) -> tuple[int, int]:
    """``(bit depth, colour type)`` from a PNG file's IHDR."""
    head = path.read_bytes()[:26]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return head[24], head[25]


@pytest.fixture
def rgb16(rng) -> np.ndarray:
    """uint16 RGB over the full 0..65535 range, mostly not multiples of 257."""
    pixels = rng.integers(0, 65536, size=(19, 23, 3)).astype(np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, 65535
    assert (pixels % 257 != 0).mean() > 0.99   # an 8-bit round trip would show
    return pixels


def test_devices():
    proc = run("devices")
    assert proc.returncode == 0, proc.stderr
    for d in clconv.devices():
        assert d.backend in proc.stdout
    if not clconv.devices():
        assert "no OpenCL" in proc.stdout


def test_version_and_help():
    proc = run("--version")
    assert proc.returncode == 0 and clconv.__version__ in proc.stdout
    proc = run("--help")
    for command in ("devices", "filter", "selftest", "bench"):
        assert command in proc.stdout


@pytest.mark.parametrize("scale", ["clip", "rescale"])
def test_filter_one_png(backend, images, tmp_path, scale):
    out = tmp_path / "out.png"
    proc = run("filter", str(images / "rgb.png"), "--kernel", "sobel_x", "--scale", scale,
               "--backend", backend, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    written = np.asarray(Image.open(out))
    source = np.asarray(Image.open(images / "rgb.png"))
    assert written.shape == source.shape and written.dtype == np.uint8
    expected = clconv.filter2d(source, clconv.kernels.get("sobel_x"), backend="numpy")
    pixels = to_pixels(expected, 255, scale)
    # float32 rounding may move a value across a .5 boundary: at most 1 level
    assert np.abs(written.astype(int) - pixels.astype(int)).max() <= 1
    if scale == "clip":
        np.testing.assert_array_equal(written, np.clip(np.rint(expected), 0, 255))
    else:
        assert written.min() == 0 and written.max() == 255


def test_filter_16bit_stride_padding(images, tmp_path):
    out = tmp_path / "g16_out.png"
    proc = run("filter", str(images / "g16.png"), "-k", "gaussian", "--size", "7", "--sigma",
               "1.5", "--stride", "2", "--padding", "valid", "--padding-mode", "zeros",
               "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    written = Image.open(out)
    assert written.mode.startswith("I;16")
    source = np.asarray(Image.open(images / "g16.png"))
    expected = clconv.filter2d(source, clconv.kernels.get("gaussian", size=7, sigma=1.5),
                               stride=2, padding="valid", backend="numpy")
    assert np.asarray(written).shape == expected.shape == (7, 6)
    diff = np.abs(np.asarray(written).astype(int) - np.clip(np.rint(expected), 0, 65535))
    assert diff.max() <= 1


def test_rgb16_png_read_write_round_trip(rgb16, tmp_path):
    """Reading a hand-built 16-bit RGB PNG (every filter type) and writing it back."""
    src = tmp_path / "rgb16.png"
    src.write_bytes(png16_bytes(rgb16))
    pixels, maxval = read_image(src)
    assert maxval == 65535 and pixels.dtype == np.uint16 and pixels.shape == (19, 23, 3)
    np.testing.assert_array_equal(pixels, rgb16)

    out = tmp_path / "again.png"
    write_image(out, pixels)
    assert png_header(out) == (16, 2)
    again, maxval = read_image(out)
    assert maxval == 65535 and again.dtype == np.uint16
    np.testing.assert_array_equal(again, rgb16)
    with Image.open(out) as im:   # an independent decoder: Pillow keeps the high bytes
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), rgb16 >> 8)

    tif = tmp_path / "again.tif"  # Pillow has no 16-bit RGB: other formats get 8 bits
    write_image(tif, pixels)
    eight, maxval = read_image(tif)
    assert maxval == 255 and eight.dtype == np.uint8
    np.testing.assert_array_equal(eight, (rgb16.astype(np.uint32) * 255 // 65535))


def test_rgb16_png_interlaced_and_broken(rgb16, tmp_path):
    import png  # pypng, the reader of 16-bit RGB PNGs

    interlaced = tmp_path / "adam7.png"
    with open(interlaced, "wb") as f:
        png.Writer(23, 19, greyscale=False, bitdepth=16, interlace=True).write(
            f, rgb16.reshape(19, 23 * 3).tolist())
    pixels, maxval = read_image(interlaced)
    assert maxval == 65535
    np.testing.assert_array_equal(pixels, rgb16)

    whole = png16_bytes(rgb16)
    (tmp_path / "cut.png").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(OSError, match="16-bit RGB PNG"):
        read_image(tmp_path / "cut.png")
    alpha = np.concatenate([rgb16, np.full((19, 23, 1), 65535, np.uint16)], axis=2)
    (tmp_path / "rgba16.png").write_bytes(png16_bytes(alpha, color_type=6))
    with pytest.raises(ImageModeError, match="'RGBA'"):
        read_image(tmp_path / "rgba16.png")


@pytest.mark.parametrize("kernel,scale", [("gaussian", "clip"), ("sobel_x", "rescale")])
def test_filter_16bit_rgb_png(backend, rgb16, tmp_path, kernel, scale):
    src, out = tmp_path / "rgb16.png", tmp_path / "out.png"
    src.write_bytes(png16_bytes(rgb16))
    proc = run("filter", str(src), "-k", kernel, "--scale", scale, "--backend", backend,
               "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert png_header(out) == (16, 2)
    written, maxval = read_image(out)
    assert maxval == 65535 and written.dtype == np.uint16 and written.shape == (19, 23, 3)
    expected = clconv.filter2d(rgb16, clconv.kernels.get(kernel), backend="numpy")
    pixels = to_pixels(expected, 65535, scale)
    # float32 rounding may move a value across a .5 boundary: at most 1 level
    assert np.abs(written.astype(int) - pixels.astype(int)).max() <= 1
    if backend == "numpy":
        np.testing.assert_array_equal(written, pixels)
    if scale == "rescale":
        assert written.min() == 0 and written.max() == 65535
    assert (written % 257 != 0).mean() > 0.9      # the low byte survived
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), written >> 8)


def test_filter_folder_with_a_corrupt_file(images, tmp_path):
    out = tmp_path / "outdir"
    proc = run("filter", str(images), "-k", "box", "-o", str(out), "--progress")
    assert_one_line_error(proc, "corrupt.png", "1 of 4 images failed")
    assert proc.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["g16.png", "grey.jpg", "rgb.png"]
    for name in ("g16.png", "grey.jpg", "rgb.png"):
        with Image.open(out / name) as im:
            im.load()
            assert im.size == Image.open(images / name).size
    assert "4/4" in proc.stderr   # the progress bar reached the end


def test_filter_several_files_and_wrong_mode(images, tmp_path):
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).convert("P").save(images / "pal.png")
    out = tmp_path / "several"
    proc = run("filter", str(images / "rgb.png"), str(images / "pal.png"),
               str(images / "missing.png"), "-k", "emboss", "-o", str(out))
    assert_one_line_error(proc, "pal.png", "mode 'P'", "missing.png")
    assert proc.returncode == 1
    assert (out / "rgb.png").is_file() and not (out / "pal.png").exists()


@pytest.mark.parametrize("args,needle", [
    (["-k", "nope"], "unknown"),
    (["-k", "sobel_x", "--size", "3"], "does not take"),
    (["-k", "box", "--backend", "nope"], "nope"),
    (["-k", "box", "--padding-mode", "mirror"], "padding_mode"),
])
def test_filter_bad_options_are_one_line(images, tmp_path, args, needle):
    proc = run("filter", str(images / "rgb.png"), *args, "-o", str(tmp_path / "x.png"))
    assert_one_line_error(proc, needle)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


def test_selftest(backend):
    proc = run("selftest", "--backend", backend)
    assert "Traceback" not in proc.stderr
    assert "feature" in proc.stdout and "filter2d sobel_x" in proc.stdout
    assert proc.returncode == 0, proc.stdout
    assert "FAIL" not in proc.stdout and " 0 failed" in proc.stdout


def test_bench_tiny_case():
    proc = run("bench", "--quick", "--cases", "conv3x3_64", "--backend", "numpy",
               "--no-peers", "--repeat", "1", "--budget", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "GFLOP/s" in proc.stdout and "conv3x3_64" in proc.stdout


def test_bench_unavailable_is_one_line(tmp_path):
    """A broken bench module gives one clear line (a stub shadows clconv.bench)."""
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "sitecustomize.py").write_text(
        "import sys, types\n"
        "m = types.ModuleType('clconv.bench')\n"
        "def __getattr__(name):\n    raise ImportError('broken on purpose')\n"
        "m.__getattr__ = __getattr__\n"
        "sys.modules['clconv.bench'] = m\n")
    env = {**os.environ, "PYTHONPATH": str(stub)}
    proc = subprocess.run([sys.executable, "-m", "clconv", "bench", "--quick"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert_one_line_error(proc, "bench", "broken on purpose")
    assert len(proc.stderr.strip().splitlines()) == 1
