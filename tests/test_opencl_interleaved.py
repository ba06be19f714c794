"""The interleaved path: channels-last depthwise 2-D convolutions whose channels share
one kernel (filter2d on RGB images) run over each row's pixels x channels as one line
of conv_rows.cl (CI), borders mapped per pixel. Checked against the NumPy oracle
for every border mode, padding, dilation, H stride, dtype and flip, plus what it
declines and where it is the default."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import clconv
from clconv import testing
from clconv._normalize import normalize_conv
from clconv.backends.opencl import paths


def assert_close(y, ref, dtype, reduction):
    testing.assert_close(y, ref, dtype=dtype, reduction=reduction, check_dtype=False)


def _spy(monkeypatch):
    """Record (kernel, CI or None) of every launch the backend plans from now on."""
    from clconv.backends.opencl import backend

    steps = []
    real = backend.run

    def run(dctx, queue, plan, bound, allocate):
        for step in plan.steps:
            steps.append((step.kernel, dict(step.program.defines).get("CI")))
        return real(dctx, queue, plan, bound, allocate)

    monkeypatch.setattr(backend, "run", run)
    return steps


def _shared(rng, c, kernel, dtype=np.float32):
    """A depthwise weight (C, 1, kH, kW) whose channels share one kernel."""
    k = rng.standard_normal(kernel).astype(dtype)
    return np.ascontiguousarray(np.broadcast_to(k, (c, 1, *kernel)))


CASES = [  # (image (N, H, W, C), kernel, conv2d keywords, dtype)
    ((1, 9, 13, 3), (3, 3), {"padding": 1, "padding_mode": "reflect"}, "float32"),
    ((2, 12, 40, 3), (5, 5), {"padding": "same", "padding_mode": "replicate"}, "float32"),
    ((1, 10, 11, 4), (3, 2), {"padding": ((1, 1), (0, 1)), "padding_mode": "circular"},
     "float32"),
    ((1, 8, 30, 2), (3, 3), {"padding": 2, "dilation": (1, 2), "padding_mode": "zeros"},
     "float64"),
    ((1, 15, 21, 3), (3, 3), {"padding": 1, "stride": (2, 1), "padding_mode": "reflect"},
     "uint8"),
    ((1, 7, 9, 3), (5, 3), {"padding": (2, 4), "padding_mode": "reflect"}, "float32"),
    ((1, 6, 70, 3), (1, 7), {"padding": "valid"}, "int16"),
    ((1, 9, 12, 3), (3, 3), {"padding": 1, "padding_mode": "zeros"}, "float16"),
]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize(("shape", "kernel", "kw", "dtype"), CASES)
def test_interleaved_path_equals_oracle(cl_backend, monkeypatch, rng, shape, kernel, kw, dtype,
                                        flip):
    """Forced, the path runs one conv_rows launch with CI = C over the image in place
    (no pad pass) and gives the oracle's numbers."""
    steps = _spy(monkeypatch)
    c = shape[-1]
    x = (rng.integers(0, 200, shape) if dtype in ("uint8", "int16")
         else rng.standard_normal(shape) * 3).astype(dtype)
    wdtype = {"float64": np.float64, "float16": np.float16}.get(dtype, np.float32)
    w = _shared(rng, c, kernel, wdtype)
    if dtype == "float64" and not clconv.get_backend(cl_backend).dctx.info.fp64:
        x, w, wdtype = x.astype(np.float32), w.astype(np.float32), np.float32
    before = x.copy()
    with paths.override("interleaved"):
        y = clconv.conv2d(x, w, groups=c, flip=flip, data_format="channels_last",
                          backend=cl_backend, **kw)
    assert steps == [("conv_rows", c)]
    ref = testing.oracle(clconv.conv2d, x, w, None, groups=c, flip=flip,
                         data_format="channels_last", **kw)
    scale = 1 + np.abs(ref).max()
    assert_close(y / scale, ref / scale, np.dtype(wdtype), kernel[0] * kernel[1])
    assert (x == before).all()


@pytest.mark.parametrize(("width", "c", "mode"), [
    (30, 3, "zeros"), (29, 3, "reflect"), (31, 4, "symmetric"), (27, 3, "circular"),
    (33, 3, "replicate"), (35, 2, "reflect")])
