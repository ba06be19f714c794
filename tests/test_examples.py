"""Every example in examples/ runs to completion and writes a valid image."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = [
    ("tutorial.py", [], "tutorial_letters.png"),
    ("feature_maps.py", ["--filters", "2"], "feature_maps.png"),
    ("choosing_a_kernel.py", [], "choosing_a_kernel.png"),
    ("operation_count.py", ["--size", "24", "--repeat", "1"], "operation_count.png"),
    ("upsample.py", [], "upsample.png"),
    ("photo_batch.py", [], "photo_batch.png"),
]


@pytest.mark.parametrize("script,extra,output", CASES, ids=[c[0] for c in CASES])
def test_example_runs(tmp_path, script, extra, output):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(tmp_path),
                           *extra], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = tmp_path / output
    assert path.is_file()
    with Image.open(path) as im:
        im.verify()                      # a readable, uncorrupted PNG
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_tutorial_prints_the_worked_example(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "tutorial.py"), "--out",
                           str(tmp_path), "--backend", "numpy"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[ 0  0  0  1  4 10 16 19 16 10  4  1  0  0]" in proc.stdout
    assert "-1020" in proc.stdout and "True" in proc.stdout


def test_shipped_photo_matches_its_generator():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from make_photo import draw_photo
    finally:
        sys.path.remove(str(EXAMPLES))
    import numpy as np

    with Image.open(EXAMPLES / "data" / "photo.png") as im:
        shipped = np.asarray(im)
    drawn = draw_photo()
    assert shipped.shape == drawn.shape and shipped.dtype == drawn.dtype == np.uint8
    # the same scene; only the random sensor noise may differ between NumPy versions
    assert np.abs(shipped.astype(int) - drawn.astype(int)).mean() < 8


@pytest.mark.parametrize("out", ["photos/", "photos", "existing"])
def test_make_photo_accepts_a_folder(tmp_path, out):
    (tmp_path / "existing").mkdir()
    proc = subprocess.run([sys.executable, str(EXAMPLES / "make_photo.py"), "--out", out],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = tmp_path / out / "photo.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (224, 160)
    assert str(Path(out) / "photo.png") in proc.stdout


def test_make_photo_accepts_a_file_name(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "make_photo.py"), "--out",
                           str(tmp_path / "new" / "scene.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "new" / "scene.png").is_file()


def test_huge_image_default_run_is_small(tmp_path):
    out = tmp_path / "huge"
    out.mkdir()
    (out / "unrelated.txt").write_text("kept")          # the script clears only its stores
    proc = subprocess.run([sys.executable, str(EXAMPLES / "huge_image.py"), "--out", str(out),
                           "--backend", "numpy"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    planned = float(re.search(r"needs up to (\d+) MB of disk", proc.stdout).group(1))
    assert planned < 100, proc.stdout                   # input + output, before cleanup
    left = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert left < 100 * 2**20
    assert (out / "output.zarr").is_dir() and not (out / "input.zarr").exists()
    assert (out / "unrelated.txt").read_text() == "kept"
    assert re.search(r"wrote .*output\.zarr \(\d+ MB on disk", proc.stdout)
    assert "corner tile matches" in proc.stdout


def test_huge_image_big_run_needs_the_flag(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "huge_image.py"), "--out",
                           str(tmp_path / "huge"), "--budget-mb", "4096"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--big" in proc.stderr
    assert not (tmp_path / "huge" / "input.zarr").exists()
