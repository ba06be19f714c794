"""Every example in examples/ runs to completion and writes a valid image."""

from __future__ import annotations

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