def test_edge_blocks_map_borders_by_pixel(cl_backend, monkeypatch, rng, width, c, mode):
    """Rows long enough for the edge blocks (EDGE: border positions fixed at build
    time, the last block aligned to the row's end) map every border read by pixel
    and keep its channel, in every mode, with overhangs of 0 to 2 pixels."""
    from test_opencl import spy_defines

    from clconv.backends.opencl.paths import rows as rows_module

    steps = _spy(monkeypatch)
    defines = spy_defines(monkeypatch, rows_module)
    # Edge blocks are built where the rows are not gathered first (PREFILL).
    monkeypatch.setattr(rows_module.RowsPath, "PREFILL_MAX", 0)
    x = (rng.standard_normal((2, 6, width, c)) * 3).astype(np.float32)
    w = _shared(rng, c, (3, 3))
    kw = dict(groups=c, padding=1, padding_mode=mode, data_format="channels_last")
    with paths.override("interleaved"):
        y = clconv.conv2d(x, w, backend=cl_backend, **kw)
    assert steps == [("conv_rows", c)] and [d.get("EDGE") for d in defines] == [1]
    ref = testing.oracle(clconv.conv2d, x, w, None, **kw)
    scale = 1 + np.abs(ref).max()
    assert_close(y / scale, ref / scale, np.dtype(np.float32), 9)


def test_filter2d_on_rgb_takes_it_by_default(cl_backend, monkeypatch, rng):
    """filter2d on an RGB photo (uint8 in, saturated uint8 out): one conv_rows launch
    with CI = 3 that reads the uint8 image and stores the uint8 result (OUT_SAT), no
    pad pass and no separate saturation; the numbers are the NumPy backend's, also
    for float images with NaN, infinities, ties and values out of range."""
    steps = _spy(monkeypatch)
    photo = rng.integers(0, 256, (64, 96, 3)).astype(np.uint8)
    sharpen = clconv.kernels.get("sharpen")
    before = photo.copy()
    got = clconv.filter2d(photo, sharpen, dtype="same", backend=cl_backend)
    want = clconv.filter2d(photo, sharpen, dtype="same", backend="numpy")
    assert steps == [("conv_rows", 3)]
    assert got.dtype == np.uint8 and (photo == before).all()
    np.testing.assert_array_equal(got, want)
    odd = rng.standard_normal((40, 70, 3)).astype(np.float32) * 200
    odd[::7, ::5] = np.nan
    odd[3, :, 1] = np.inf
    odd[5, :, 2] = -np.inf
    odd[9, 10:20] = 2.5  # a tie once filtered by the identity
    identity = np.zeros((3, 3), np.float32)
    identity[1, 1] = 1
    for kernel in (identity, sharpen):
        for dtype in (np.uint8, np.int16, np.uint16):
            steps.clear()
            got = clconv.filter2d(odd, kernel, dtype=dtype, backend=cl_backend)
            want = clconv.filter2d(odd, kernel, dtype=dtype, backend="numpy")
            assert steps == [("conv_rows", 3)] and got.dtype == dtype
            np.testing.assert_array_equal(got, want)


def test_it_declines_what_it_cannot_run(cl_backend, monkeypatch, rng):
    """Channels with different kernels, a bias, channels-first data or device weights
    take the rows path (no CI); a strided layout runs the rows path's plan with the
    same packed weights. Every result equals the oracle."""
    steps = _spy(monkeypatch)
    x = rng.standard_normal((1, 11, 17, 3)).astype(np.float32)
    shared = _shared(rng, 3, (3, 3))
    mixed = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    be = clconv.get_backend(cl_backend)
    for w, b, data in ((mixed, None, x), (shared, bias, x),
                       (shared, None, np.ascontiguousarray(np.moveaxis(x, -1, 1)))):
        last = data is x
        kw = dict(groups=3, padding=1, padding_mode="reflect",
                  data_format="channels_last" if last else "channels_first")
        steps.clear()
        y = clconv.conv2d(data, w, b, backend=cl_backend, **kw)
        assert all(ci is None for _, ci in steps)
        assert_close(y, testing.oracle(clconv.conv2d, data, w, b, **kw), np.float32, 9)
    # Device weights are not compared on the host: declined as well.
    steps.clear()
    y = clconv.conv2d(x, be.to_device(shared), groups=3, padding=1,
                      data_format="channels_last", backend=cl_backend)
    assert all(ci is None for _, ci in steps)
    # A device image strided along W (every other pixel): the rows plan, same numbers.
    wide = be.to_device(rng.standard_normal((1, 11, 34, 3)).astype(np.float32))
    steps.clear()
    with paths.override("interleaved"):
        y = clconv.conv2d(wide[:, :, ::2], shared, groups=3, padding=1,
                          data_format="channels_last", backend=cl_backend)
    assert all(ci is None for _, ci in steps)
    ref = testing.oracle(clconv.conv2d, wide.get()[:, :, ::2], shared, None, groups=3,
                         padding=1, data_format="channels_last")
    assert_close(y.get(), ref, np.float32, 9)
    spec = normalize_conv(2, x, shared, bias, 1, 1, 1, 3, "zeros", "channels_last",
                          False).spec
    assert not paths.PATHS["interleaved"].supports(spec, be.dctx.limits())


