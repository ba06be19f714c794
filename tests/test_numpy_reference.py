"""The NumPy backend against independent references.

References: ``numpy.convolve``, ``scipy.signal.convolve2d`` /
``correlate2d``, ``numpy.pad`` (which defines the border rules), a naive
Python-loop convolution written here, and hand-worked examples from the
convolution tutorials the project grew from.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.signal

import clconv

NB = "numpy"
CONV = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}
NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
           "circular": "wrap"}


# ---------------------------------------------------------------- naive reference

def naive_pads(padding, size, kernel, stride, dilation) -> list[tuple[int, int]]:
    """(before, after) per axis, written out independently of clconv._normalize."""
    nd = len(size)
    if isinstance(padding, str):
        padding = padding.lower()
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            span = d * (k - 1) + 1
            if padding == "valid":
                pads.append((0, 0))
            elif padding == "full":
                pads.append((span - 1, span - 1))
            else:  # same, TensorFlow: out = ceil(n/s), odd pixel after
                out = (n + s - 1) // s
                total = max(0, (out - 1) * s + span - n)
                pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [tuple(p) if isinstance(p, (tuple, list)) else (p, p) for p in padding]


def naive_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
               padding_mode="zeros", flip=False) -> np.ndarray:
    """A float64 convolution over batched channels-first ``x`` with explicit loops."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nd = x.ndim - 2
    stride = (stride,) * nd if isinstance(stride, int) else tuple(stride)
    dilation = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    kernel = w.shape[2:]
    pads = naive_pads(padding, x.shape[2:], kernel, stride, dilation)
    xp = np.pad(x, [(0, 0), (0, 0), *pads], mode=NP_MODE[padding_mode])
    if flip:
        w = w[(Ellipsis, *[slice(None, None, -1)] * nd)]
    n_batch, channels = x.shape[:2]
    filters = w.shape[0]
    cg, fg = channels // groups, filters // groups
    out = [(xp.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
           for i in range(nd)]
    y = np.zeros((n_batch, filters, *out))
    for n in range(n_batch):
        for f in range(filters):
            g = f // fg
            for pos in itertools.product(*(range(o) for o in out)):
                # the receptive field of output ``pos``: kernel taps d apart from p*s
                window = tuple(slice(p * s, p * s + d * (k - 1) + 1, d)
                               for p, s, d, k in zip(pos, stride, dilation, kernel))
                field = xp[(n, slice(g * cg, (g + 1) * cg), *window)]
                total = float(np.sum(field * w[f]))
                y[(n, f, *pos)] = total + (0.0 if b is None else float(b[f]))
    return y


def test_naive_reference_hand_worked():
    """The naive reference itself on a case worked by hand.

    x = [1, 2, 3, 4], w = [1, 10], bias 100, padding (0, 1) zeros, stride 2:
    padded [1, 2, 3, 4, 0]; windows at 0 and 2: [1, 2] -> 1 + 20 + 100 = 121,
    [3, 4] -> 3 + 40 + 100 = 143.
    """
    y = naive_conv([[[1, 2, 3, 4]]], [[[1, 10]]], [100], stride=2, padding=[(0, 1)])
    np.testing.assert_array_equal(y, [[[121, 143]]])
    assert clconv.conv1d(np.array([[[1.0, 2, 3, 4]]]), np.array([[[1.0, 10]]]),
                         np.array([100.0]), stride=2, padding=((0, 1),),
                         backend=NB).tolist() == [[[121.0, 143.0]]]


# ---------------------------------------------------------------- grid vs naive

BASE = {1: dict(size=(7,), kernel=(3,)), 2: dict(size=(5, 6), kernel=(3, 2)),
        3: dict(size=(4, 3, 5), kernel=(2, 2, 3))}


def _grid() -> list[dict]:
    cases = []
    for nd in (1, 2, 3):
        base = dict(nd=nd, batch=2, channels=4, filters=4, groups=1, stride=1, padding=1,
                    dilation=1, padding_mode="zeros", flip=False, bias=True, **BASE[nd])
        size = BASE[nd]["size"]
        variants = [
            {}, dict(groups=2), dict(groups=4), dict(groups=4, filters=8),
            dict(groups=2, filters=6, bias=False), dict(channels=1, filters=2),
            dict(stride=2), dict(stride=tuple(range(1, nd + 1))), dict(dilation=2, padding=2),
            dict(dilation=tuple(range(nd, 0, -1)), padding="full"),
            dict(padding=0), dict(padding=tuple((i, 2 - i) for i in range(nd))),
            dict(padding=tuple(range(nd))), dict(padding="valid"), dict(padding="same"),
            dict(padding="same", stride=2), dict(padding="same", stride=3, dilation=2),
            dict(padding="full"), dict(padding="full", stride=2),
            dict(padding=tuple(n + 1 for n in size)), dict(flip=True),
            dict(flip=True, groups=2, padding="same"),
        ]
        for mode in ("reflect", "replicate", "circular"):
            variants += [dict(padding_mode=mode), dict(padding_mode=mode, padding="full"),
                         dict(padding_mode=mode, padding=tuple((n + 2, n) for n in size)),
                         dict(padding_mode=mode, stride=2, flip=True, groups=2)]
        for v in variants:
            cases.append({**base, **v})
    return cases


GRID = _grid()


def _ident(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items() if k not in ("size", "kernel")
                    ).replace(" ", "")


def _operands(c: dict, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c["batch"], c["channels"], *c["size"]))
    w = rng.standard_normal((c["filters"], c["channels"] // c["groups"], *c["kernel"]))
    b = rng.standard_normal(c["filters"]) if c["bias"] else None
    return x, w, b


def _kwargs(c: dict) -> dict:
    return {k: c[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode",
                              "flip")}


@pytest.mark.parametrize("case", GRID, ids=[_ident(c) for c in GRID])
def test_grid_against_naive(case):
    x, w, b = _operands(case)
    want = naive_conv(x, w, b, **_kwargs(case))
    got = CONV[case["nd"]](x, w, b, backend=NB, **_kwargs(case))
    assert got.dtype == np.float64
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_channels_last_and_unbatched_against_naive(nd):
    c = dict(nd=nd, batch=2, channels=3, filters=6, groups=3, bias=True, **BASE[nd])
    x, w, b = _operands(c)
    kw = dict(stride=2, padding="same", padding_mode="reflect")
    want = naive_conv(x, w, b, groups=3, **kw)
    conv = CONV[nd]
    x_last = np.moveaxis(x, 1, -1)
    got = conv(x_last, w, b, groups=3, data_format="channels_last", backend=NB, **kw)
    np.testing.assert_allclose(got, np.moveaxis(want, 1, -1), rtol=1e-12, atol=1e-12)
    got = conv(x[1], w, b, groups=3, backend=NB, **kw)
    assert got.shape == want.shape[1:]
    np.testing.assert_allclose(got, want[1], rtol=1e-12, atol=1e-12)
    got = conv(x_last[0], w, b, groups=3, data_format="CHANNELS_LAST", backend=NB, **kw)
    np.testing.assert_allclose(got, np.moveaxis(want[0], 0, -1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("view", ["reversed", "strided", "transposed", "readonly"])
def test_non_contiguous_views(view):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((2, 3, 8, 12))
    if view == "reversed":
        x = base[::-1, :, ::-1, ::-2]
    elif view == "strided":
        x = base[:, :, 1::2, ::3]
    elif view == "transposed":
        x = base.transpose(0, 1, 3, 2)
    else:
        x = base.copy()
        x.flags.writeable = False
    w = rng.standard_normal((4, 3, 3, 2))[:, ::-1, ::-1]
    b = rng.standard_normal(8)[::2]
    want = naive_conv(np.ascontiguousarray(x), np.ascontiguousarray(w), b, padding=1,
                      padding_mode="circular")
    got = clconv.conv2d(x, w, b, padding=1, padding_mode="circular", backend=NB)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- dtype rules

@pytest.mark.parametrize("dtype,expected", [
    (np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
    (np.int8, np.float32), (np.int32, np.float32), (np.int64, np.float32),
    (np.uint8, np.float32), (np.uint16, np.float32), (np.bool_, np.float32),
])
def test_dtype_rules(dtype, expected):
    rng = np.random.default_rng(5)
    if dtype == np.bool_:
        x = rng.random((1, 2, 6, 5)) < 0.5
    elif np.dtype(dtype).kind in "iu":
        x = rng.integers(0, 100, (1, 2, 6, 5)).astype(dtype)
    else:
        x = rng.uniform(-2, 2, (1, 2, 6, 5)).astype(dtype)
    w = rng.integers(-3, 4, (3, 2, 3, 3)).astype(np.float64)  # exactly representable
    b = np.array([0.5, -1.0, 2.0])
    got = clconv.conv2d(x, w, b, padding="same", backend=NB)
    assert got.dtype == expected
    want = naive_conv(x.astype(np.float64), w, b, padding="same")
    if expected == np.float16:
        # accumulated in float32 then stored as half: within one half-ulp of the result
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=2**-11, atol=1e-4)
    else:
        tol = 1e-12 if expected == np.float64 else 1e-6
        np.testing.assert_allclose(got, want, rtol=tol, atol=10 * tol)


def test_weight_and_bias_take_the_input_dtype():
    """Weights are rounded to the result dtype before the sum (API.md section 1).

    x = [1, 1], w = [1 + 2**-30, -1]: in float64 the dot product is 2**-30,
    but 1 + 2**-30 rounds to 1.0 in float32, so the float32 result is exactly 0.
    Likewise for float16 with 1 + 2**-12, and for a bias of 2**-30 added to 1.
    """
    ones32 = np.ones((1, 1, 2), np.float32)
    w = np.array([[[1 + 2.0**-30, -1.0]]])
    assert clconv.conv1d(ones32, w, backend=NB)[0, 0, 0] == 0.0
    assert clconv.conv1d(ones32.astype(np.float64), w, backend=NB)[0, 0, 0] == 2.0**-30
    w16 = np.array([[[1 + 2.0**-12, -1.0]]])
    out16 = clconv.conv1d(ones32.astype(np.float16), w16, backend=NB)
    assert out16.dtype == np.float16 and out16[0, 0, 0] == 0.0
    out = clconv.conv1d(ones32[..., :1], np.array([[[1.0]]]), np.array([2.0**-30]), backend=NB)
    assert out.dtype == np.float32 and out[0, 0, 0] == 1.0


def test_float16_accumulates_in_float32():
    """2048 taps of 1 and 4 taps of 0.5 over ones sum to 2050 (a half: ulp 2 there).

    A float16 accumulator would reach 2048 exactly and then round 2048 + 0.5
    back to 2048 four times; a float32 accumulator gets 2050, stored exactly.
    """
    x = np.ones((1, 1, 2052), np.float16)
    w = np.concatenate([np.ones(2048), np.full(4, 0.5)]).reshape(1, 1, -1)
    y = clconv.conv1d(x, w, backend=NB)
    assert y.dtype == np.float16
    assert float(y[0, 0, 0]) == 2050.0


# ---------------------------------------------------------------- padding == numpy.pad

@pytest.mark.parametrize("mode", list(NP_MODE))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_padding_any_width_equals_numpy_pad(nd, mode):
    """A 1-tap delta kernel returns the padded input: every width, also wider than the input."""
    rng = np.random.default_rng(nd)
    sizes = {1: [(1,), (2,), (5,)], 2: [(1, 3), (3, 2), (4, 4)], 3: [(2, 1, 3), (3, 3, 2)]}[nd]
    for size in sizes:
        x = rng.standard_normal((1, 2, *size))
        w = np.zeros((2, 2, *(1,) * nd))
        w[0, 0] = w[1, 1] = 1.0
        for widths in itertools.product((0, 1, 2, 3, 7), repeat=2):
            pads = tuple((widths[0] + i, widths[1] * (i + 1) % 11) for i in range(nd))
            got = CONV[nd](x, w, padding=pads, padding_mode=mode, backend=NB)
            want = np.pad(x, [(0, 0), (0, 0), *pads], mode=NP_MODE[mode])
            np.testing.assert_array_equal(got, want, err_msg=f"{size} {pads}")


def test_mode_names_are_case_insensitive():
    x = np.arange(5.0).reshape(1, 1, 5)
    w = np.ones((1, 1, 1))
    np.testing.assert_array_equal(
        clconv.conv1d(x, w, padding=2, padding_mode="Reflect", backend=NB),
        np.pad(x, [(0, 0), (0, 0), (2, 2)], mode="reflect"))


@pytest.mark.parametrize("n,k,s,d,pads", [
    # out = ceil(n/s); total = max((out-1)*s + (k-1)*d + 1 - n, 0); odd pixel after.
    (7, 3, 1, 1, (1, 1)),   # out 7, total 2
    (6, 4, 1, 1, (1, 2)),   # out 6, total 3
    (7, 3, 2, 1, (1, 1)),   # out 4, total 3*2+3-7 = 2
    (6, 3, 2, 1, (0, 1)),   # out 3, total 2*2+3-6 = 1
    (5, 2, 2, 1, (0, 1)),   # out 3, total 2*2+2-5 = 1
    (8, 3, 3, 1, (0, 1)),   # out 3, total 2*3+3-8 = 1
    (9, 3, 3, 1, (0, 0)),   # out 3, total 2*3+3-9 = 0
    (10, 5, 4, 1, (1, 2)),  # out 3, total 2*4+5-10 = 3
    (6, 3, 2, 2, (1, 2)),   # out 3, total 2*2+5-6 = 3
    (2, 5, 1, 1, (2, 2)),   # out 2, total 1+5-2 = 4
    (1, 4, 3, 1, (1, 2)),   # out 1, total 0+4-1 = 3
])
def test_same_padding_tensorflow_rule(n, k, s, d, pads):
    rng = np.random.default_rng(n * 100 + k)
    x = rng.standard_normal((1, 1, n))
    w = rng.standard_normal((1, 1, k))
    got = clconv.conv1d(x, w, stride=s, dilation=d, padding="same", backend=NB)
    assert got.shape[-1] == math.ceil(n / s)
    want = clconv.conv1d(x, w, stride=s, dilation=d, padding=(pads,), backend=NB)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, naive_conv(x, w, stride=s, dilation=d, padding=[pads]),
                               rtol=1e-12)


# ---------------------------------------------------------------- numpy.convolve

LENGTHS = [(1, 1), (1, 5), (5, 1), (10, 5), (5, 10), (4, 4), (6, 3), (3, 8), (2, 9), (9, 2)]


@pytest.mark.parametrize("mode", ["full", "same", "valid", "FULL"])
@pytest.mark.parametrize("lengths", LENGTHS, ids=[f"{a}-{v}" for a, v in LENGTHS])
def test_convolve_equals_numpy(lengths, mode):
    rng = np.random.default_rng(lengths[0] * 10 + lengths[1])
    a, v = rng.standard_normal(lengths[0]), rng.standard_normal(lengths[1])
    got = clconv.convolve(a, v, mode, backend=NB)
    want = np.convolve(a, v, mode.lower())
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_convolve_swap_rule_even_lengths():
    """'same' with v longer: numpy swaps, so the output has len(v) values, aligned as numpy."""
    a = np.array([1.0, 2.0])
    v = np.array([1.0, 10.0, 100.0, 1000.0])
    np.testing.assert_array_equal(clconv.convolve(a, v, "same", backend=NB),
                                  np.convolve(a, v, "same"))
    # hand-worked: full = [1, 12, 120, 1200, 2000]; numpy's 'same' keeps
    # max(len) = 4 values starting at (min(len) - 1) // 2 = 0
    np.testing.assert_array_equal(clconv.convolve(a, v, "same", backend=NB),
                                  [1, 12, 120, 1200])
    np.testing.assert_array_equal(clconv.convolve(v, a, "same", backend=NB),
                                  [1, 12, 120, 1200])


def test_convolve_tutorial_pattern():
    """The tutorial's 1-D pattern matching example: integers in, integers out (NumPy's rule)."""
    signal = [0, 0, 0, 1, 2, 3, 2, 1, 0, 0]
    pattern = [1, 2, 3, 2, 1]
    got = clconv.convolve(signal, pattern, backend=NB)
    assert got.dtype == np.convolve(signal, pattern).dtype == np.int64
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 4, 10, 16, 19, 16, 10, 4, 1, 0, 0])
    # the match peaks where the pattern lies on itself: 1+4+9+4+1 = 19
    assert int(np.argmax(got)) == 7 and got.max() == 19
    np.testing.assert_array_equal(clconv.convolve(signal, pattern, "same", backend=NB),
                                  np.convolve(signal, pattern, "same"))
    # 'valid' keeps the 10 - 5 + 1 = 6 full overlaps: full[4:10]
    np.testing.assert_array_equal(clconv.convolve(signal, pattern, "valid", backend=NB),
                                  [4, 10, 16, 19, 16, 10])


# ---------------------------------------------------------------- scipy.signal

SHAPES_2D = [((6, 7), (3, 3)), ((6, 7), (2, 4)), ((5, 5), (4, 1)), ((3, 4), (5, 6)),
             ((2, 3), (4, 5)), ((1, 1), (2, 3)), ((4, 4), (9, 9)), ((5, 4), (7, 2)),
             ((8, 8), (1, 1))]


@pytest.mark.parametrize("fillvalue", [0, -1.5])
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("shapes", SHAPES_2D, ids=[f"{a}-{k}" for a, k in SHAPES_2D])
@pytest.mark.parametrize("name", ["convolve2d", "correlate2d"])
def test_signal_2d_equals_scipy(name, shapes, mode, boundary, fillvalue):
    rng = np.random.default_rng(sum(shapes[0]) * 7 + sum(shapes[1]))
    a = rng.standard_normal(shapes[0])
    k = rng.standard_normal(shapes[1])
    ref = getattr(scipy.signal, name)
    ours = getattr(clconv, name)
    try:
        want = ref(a, k, mode, boundary, fillvalue)
    except ValueError:
        with pytest.raises(clconv.ShapeError):
            ours(a, k, mode, boundary, fillvalue, backend=NB)
        return
    got = ours(a, k, mode, boundary, fillvalue, backend=NB)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_signal_2d_integer_input_gives_numpys_integer_dtype():
    a = np.arange(12, dtype=np.int16).reshape(3, 4)
    k = np.array([[1, -1]], dtype=np.int64)
    got = clconv.convolve2d(a, k, "valid", backend=NB)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, scipy.signal.convolve2d(a, k, "valid"))  # all 1s
    np.testing.assert_array_equal(got, np.ones((3, 3)))


