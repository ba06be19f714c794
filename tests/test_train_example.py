"""examples/train_digits.py in reduced form: a few epochs, the loss falls.

Runs on every backend.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"
EPOCH_LINE = re.compile(
    r"epoch\s+(\d+)/(\d+)\s+loss ([\d.]+)\s+train_acc ([\d.]+)\s+test_acc ([\d.]+)\s+"
    r"time ([\d.]+) s")

import sklearn  # noqa: F401,E402  (the example needs scikit-learn: the dev extra)


@pytest.mark.timeout(90)
def test_train_digits_reduced(backend):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "3", "--backend", backend],
        capture_output=True, text=True, timeout=80)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [m.groups() for m in EPOCH_LINE.finditer(result.stdout)]
    assert [int(e[0]) for e in epochs] == [1, 2, 3], result.stdout
    losses = [float(e[2]) for e in epochs]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert float(epochs[-1][4]) >= 0.85, result.stdout  # test accuracy after 3 epochs
    assert f"backend {backend}" in result.stdout
    assert "final test accuracy" in result.stdout
