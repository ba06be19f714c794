"""filter2d as OpenCV users use it: cv2.filter2D itself as the oracle (8-bit, 16-bit
and float images, saturation, even kernels), photo batches, kernel parameters."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import clconv

cv2.setNumThreads(1)


@pytest.fixture
def photo():
    return (np.random.default_rng(0).random((37, 52, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("name", clconv.kernels.names())
def test_uint8_same_dtype_equals_cv2_filter2d(backend, photo, name):
    k = clconv.kernels.get(name)
    got = clconv.filter2d(photo, k, dtype="same", backend=backend)
    want = cv2.filter2D(photo, -1, k)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)


def test_saturation_rounding_and_nan(backend):
    """Round half to even, clamp into range, NaN to 0 (cv2's saturate_cast)."""
    img = np.array([[0.5, 1.5, 2.5, -3.0, 300.0, np.nan, -np.inf, np.inf]], np.float32)
    got = clconv.filter2d(img, np.ones((1, 1), np.float32), dtype=np.uint8, backend=backend)
    np.testing.assert_array_equal(got, [[0, 2, 2, 0, 255, 0, 0, 255]])
    got = clconv.filter2d(img, np.ones((1, 1), np.float32), dtype=np.int16, backend=backend)
    np.testing.assert_array_equal(got, [[0, 2, 2, -3, 300, 0, -32768, 32767]])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_saturation_of_each_narrow_type_in_whole_vectors_and_tails(backend, dtype):
    """Ties, both bounds +-0.5, infinities and NaN, in full 8-wide stores and a tail."""
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    edges = [lo - 0.5, lo + 0.5, hi - 0.5, hi + 0.5, -0.5, 0.5, 1.5, 2.5, -2.5, -3.5,
             np.nan, -np.inf, np.inf, 1e30, -1e30, 0.49999997, -1.5000001]
    row = np.array(edges * 3, np.float32)[:45]
    # An RGB image: its rows of 45 interleaved values are stored by the saturating
    # kernel itself as 5 vectors of 8 and a tail of 5.
    img = np.stack([row, row[::-1], np.roll(row, 3)]).reshape(3, 15, 3)
    got = clconv.filter2d(img, np.ones((1, 1), np.float32), dtype=dtype, backend=backend)
    want = np.clip(np.rint(np.where(np.isnan(img), 0, img)), lo, hi).astype(dtype)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int16])
def test_16_bit_and_float_images_equal_cv2(backend, dtype):
    rng = np.random.default_rng(1)
    scale = 65535 if dtype == np.uint16 else (3000 if dtype == np.int16 else 1)
    img = (rng.random((30, 41)) * scale).astype(dtype)
    k = clconv.kernels.get("sharpen")
    got = clconv.filter2d(img, k, dtype="same", backend=backend)
    want = cv2.filter2D(img, -1, k)
    assert got.dtype == np.dtype(dtype)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want)


def test_even_kernels_with_opencvs_anchor(backend, photo):
    k = np.random.default_rng(2).random((4, 6)).astype(np.float32) - 0.3
    got = clconv.filter2d(photo, k, dtype="same", padding=((2, 1), (3, 2)), backend=backend)
    np.testing.assert_array_equal(got, cv2.filter2D(photo, -1, k))


def test_a_batch_of_photos(backend, photo):
    batch = np.stack([photo, photo[::-1], 255 - photo])
    got = clconv.filter2d(batch, "gaussian", size=7, sigma=2.0, dtype="same", backend=backend)
    k = clconv.kernels.get("gaussian", size=7, sigma=2.0)
    assert got.shape == batch.shape and got.dtype == np.uint8
    for i in range(3):
        np.testing.assert_array_equal(got[i], cv2.filter2D(batch[i], -1, k))
    floats = clconv.filter2d(batch, "box", backend=backend)
    assert floats.dtype == np.float32 and floats.shape == batch.shape


def test_device_arrays_and_bad_arguments(backend, photo):
    if backend != "numpy":
        xd = clconv.to_device(photo, backend=backend)
        yd = clconv.filter2d(xd, "sharpen", dtype="same", backend=backend)
        assert type(yd).__module__.startswith("pyopencl") and yd.dtype == np.uint8
        np.testing.assert_array_equal(yd.get(), cv2.filter2D(photo, -1,
                                                             clconv.kernels.get("sharpen")))
    with pytest.raises(clconv.DTypeError, match="dtype='bool'"):
        clconv.filter2d(photo, "box", dtype="bool", backend=backend)
    with pytest.raises(clconv.ArgumentError, match=r"kernel parameters \['size'\]"):
        clconv.filter2d(photo, np.ones((3, 3)), size=3, backend=backend)
    with pytest.raises(clconv.ArgumentError, match="sigma"):
        clconv.filter2d(photo, "gaussian", sigma=-1, backend=backend)
    with pytest.raises(clconv.ShapeError, match=r"\(N, H, W, C\)"):
        clconv.filter2d(np.ones((1, 2, 3, 4, 5)), "box", backend=backend)