# ---------------------------------------------------------------- tutorial images

def test_3x3_patch_dot_product():
    """A 3x3 patch against [[1,2,3],[4,5,6],[7,8,9]] is a dot product.

    patch = 0..8, so the sum is sum(i * (i + 1)) for i in 0..8 = 204 + 36 = 240.
    """
    patch = np.arange(9.0).reshape(3, 3)
    kernel = np.arange(1.0, 10.0).reshape(3, 3)
    assert clconv.correlate2d(patch, kernel, "valid", backend=NB).tolist() == [[240.0]]
    assert clconv.conv2d(patch[None], kernel[None, None], backend=NB).tolist() == [[[240.0]]]
    # true convolution flips the kernel: sum(i * (9 - i)) = 9*36 - 204 = 120
    assert clconv.convolve2d(patch, kernel, "valid", backend=NB).tolist() == [[120.0]]


@pytest.mark.parametrize("shape", [(8, 8), (12, 10), (10, 10), (12, 8)])
def test_tutorial_exercise_images(shape):
    """The exercise: 3x3 kernel over 8x8, 12x10, 10x10 and 12x8 images."""
    rng = np.random.default_rng(shape[0] * shape[1])
    image = rng.integers(0, 256, shape).astype(np.float64)
    kernel = rng.standard_normal((3, 3))
    out = clconv.conv2d(image[None], kernel[None, None], backend=NB)[0]
    assert out.shape == (shape[0] - 2, shape[1] - 2)
    np.testing.assert_allclose(out, naive_conv(image[None, None], kernel[None, None])[0, 0],
                               rtol=1e-12)
    np.testing.assert_allclose(out, scipy.signal.correlate2d(image, kernel, "valid"),
                               rtol=1e-12)
    flipped = clconv.conv2d(image[None], kernel[None, None], flip=True, backend=NB)[0]
    np.testing.assert_allclose(flipped, scipy.signal.convolve2d(image, kernel, "valid"),
                               rtol=1e-12)


