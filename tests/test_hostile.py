"""Hostile and careless use: inputs, settings and process tricks that must give a
clear error or the right numbers (never garbage, a raw exception, a hang or a
half-written file). Each test names the fault it reproduces."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import clconv
from clconv.backends.opencl import tuning as tunecache

# ------------------------------------------------------------------ byte order


@pytest.mark.parametrize("dtype", [">f2", ">f4", ">f8", ">i4", "<f4"])
def test_big_endian_inputs_give_the_right_numbers(backend, dtype):
    x = np.arange(64).astype(dtype).reshape(1, 1, 8, 8)
    w = np.ones((1, 1, 3, 3), dtype)
    if dtype == ">f8" and backend != "numpy" and not clconv.get_backend(backend).dctx.info.fp64:
        with pytest.raises(clconv.BackendUnavailable, match="fp64"):
            clconv.conv2d(x, w, backend=backend)
        return
    native = x.astype(x.dtype.newbyteorder("="))
    y = clconv.conv2d(x, w, backend=backend)
    assert y.dtype.isnative
    np.testing.assert_array_equal(y[0, 0, 0, :3], [81, 90, 99])
    np.testing.assert_array_equal(
        clconv.filter2d(x[0, 0], "box", backend=backend),
        clconv.filter2d(native[0, 0], "box", backend=backend))
    np.testing.assert_array_equal(
        clconv.correlate2d(x[0, 0], w[0, 0], mode="valid", backend=backend)[0, :3], [81, 90, 99])
    gy = np.ones((1, 1, 6, 6), dtype)
    _, gw, _ = clconv.conv_backward(x, w, gy, backend=backend)
    np.testing.assert_array_equal(np.asarray(gw).ravel()[:3], [810, 846, 882])
    assert x.dtype == np.dtype(dtype)  # the input is untouched


def test_to_device_converts_big_endian_data(cl_backend):
    xd = clconv.to_device(np.arange(5, dtype=">f4"), backend=cl_backend)
    assert xd.dtype == np.float32 and xd.dtype.isnative
    np.testing.assert_array_equal(xd.get(), [0, 1, 2, 3, 4])


# ------------------------------------------------------------------ memory


def test_a_process_memory_limit_gives_allocation_error_not_memory_error(cl_backend):
    """RLIMIT_AS below physical memory: the host result cannot be allocated."""
    code = f"""
    import resource, numpy as np, clconv
    be = clconv.get_backend({cl_backend!r})   # the runtime mapped before the limit
    with open("/proc/self/status") as fh:
        mapped = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + 3 * 2**30, resource.RLIM_INFINITY))
    try:
        clconv.conv2d(np.ones((1, 1, 8, 8), np.float32), np.ones((1, 1, 3, 3), np.float32),
                      padding=16000, backend={cl_backend!r})
    except Exception as exc:
        print(type(exc).__name__, isinstance(exc, MemoryError), exc)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("AllocationError True "), proc.stdout


def test_huge_kernel_sizes_are_refused_at_once():
    start = time.perf_counter()
    for name, params in (("box", {"size": 100000}), ("gaussian", {"size": 60000})):
        with pytest.raises(clconv.ArgumentError, match=r"size=\d+; expected an int from 1 to"):
            clconv.kernels.get(name, **params)
    with pytest.raises(clconv.AllocationError, match=r"weight \(1, 1, 60000, 60000\) needs"):
        clconv.Conv2d(1, 1, 60000)
    assert time.perf_counter() - start < 1


def test_cli_huge_size_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clconv", "filter", "x.png", "-k", "box",
                           "--size", "100000", "-o", str(tmp_path / "y.png")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "size=100000; expected an int from 1 to 4096" in proc.stderr


@pytest.mark.parametrize("value", ["inf", "1e400", "Infinity", "INF"])
def test_infinite_memory_settings_mean_no_limit(backend, monkeypatch, value):
    monkeypatch.setenv("CLCONV_MAX_HOST_BYTES", value)
    monkeypatch.setenv("CLCONV_MAX_ALLOC", value)
    y = clconv.conv2d(np.ones((1, 1, 8, 8), np.float32), np.ones((1, 1, 3, 3), np.float32),
                      backend=backend)
    assert float(y.sum()) == 324


