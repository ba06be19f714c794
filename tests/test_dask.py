"""Dask inputs (API.md section 8): lazy results equal to one-piece results."""

from __future__ import annotations

import dask.array as da
import distributed
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clconv

CONV = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}
MODES = ["zeros", "reflect", "replicate", "circular"]


@st.composite
def dask_cases(draw):
    nd = draw(st.integers(1, 3))
    size = tuple(draw(st.integers(3, 9)) for _ in range(nd))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = draw(st.one_of(
        st.sampled_from(["valid", "same", "full"]),
        st.tuples(*[st.tuples(st.integers(0, 7), st.integers(0, 7)) for _ in range(nd)])))
    mode = draw(st.sampled_from(MODES))
    flip = draw(st.booleans())
    last = draw(st.booleans())
    chunks = tuple(draw(st.integers(2, 5)) for _ in range(nd + 2))
    return nd, size, kernel, stride, dilation, padding, mode, flip, last, chunks


def _run(case, backend, rng):
    nd, size, kernel, stride, dilation, padding, mode, flip, last, chunks = case
    groups = 2
    x = rng.standard_normal((2, 4, *size)).astype(np.float32)
    w = rng.standard_normal((6, 2, *kernel)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    if last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                  padding_mode=mode, flip=flip,
                  data_format="channels_last" if last else "channels_first")
    try:
        expected = CONV[nd](x, w, b, backend="numpy", **kwargs)
    except clconv.ShapeError:
        with pytest.raises(clconv.ShapeError):
            CONV[nd](da.from_array(x, chunks=chunks), w, b, backend=backend, **kwargs)
        return
    lazy = CONV[nd](da.from_array(x, chunks=chunks), w, b, backend=backend, **kwargs)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    np.testing.assert_allclose(lazy.compute(scheduler="threads"), expected, rtol=2e-5, atol=2e-5)


@settings(max_examples=20)
@given(case=dask_cases())
def test_dask_matches_one_piece_numpy(case):
    _run(case, "numpy", np.random.default_rng(7))


@settings(max_examples=10)
@given(case=dask_cases())
def test_dask_matches_one_piece_every_backend(case, backend):
    _run(case, backend, np.random.default_rng(8))


def test_unbatched_uint8_image_channels_last(backend):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    lazy = clconv.conv2d(da.from_array(image, chunks=(8, 9, 1)), w, stride=2, padding="same",
                         padding_mode="reflect", data_format="channels_last", backend=backend)
    expected = clconv.conv2d(image, w, stride=2, padding="same", padding_mode="reflect",
                             data_format="channels_last", backend="numpy")
    assert lazy.shape == expected.shape == (12, 16, 5)
    assert lazy.dtype == np.float32
    assert lazy.chunks[-1] == (5,)
    np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-5, atol=1e-4)


def test_result_is_lazy_and_chunked():
    calls = []

    def factory(option):
        backend = clconv.get_backend("numpy")

        class Counting:
            name = "counting"

            def conv_forward(self, *args):
                calls.append(1)
                return backend.conv_forward(*args)

        return Counting()

    clconv.register_backend("counting", factory, replace=True)
    x = da.ones((1, 1, 40, 40), chunks=(1, 1, 10, 20), dtype=np.float32)
    w = np.ones((1, 1, 3, 3), dtype=np.float32)
    y = clconv.conv2d(x, w, padding=1, backend="counting")
    assert calls == []  # nothing ran yet
    assert y.numblocks == (1, 1, 4, 2)
    out = y.compute(scheduler="sync")
    assert len(calls) == 8
    assert out[0, 0, 0, 0] == 4 and out[0, 0, 5, 5] == 9


def test_bad_arguments_raise_eagerly():
    x = da.ones((1, 3, 8, 8), chunks=4)
    with pytest.raises(clconv.ShapeError, match="channels"):
        clconv.conv2d(x, np.ones((2, 2, 3, 3)))
    with pytest.raises(clconv.DTypeError):
        clconv.conv2d(da.ones((1, 1, 8, 8), dtype=complex, chunks=4), np.ones((1, 1, 3, 3)))


@pytest.mark.timeout(300)
def test_distributed_local_cluster(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 30, 26)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    expected = clconv.conv2d(x, w, padding=2, padding_mode="circular", backend="numpy")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            lazy = clconv.conv2d(da.from_array(x, chunks=(1, 3, 11, 13)), w, padding=2,
                                 padding_mode="circular", backend=backend)
            out = client.compute(lazy).result()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_output_chunks_follow_input_chunks_over_stride():
    x = da.ones((1, 2, 48, 40), chunks=(1, 2, 16, 8), dtype=np.float32)
    w = np.ones((3, 2, 3, 3), dtype=np.float32)
    assert clconv.conv2d(x, w, padding="same").chunks[2:] == ((16,) * 3, (8,) * 5)
    assert clconv.conv2d(x, w, padding="same", stride=2).chunks[2:] == ((8,) * 3, (4,) * 5)


def test_huge_image_example_stays_below_its_budget(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "huge_image.py"
    done = subprocess.run(
        [sys.executable, str(example), "--budget-mb", "192", "--chunk", "512",
         "--out", str(tmp_path / "huge"), "--backend", "numpy"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    peak, before, image = map(float, re.search(
        r"peak resident memory (\d+) MB \(before filtering (\d+) MB\); image (\d+) MB",
        done.stdout).groups())
    assert image > 192
    assert peak - before < 0.6 * image, done.stdout
    assert "corner tile matches" in done.stdout
    assert (tmp_path / "huge" / "output.zarr").exists()