# The 16x16 grey image of the first tutorial: letters drawn in 0 on 255, and a
# vertical gradient 255 - 17 * row in the last two columns.
LETTERS = np.full((16, 16), 255.0)
LETTERS[2:12, 3] = LETTERS[2:12, 6] = 0           # the two legs of "H"
LETTERS[6, 3:7] = 0                                # its bar
LETTERS[2:12, 9] = 0                               # "i" stem ...
LETTERS[4, 9] = 255                                # ... with its gap below the dot
LETTERS[1:, 14] = LETTERS[1:, 15] = 255 - 17 * np.arange(1, 16)

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
SOBEL_Y = SOBEL_X.T
PREWITT_X = np.array([[-1, 0, 1]] * 3, dtype=np.float64)


def test_letters_image_transcription():
    """Spot checks against the rows printed in the tutorial."""
    assert LETTERS[0].tolist() == [255] * 16
    assert LETTERS[6].tolist() == [255, 255, 255, 0, 0, 0, 0, 255, 255, 0, 255, 255, 255,
                                   255, 153, 153]
    assert LETTERS[4].tolist() == [255, 255, 255, 0, 255, 255, 0] + [255] * 7 + [187, 187]
    assert LETTERS[15, 14] == 0


def test_letters_edge_kernels():
    img = LETTERS[None, None]
    kernels = np.stack([SOBEL_X, SOBEL_Y, PREWITT_X])[:, None]
    out = clconv.conv2d(img, kernels, backend=NB)[0]
    assert out.shape == (3, 14, 14)
    np.testing.assert_allclose(out, naive_conv(img, kernels)[0], rtol=1e-12)
    # Hand-worked: output (i, j) covers rows i..i+2, cols j..j+2.
    # Flat white corner: every zero-sum kernel gives 0.
    assert out[:, 0, 0].tolist() == [0, 0, 0]
    # Sobel-y on cols 13..15 (255, then 255-17r twice): 0 + 2*(-34) + (-34) = -102
    # for every window fully inside rows 1..15 of the gradient.
    np.testing.assert_array_equal(out[1, 1:14, 13], -102)
    # Prewitt-x centred on the left leg of "H" (col 3, rows 8..10, cols 2..4):
    # each row gives 255 - 255 = 0; centred left of it (cols 1..3): 3 * (0 - 255).
    assert out[2, 7, 2] == 0
    assert out[2, 7, 1] == -765
    # Sobel-x centred on col 2 (cols 1..3) at rows 7..9: (1 + 2 + 1) * (0 - 255) = -1020
    assert out[0, 7, 1] == -1020
    # true convolution flips the kernel: the sign of an antisymmetric kernel flips
    flipped = clconv.conv2d(img, kernels, flip=True, backend=NB)[0]
    np.testing.assert_array_equal(flipped, -out)
    # 'same' keeps 16x16 and equals scipy's same with zero fill
    same = clconv.conv2d(img, kernels, padding="same", backend=NB)[0]
    for f, kern in enumerate((SOBEL_X, SOBEL_Y, PREWITT_X)):
        np.testing.assert_allclose(same[f], scipy.signal.correlate2d(LETTERS, kern, "same"))


