"""filter2d and clconv.kernels (API.md section 3) on every backend.

The oracle is ``scipy.ndimage.correlate`` in float64 with the border mode
that means the same thing: reflect -> 'mirror', replicate -> 'nearest',
circular -> 'wrap', zeros -> 'constant'.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tolerance
from scipy import ndimage

import clconv
import clconv.filters as filters_mod

NDIMAGE_MODE = {"reflect": "mirror", "replicate": "nearest", "circular": "wrap",
                "zeros": "constant"}
PADDING_MODES = list(NDIMAGE_MODE)
SEPARABLE = ["box", "gaussian", "sobel_x", "sobel_y", "prewitt_x", "prewitt_y"]

API_MATRICES = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "prewitt_x": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
}


def oracle(image: np.ndarray, kernel: np.ndarray, padding_mode: str = "reflect",
           flip: bool = False) -> np.ndarray:
    """scipy.ndimage per channel in float64, 'same' alignment of API.md (odd pixel after)."""
    k = np.asarray(kernel, dtype=np.float64)
    origin = [(n - 1) // 2 - n // 2 for n in k.shape]   # -1 on even axes, else 0
    op = ndimage.convolve if flip else ndimage.correlate
    if flip:
        origin = [-o for o in origin]
    img = np.asarray(image, dtype=np.float64)
    planes = img[..., None] if img.ndim == 2 else img
    out = np.stack([op(planes[..., c], k, mode=NDIMAGE_MODE[padding_mode], origin=origin)
                    for c in range(planes.shape[-1])], axis=-1)
    return out[..., 0] if img.ndim == 2 else out


def check_close(actual, expected, kernel, scale: float = 1.0) -> None:
    tol = tolerance(np.float32, int(np.asarray(kernel).size))
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"],
                               atol=tol["atol"] * scale * float(np.abs(kernel).sum()))


@pytest.fixture
def grey(rng) -> np.ndarray:
    return rng.random((17, 13)).astype(np.float32)


@pytest.fixture
def rgb(rng) -> np.ndarray:
    return rng.random((15, 18, 3)).astype(np.float32)


# ---------------------------------------------------------------- kernels

def test_kernel_names_and_matrices():
    names = clconv.kernels.names()
    assert set(names) >= {"identity", "box", "gaussian", "sharpen", "laplacian", "sobel_x",
                          "sobel_y", "prewitt_x", "prewitt_y", "emboss"}
    for name, matrix in API_MATRICES.items():
        k = clconv.kernels.get(name)
        assert k.dtype == np.float32
        np.testing.assert_array_equal(k, np.array(matrix, dtype=np.float32))
    np.testing.assert_array_equal(clconv.kernels.get("sobel_y"), clconv.kernels.get("sobel_x").T)
    np.testing.assert_array_equal(clconv.kernels.get("prewitt_y"),
                                  clconv.kernels.get("prewitt_x").T)


def test_box_and_gaussian():
    assert clconv.kernels.get("box").shape == (3, 3)
    box5 = clconv.kernels.get("box", size=5)
    assert box5.dtype == np.float32 and box5.shape == (5, 5)
    np.testing.assert_allclose(box5, 1 / 25, rtol=1e-7)
    g = clconv.kernels.get("gaussian")
    assert g.shape == (5, 5) and g.dtype == np.float32
    assert abs(float(g.sum(dtype=np.float64)) - 1) < 1e-6
    np.testing.assert_allclose(g, g.T)
    np.testing.assert_allclose(g, g[::-1, ::-1])
    assert np.unravel_index(np.argmax(g), g.shape) == (2, 2)
    g2 = clconv.kernels.get("gaussian", size=7, sigma=2.0)
    assert g2.shape == (7, 7) and abs(float(g2.sum(dtype=np.float64)) - 1) < 1e-6
    x = np.arange(7) - 3.0
    expected = np.outer(np.exp(-x**2 / 8), np.exp(-x**2 / 8))
    np.testing.assert_allclose(g2, expected / expected.sum(), rtol=1e-6)


def test_kernels_are_fresh_copies():
    k = clconv.kernels.get("sobel_x")
    k[:] = 0
    assert clconv.kernels.get("sobel_x")[0, 0] == -1


@pytest.mark.parametrize("call", [
    lambda: clconv.kernels.get("nope"),
    lambda: clconv.kernels.get("sobel_x", size=3),
    lambda: clconv.kernels.get("box", size=0),
    lambda: clconv.kernels.get("gaussian", sigma=0),
    lambda: clconv.kernels.get("gaussian", sigma=float("nan")),
])
def test_kernel_errors(call):
    with pytest.raises(clconv.ArgumentError):
        call()


def test_unknown_kernel_lists_names():
    with pytest.raises(clconv.ArgumentError) as info:
        clconv.kernels.get("blur")
    for name in clconv.kernels.names():
        assert name in str(info.value)


# ---------------------------------------------------------------- filter2d vs SciPy

@pytest.mark.parametrize("name", clconv.kernels.names())
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_every_kernel_grey_and_rgb_vs_ndimage(backend, name, padding_mode, grey, rgb):
    k = clconv.kernels.get(name)
    for image in (grey, rgb):
        y = clconv.filter2d(image, k, padding_mode=padding_mode, backend=backend)
        assert y.shape == image.shape and y.dtype == np.float32
        check_close(y, oracle(image, k, padding_mode), k)


@pytest.mark.parametrize("name", clconv.kernels.names())
def test_every_kernel_vs_numpy_backend(backend, name, rgb):
    image = (rgb * 255).astype(np.uint8)
    k = clconv.kernels.get(name)
    y = clconv.filter2d(image, k, backend=backend)
    ref = clconv.filter2d(image, k, backend="numpy")
    assert y.dtype == ref.dtype == np.float32
    check_close(y, ref, k, scale=255)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_flip_is_true_convolution(backend, padding_mode, rgb):
    k = clconv.kernels.get("emboss")
    y = clconv.filter2d(rgb, k, padding_mode=padding_mode, flip=True, backend=backend)
    check_close(y, oracle(rgb, k, padding_mode, flip=True), k)
    y2 = clconv.filter2d(rgb, k[::-1, ::-1], padding_mode=padding_mode, backend=backend)
    check_close(y, y2, k)


def test_even_and_rectangular_kernels(backend, grey, rng):
    for shape in [(4, 4), (2, 5), (3, 6)]:
        k = rng.standard_normal(shape).astype(np.float32)
        y = clconv.filter2d(grey, k, padding_mode="replicate", backend=backend)
        assert y.shape == grey.shape
        check_close(y, oracle(grey, k, "replicate"), k)


def test_stride_and_padding_forms(backend, rgb):
    k = clconv.kernels.get("sobel_y")
    full = clconv.filter2d(rgb, k, backend=backend)
    strided = clconv.filter2d(rgb, k, stride=2, padding=1, backend=backend)
    check_close(strided, full[::2, ::2], k)
    assert clconv.filter2d(rgb, k, stride=(2, 3), backend=backend).shape == (8, 6, 3)
    assert clconv.filter2d(rgb, k, padding="valid", backend=backend).shape == (13, 16, 3)
    assert clconv.filter2d(rgb, k, padding="full", padding_mode="zeros",
                           backend=backend).shape == (17, 20, 3)
    y = clconv.filter2d(rgb, k, padding=((0, 2), 1), padding_mode="zeros", backend=backend)
    expected = clconv.conv2d(np.moveaxis(rgb, -1, 0)[:, None], k[None, None],
                             padding=((0, 2), 1), backend="numpy")[:, 0]
    check_close(y, np.moveaxis(expected, 0, -1), k)


def test_dtypes(backend, grey):
    k = clconv.kernels.get("laplacian")
    u8 = (grey * 255).astype(np.uint8)
    y = clconv.filter2d(u8, k, backend=backend)
    assert y.dtype == np.float32
    check_close(y, oracle(u8, k), k, scale=255)
    u16 = (grey * 65535).astype(np.uint16)
    assert clconv.filter2d(u16, k, backend=backend).dtype == np.float32
    assert clconv.filter2d(grey.astype(np.float16), k, backend=backend).dtype == np.float16
    assert clconv.filter2d(grey.astype(bool), k, backend=backend).dtype == np.float32


def test_float64(backend, grey):
    if backend != "numpy" and not any(d.backend == backend and d.fp64 for d in clconv.devices()):
        with pytest.raises(clconv.BackendUnavailable):
            clconv.filter2d(grey.astype(np.float64), "sobel_x", backend=backend)
        return
    g = grey.astype(np.float64)
    k = clconv.kernels.get("gaussian", size=7, sigma=1.5)
    y = clconv.filter2d(g, k, backend=backend)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, oracle(g, k), rtol=1e-12, atol=1e-12)


def test_kernel_by_name_and_input_untouched(backend, rgb):
    before = rgb.copy()
    y = clconv.filter2d(rgb, "sharpen", backend=backend)
    np.testing.assert_array_equal(rgb, before)
    check_close(y, oracle(rgb, clconv.kernels.get("sharpen")), clconv.kernels.get("sharpen"))


def test_non_contiguous_image(backend, rgb):
    view = rgb[::-1, ::2]
    k = clconv.kernels.get("prewitt_x")
    check_close(clconv.filter2d(view, k, backend=backend), oracle(view, k), k)


def test_nan_propagates_locally(backend, grey):
    img = grey.copy()
    img[8, 6] = np.nan
    y = clconv.filter2d(img, "box", padding_mode="zeros", backend=backend)
    assert np.isnan(y[7:10, 5:8]).all()
    assert np.isfinite(y).sum() == y.size - 9


# ---------------------------------------------------------------- two-pass path

@pytest.mark.parametrize("name", SEPARABLE)
def test_named_separable_kernels_are_rank1(name):
    k = clconv.kernels.get(name)
    factors = filters_mod.rank1_factors(k)
    assert factors is not None
    np.testing.assert_allclose(np.outer(*factors), k, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["sharpen", "laplacian", "emboss"])
def test_other_kernels_are_not_rank1(name):
    assert filters_mod.rank1_factors(clconv.kernels.get(name)) is None


@pytest.mark.parametrize("name,params", [("box", {"size": 7}), ("gaussian", {}),
                                         ("gaussian", {"size": 9, "sigma": 2.0}),
                                         ("sobel_x", {}), ("prewitt_y", {})])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_two_passes_give_the_same_numbers(backend, name, params, padding_mode, rgb,
                                          monkeypatch):
    k = clconv.kernels.get(name, **params)
    results = []
    be = clconv.get_backend(backend)
    for threshold in (None, 1):   # one pass, then two passes
        monkeypatch.setattr(be, "separable_min_taps", threshold, raising=False)
        for kwargs in ({}, {"stride": (2, 3), "padding": ((1, 3), 2)}, {"padding": "full"}):
            results.append(clconv.filter2d(rgb, k, padding_mode=padding_mode, flip=True,
                                           backend=backend, **kwargs))
    one, two = results[:3], results[3:]
    for a, b in zip(one, two):
        assert a.shape == b.shape and a.dtype == b.dtype
        check_close(b, a, k)
    check_close(one[0], oracle(rgb, k, padding_mode, flip=True), k)


def test_two_pass_calls_conv2d_twice(monkeypatch, grey):
    calls = []
    real = filters_mod.conv2d

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(filters_mod, "conv2d", spy)
    clconv.filter2d(grey, clconv.kernels.get("box", size=9), backend="numpy")
    assert calls == [(1, 1, 9, 1), (1, 1, 1, 9)]
    calls.clear()
    clconv.filter2d(grey, "sobel_x", backend="numpy")       # 3x3: one pass is as fast
    assert calls == [(1, 1, 3, 3)]
    calls.clear()
    clconv.filter2d(grey.astype(np.float16), clconv.kernels.get("box", size=9),
                    backend="numpy")                         # float16: never round twice
    assert calls == [(1, 1, 9, 9)]


# ---------------------------------------------------------------- device arrays

def test_device_array_in_device_array_out(cl_backend, rgb):
    dev = clconv.to_device(rgb, backend=cl_backend)
    y = clconv.filter2d(dev, "sobel_x", backend=cl_backend)
    assert type(y).__module__.startswith("pyopencl")
    check_close(y.get(), oracle(rgb, clconv.kernels.get("sobel_x")), clconv.kernels.get("sobel_x"))
    grey_dev = clconv.to_device(np.ascontiguousarray(rgb[..., 0]), backend=cl_backend)
    y = clconv.filter2d(grey_dev, clconv.kernels.get("box", size=9), backend=cl_backend)
    assert type(y).__module__.startswith("pyopencl") and y.shape == rgb.shape[:2]


def test_dask_image_gives_a_lazy_result(backend, rgb):
    import dask.array as da
    for image, k in ((rgb, "sobel_x"), (rgb[..., 0], clconv.kernels.get("box", size=9))):
        lazy = clconv.filter2d(da.from_array(image, chunks=8), k, backend=backend)
        assert isinstance(lazy, da.Array)
        check_close(np.asarray(lazy), clconv.filter2d(image, k, backend="numpy"),
                    clconv.kernels.get(k) if isinstance(k, str) else k)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("image,kernel,kwargs,error", [
    (np.zeros(5), "box", {}, clconv.ShapeError),
    (np.zeros((2, 2, 5, 5, 3)), "box", {}, clconv.ShapeError),   # a batch is 4-D at most
    (np.zeros((5, 5, 0)), "box", {}, clconv.ShapeError),
    (np.zeros((5, 5)), np.ones(3), {}, clconv.ShapeError),
    (np.zeros((5, 5)), np.ones((3, 3, 1)), {}, clconv.ShapeError),
    (np.zeros((5, 5)), np.ones((0, 3)), {}, clconv.ShapeError),
    (np.zeros((5, 5), dtype=complex), "box", {}, clconv.DTypeError),
    (np.zeros((5, 5)), "nope", {}, clconv.ArgumentError),
    (np.zeros((5, 5)), "box", {"padding_mode": "mirror"}, clconv.ArgumentError),
    (np.zeros((5, 5)), "box", {"padding": "half"}, clconv.ArgumentError),
    (np.zeros((5, 5)), "box", {"stride": 0}, clconv.ShapeError),
    (np.zeros((5, 5)), "box", {"flip": "yes"}, clconv.ArgumentError),
    (np.zeros((2, 2)), np.ones((5, 5)), {"padding": "valid"}, clconv.ShapeError),
])
def test_errors(image, kernel, kwargs, error):
    with pytest.raises(error):
        clconv.filter2d(image, kernel, backend="numpy", **kwargs)
