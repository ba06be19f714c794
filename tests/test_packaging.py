"""The wheel carries the OpenCL sources of ``kernels_cl/`` as ``clconv/kernels_cl``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel once (without build isolation when hatchling is importable)."""
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-build-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("clconv-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _sources() -> list[str]:
    """Every kernel source the repository has right now (README.md, *.cl and headers)."""
    folder = ROOT / "kernels_cl"
    names = ["README.md"] + sorted(p.name for p in folder.iterdir()
                                   if p.suffix in (".cl", ".h"))
    return names


def test_wheel_carries_kernel_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in _sources():
        assert f"clconv/kernels_cl/{name}" in names, (name, sorted(names))
        # (content is not compared byte for byte: kernels may be edited while this runs)
        assert zipfile.ZipFile(wheel).read(f"clconv/kernels_cl/{name}").strip()
    assert "clconv/__init__.py" in names
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_finds_its_sources(wheel, tmp_path):
    """Installed from the wheel (not the repository), clconv reads its own kernels_cl."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                           "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    code = (
        "import clconv, pathlib\n"
        "from clconv.backends.opencl.build import kernels_dir\n"
        "print(pathlib.Path(clconv.__file__).parent)\n"
        "print(kernels_dir())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    package, kernels = proc.stdout.split()
    assert Path(package) == target / "clconv"
    assert Path(kernels) == target / "clconv" / "kernels_cl"
    for name in _sources():
        assert (Path(kernels) / name).is_file()


def test_editable_install_finds_repository_sources():
    from clconv.backends.opencl.build import kernels_dir

    assert Path(kernels_dir()).resolve() == (ROOT / "kernels_cl").resolve()