@pytest.mark.parametrize("padding,side", [("valid", 31), ("same", 32), ("full", 33)])
@pytest.mark.parametrize("filters", [1, 3, 4])
def test_rgb_image_stride_2(padding, side, filters):
    """RGB (64, 64, 3) channels_last, 3x3 filters, stride 2.

    valid: floor((64 - 3) / 2) + 1 = 31; same: ceil(64 / 2) = 32 (the
    tutorial's 64 -> 32); full: pads 2 + 2 -> floor((68 - 3) / 2) + 1 = 33.
    """
    rng = np.random.default_rng(filters)
    rgb = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    w = rng.standard_normal((filters, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    out = clconv.conv2d(rgb, w, b, stride=2, padding=padding, data_format="channels_last",
                        backend=NB)
    assert out.shape == (side, side, filters)
    assert out.dtype == np.float32
    x = np.moveaxis(rgb.astype(np.float64), -1, 0)[None]
    want = np.moveaxis(naive_conv(x, w, b, stride=2, padding=padding)[0], 0, -1)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-3)
    batched = clconv.conv2d(np.stack([rgb, rgb[::-1]]), w, b, stride=2, padding=padding,
                            data_format="channels_last", backend=NB)
    assert batched.shape == (2, side, side, filters)
    np.testing.assert_array_equal(batched[0], out)


def test_rgb_stride_1_same_keeps_size():
    rgb = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    w = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        w[c, c, 1, 1] = 1.0  # identity per channel
    out = clconv.conv2d(rgb, w, padding="same", data_format="channels_last", backend=NB)
    assert out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out, rgb)