@st.composite
def _cases(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h = draw(st.integers(1, 12)) + (kh - 1) * dh
    w = draw(st.integers(1, 40)) + (kw - 1) * dw
    pad = st.tuples(st.integers(0, 4), st.integers(0, 4))
    return dict(shape=(draw(st.integers(1, 2)), h, w, draw(st.integers(2, 5))),
                kernel=(kh, kw), stride=(draw(st.integers(1, 3)), 1), dilation=(dh, dw),
                padding=draw(st.one_of(st.just("valid"), st.tuples(pad, pad))),
                padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate",
                                                   "circular"])),
                flip=draw(st.booleans()))


@given(case=_cases(), seed=st.integers(0, 2**16))
def test_interleaved_path_hypothesis(cl_backend, case, seed):
    """Random shared-kernel depthwise convolutions of channels-last images take the
    path and equal the oracle."""
    rng = np.random.default_rng(seed)
    c = case["shape"][-1]
    x = rng.standard_normal(case["shape"]).astype(np.float32)
    w = _shared(rng, c, case["kernel"])
    kw = dict(stride=case["stride"], dilation=case["dilation"], padding=case["padding"],
              padding_mode=case["padding_mode"], groups=c, flip=case["flip"],
              data_format="channels_last")
    spec = normalize_conv(2, x, w, None, kw["stride"], kw["padding"], kw["dilation"], c,
                          kw["padding_mode"], "channels_last", kw["flip"]).spec
    be = clconv.get_backend(cl_backend)
    assert paths.PATHS["interleaved"].supports(spec, be.dctx.limits())
    with paths.override("interleaved"):
        y = clconv.conv2d(x, w, backend=cl_backend, **kw)
    ref = testing.oracle(clconv.conv2d, x, w, None, **kw)
    scale = 1 + np.abs(ref).max()
    assert_close(y / scale, ref / scale, np.float32, case["kernel"][0] * case["kernel"][1])


SEPARABLE_CASES = [  # (image (N, H, W, C), (kH, kW), conv2d keywords, dtype)
    ((1, 20, 33, 3), (5, 7), {"padding": "same", "padding_mode": "reflect"}, "float32"),
    ((2, 18, 25, 4), (4, 3), {"padding": ((2, 1), (1, 1)), "padding_mode": "circular"},
     "float32"),
    ((1, 21, 30, 3), (3, 5), {"padding": 3, "padding_mode": "replicate", "stride": (2, 1),
                              "dilation": (2, 2)}, "uint8"),
    ((1, 16, 19, 2), (5, 5), {"padding": 2, "padding_mode": "zeros"}, "float64"),
]


@pytest.mark.parametrize(("shape", "kernel", "kw", "dtype"), SEPARABLE_CASES)
def test_separable_interleaved_path_equals_oracle(cl_backend, monkeypatch, rng, shape, kernel,
                                                  kw, dtype):
    """Forced, a shared rank-1 kernel runs as a column pass and a row pass, both with
    CI = C and no pad pass, and gives the oracle's numbers."""
    steps = _spy(monkeypatch)
    c = shape[-1]
    x = (rng.integers(0, 256, shape) if dtype == "uint8"
         else rng.standard_normal(shape) * 3).astype(dtype)
    if dtype == "float64" and not clconv.get_backend(cl_backend).dctx.info.fp64:
        x = x.astype(np.float32)
    wdtype = np.float64 if x.dtype == np.float64 else np.float32
    k = np.outer(rng.standard_normal(kernel[0]), rng.standard_normal(kernel[1]))
    w = np.ascontiguousarray(np.broadcast_to(k, (c, 1, *kernel))).astype(wdtype)
    with paths.override("separable_interleaved"):
        y = clconv.conv2d(x, w, groups=c, data_format="channels_last", backend=cl_backend,
                          **kw)
    assert steps == [("conv_rows", c), ("conv_rows", c)]
    ref = testing.oracle(clconv.conv2d, x, w, None, groups=c, data_format="channels_last",
                         **kw)
    scale = 1 + np.abs(ref).max()
    assert_close(y / scale, ref / scale, np.dtype(wdtype), kernel[0] * kernel[1])


def test_gaussian_blur_of_an_rgb_photo_takes_it_by_default(cl_backend, monkeypatch, rng):
    """At the real thresholds (>= 121 taps, >= 2^18 outputs) a Gaussian of an RGB photo
    runs the two interleaved passes; channels with different kernels fall back to the
    separable path's planes, with the same numbers as the NumPy backend."""
    steps = _spy(monkeypatch)
    photo = rng.random((160, 600, 3)).astype(np.float32)
    got = clconv.filter2d(photo, "gaussian", size=13, sigma=2, backend=cl_backend)
    assert steps == [("conv_rows", 3), ("conv_rows", 3)]
    want = clconv.filter2d(photo, "gaussian", size=13, sigma=2, backend="numpy")
    assert_close(got, want, np.float32, 26)
    g = clconv.kernels.get("gaussian", size=13, sigma=2)
    w = np.stack([g, 2 * g, g])[:, None].astype(np.float32)  # rank 1, channels differ
    steps.clear()
    got = clconv.conv2d(photo[None], w, groups=3, padding="same", padding_mode="reflect",
                        data_format="channels_last", backend=cl_backend)
    assert all(ci is None for _, ci in steps) and len(steps) >= 2
    want = testing.oracle(clconv.conv2d, photo[None], w, None, groups=3, padding="same",
                          padding_mode="reflect", data_format="channels_last")
    assert_close(got, want, np.float32, 26)


