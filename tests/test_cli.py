"""The ``clconv`` command line, run as a subprocess (``python -m clconv``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clconv
from clconv._images import to_pixels


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