@pytest.mark.parametrize("value", ["-inf", "nan", "0", "-5", "lots"])
def test_bad_memory_settings_are_a_clear_argument_error(backend, monkeypatch, value):
    for var in ("CLCONV_MAX_HOST_BYTES", "CLCONV_MAX_ALLOC"):
        with monkeypatch.context() as m:
            m.setenv(var, value)
            if var == "CLCONV_MAX_ALLOC" and backend == "numpy":
                continue  # a device setting: the NumPy backend never reads it
            with pytest.raises(clconv.ArgumentError, match=f"{var}='{value}'; expected a "
                                                           "positive number of bytes"):
                clconv.conv2d(np.ones((1, 1, 8, 8), np.float32),
                              np.ones((1, 1, 3, 3), np.float32), backend=backend)


# ------------------------------------------------------------------ the tune cache


@pytest.mark.parametrize("content", [
    bytes(range(256)) * 4,                                     # random bytes
    json.dumps({"format": 1, "devices": {}}).encode("utf-16"),  # UTF-16
    '{"format": 1, "devices": {"é": 1}}'.encode("latin-1"),    # Latin-1
    b"[" * 100000 + b"]" * 100000,                              # nested past the recursion limit
    b" " * (tunecache.MAX_BYTES + 1),                           # too large
], ids=["random-bytes", "utf-16", "latin-1", "deep-nesting", "too-large"])
def test_a_corrupt_tune_cache_is_ignored_with_one_warning(cl_backend, tmp_path, monkeypatch,
                                                         content):
    path = tmp_path / "tune.json"
    path.write_bytes(content)
    monkeypatch.setenv(tunecache.ENV, str(path))
    tunecache.forget()
    x = np.ones((1, 2, 9, 9), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = clconv.conv2d(x, w, backend=cl_backend)
        clconv.conv2d(x, w, backend=cl_backend)
    tunecache.forget()
    assert float(y[0, 0, 0, 0]) == 18
    tune_warnings = [c for c in caught if "tune cache" in str(c.message)]
    assert len(tune_warnings) == 1 and issubclass(tune_warnings[0].category, RuntimeWarning)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_a_special_file_as_tune_cache_is_never_read(cl_backend, tmp_path, monkeypatch, special):
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif special == "folder":
        path = tmp_path
    else:
        path = Path(special)
    monkeypatch.setenv(tunecache.ENV, str(path))
    tunecache.forget()
    done: list = []

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            done.append(clconv.conv2d(np.ones((1, 1, 5, 5), np.float32),
                                      np.ones((1, 1, 3, 3), np.float32), backend=cl_backend))

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(60)
    tunecache.forget()
    assert done and float(done[0].sum()) == 81


def test_concurrent_tune_cache_writers_keep_every_entry(tmp_path):
    path = tmp_path / "tune.json"
    code = f"""
    import os, sys, dataclasses
    os.environ["CLCONV_TUNE_CACHE"] = {str(path)!r}
    from clconv.backends.opencl import tuning as tunecache
    from clconv._normalize import normalize_conv
    import numpy as np

    class Ctx:   # the store needs only the device key and a way to forget the old entries
        tune_key = "dev" + sys.argv[1] + "|1"

        @staticmethod
        def forget_tuned():
            pass

    x, w = np.ones((1, 1, 8, 8), np.float32), np.ones((1, 1, 3, 3), np.float32)
    spec = normalize_conv(2, x, w, None, 1, 0, 1, 1, "zeros", "channels_first", False).spec
    for i in range(40):
        s = dataclasses.replace(spec, kernel_size=(i + 1, 3))
        tunecache.store(Ctx, s, {{"path": "direct", "params": {{}}}})
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(i)])
             for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    data = json.loads(path.read_text())["devices"]
    assert sorted(len(v) for v in data.values()) == [40, 40]


def test_tune_with_an_unwritable_cache_fails_before_tuning(tmp_path, monkeypatch, cl_backend):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(tunecache.ENV, str(blocker / "tune.json"))
    start = time.perf_counter()
    with pytest.raises(clconv.ArgumentError, match="cannot be written .*--no-store"):
        clconv.tune(case="depthwise", backend=cl_backend)
    assert time.perf_counter() - start < 2
    proc = subprocess.run([sys.executable, "-m", "clconv", "tune", "depthwise", "-b",
                           cl_backend], capture_output=True, text=True, timeout=60,
                          env={**os.environ, tunecache.ENV: str(blocker / "tune.json")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot be written" in proc.stderr and "unexpected" not in proc.stderr


# ------------------------------------------------------------------ device arrays and processes


def test_a_released_device_buffer_is_refused(cl_backend):
    xd = clconv.to_device(np.ones((1, 1, 8, 8), np.float32), backend=cl_backend)
    xd.base_data.release()
    with pytest.raises(clconv.ArgumentError, match="input is a device array whose buffer was "
                                                   "released"):
        clconv.conv2d(xd, np.ones((1, 1, 3, 3), np.float32), backend=cl_backend)
    wd = clconv.to_device(np.ones((1, 1, 3, 3), np.float32), backend=cl_backend)
    wd.base_data.release()
    with pytest.raises(clconv.ArgumentError, match="weight is a device array"):
        clconv.conv2d(np.ones((1, 1, 8, 8), np.float32), wd, backend=cl_backend)


FORK_SCRIPT = """
import multiprocessing as mp, numpy as np, clconv
x = np.ones((1, 1, 8, 8), np.float32)
w = np.ones((1, 1, 3, 3), np.float32)

def child(backend):
    try:
        return float(clconv.conv2d(x, w, backend=backend).sum())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

if __name__ == "__main__":
    print(float(clconv.conv2d(x, w, backend=BACKEND).sum()))
    with mp.get_context("fork").Pool(1) as pool:
        print(pool.apply(child, (BACKEND,)))
        print(pool.apply(child, ("numpy",)))
    with mp.get_context("spawn").Pool(1) as pool:
        print(pool.apply(child, (BACKEND,)))
"""


def test_a_forked_child_gets_a_clear_error_not_a_hang(cl_backend, tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT.replace("BACKEND", repr(cl_backend)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "324.0" and lines[2] == "324.0" and lines[3] == "324.0"
    assert lines[1].startswith("BackendUnavailable: OpenCL cannot be used in this process: "
                               "it was forked") and "'spawn'" in lines[1]


# ------------------------------------------------------------------ the command line


def _png_header_only(width: int, height: int, bit_depth: int, color_type: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("depth,color", [(8, 2), (16, 2), (8, 0)])
def test_cli_a_decompression_bomb_is_named_and_skipped(tmp_path, depth, color):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(folder / "a_good.png")
    (folder / "b_bomb.png").write_bytes(_png_header_only(100000, 100000, depth, color))
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(folder / "c_good.png")
    proc = subprocess.run([sys.executable, "-m", "clconv", "filter", str(folder), "-k", "box",
                           "-o", str(tmp_path / "out"), "-q", "-b", "numpy"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "b_bomb.png" in proc.stderr and "unexpected" not in proc.stderr
    assert "1 of 3 images failed" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_good.png", "c_good.png"]


def test_cli_interrupted_mid_folder_leaves_no_partial_image(tmp_path):
    """SIGINT while a folder is being written: every output is complete or absent."""
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray((rng.random((600, 800, 3)) * 255).astype(np.uint8)).save(
            folder / f"img{i:02d}.png")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "clconv", "filter", str(folder), "-k",
                             "gaussian", "--size", "9", "-o", str(out), "-q", "-b", "numpy"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    written = sorted(out.iterdir())
    assert written and all(not p.name.startswith(".") for p in written)
    for path in written:
        with Image.open(path) as im:
            im.load()               # a truncated PNG would raise here
            assert im.size == (800, 600)


def test_a_keras_weight_gets_the_transpose_in_its_shape_error():
    x = np.ones((1, 12, 12, 8), np.float32)
    hwio = np.ones((3, 3, 8, 16), np.float32)
    with pytest.raises(clconv.ShapeError, match=r"whatever data_format is: a Keras/TensorFlow "
                                                r"\(\*kernel, C, F\) weight needs "
                                                r"weight\.transpose\(3, 2, 0, 1\)"):
        clconv.conv2d(x, hwio, data_format="channels_last", backend="numpy")
    y = clconv.conv2d(x, hwio.transpose(3, 2, 0, 1), data_format="channels_last",
                      backend="numpy")
    assert y.shape == (1, 10, 10, 16) and float(y[0, 0, 0, 0]) == 72