def test_interleaved_path_with_tiling(cl_backend, monkeypatch, rng):
    """Pieces of a tiled host call (CLCONV_MAX_ALLOC) each run interleaved, with the
    border rows of every piece, and the stitched result equals the oracle."""
    steps = _spy(monkeypatch)
    x = rng.standard_normal((2, 50, 60, 3)).astype(np.float32)
    w = _shared(rng, 3, (5, 3))
    monkeypatch.setenv("CLCONV_MAX_ALLOC", "16000")
    y = clconv.conv2d(x, w, groups=3, padding=(2, 1), padding_mode="reflect",
                      data_format="channels_last", backend=cl_backend)
    assert len(steps) > 2 and set(steps) == {("conv_rows", 3)}
    ref = testing.oracle(clconv.conv2d, x, w, None, groups=3, padding=(2, 1),
                         padding_mode="reflect", data_format="channels_last")
    assert_close(y, ref, np.float32, 15)


def test_gaussian_blur_to_uint8_stores_the_second_pass_saturated(cl_backend, monkeypatch,
                                                                 rng):
    """A uint8 photo blurred to uint8: the two interleaved passes read the uint8 image
    and store the uint8 result (no saturation kernel), equal to the float result of
    the same passes rounded and saturated on the host."""
    from clconv.filters import saturate_host

    steps = _spy(monkeypatch)
    photo = rng.integers(0, 256, (160, 600, 3)).astype(np.uint8)
    got = clconv.filter2d(photo, "gaussian", size=13, sigma=2, dtype="same",
                          backend=cl_backend)
    assert steps == [("conv_rows", 3), ("conv_rows", 3)] and got.dtype == np.uint8
    floats = clconv.filter2d(photo, "gaussian", size=13, sigma=2, backend=cl_backend)
    np.testing.assert_array_equal(got, saturate_host(floats, np.dtype(np.uint8)))


@pytest.mark.parametrize(("size", "layout"), [(41, "rgb"), (41, "grey"), (65, "rgb")])
def test_tall_gaussians_run_as_row_passes(cl_backend, monkeypatch, rng, size, layout):
    """Separable kernels taller than 32 rows (OpenCV's own size for a float
    GaussianBlur of sigma 5 is 41) on an image large enough for the separable
    paths run as a column and a row pass of the rows kernel (interleaved on
    RGB) and give the NumPy backend's numbers."""
    steps = _spy(monkeypatch)
    shape = (300, 320, 3) if layout == "rgb" else (520, 512)
    photo = rng.random(shape).astype(np.float32)
    gauss = clconv.kernels.get("gaussian", size=size, sigma=size / 8)
    got = clconv.filter2d(photo, gauss, backend=cl_backend)
    want = clconv.filter2d(photo, gauss, backend="numpy")
    kernels = [s[0] for s in steps]
    assert kernels.count("conv_rows") == 2 and "conv_direct" not in kernels, steps
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_tall_depthwise_kernels_take_the_rows_path(cl_backend, monkeypatch, rng, mode):
    """Depthwise kernels taller than 32 rows (not separable) run on the rows
    kernel, whose rows loop is then not unrolled, in every border mode, on RGB
    photos too (interleaved)."""
    steps = _spy(monkeypatch)
    x = rng.standard_normal((2, 3, 45, 40)).astype(np.float32)
    w = rng.standard_normal((3, 1, 37, 5)).astype(np.float32)
    kw = dict(groups=3, padding=(18, 2), padding_mode=mode)
    y = clconv.conv2d(x, w, backend=cl_backend, **kw)
    assert steps[-1][0] == "conv_rows", steps
    assert_close(y, testing.oracle(clconv.conv2d, x, w, None, **kw), np.dtype(np.float32),
                 37 * 5)
    del steps[:]
    photo = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    shared = np.ascontiguousarray(np.broadcast_to(w[:1], w.shape))
    kw["data_format"] = "channels_last"
    y = clconv.conv2d(photo, shared, backend=cl_backend, **kw)
    assert steps == [("conv_rows", 3)], steps
    assert_close(y, testing.oracle(clconv.conv2d, photo, shared, None, **kw),
                 np.dtype(np.float32), 37 * 5)
