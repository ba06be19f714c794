"""Conv1d / Conv2d / Conv3d layers (API.md section 4).

The ``backend`` / ``cl_backend`` tests also run on every OpenCL device.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import clconv
from clconv import ArgumentError, BackendUnavailable, DTypeError, ShapeError
from clconv.testing import assert_close

LAYERS = {1: clconv.Conv1d, 2: clconv.Conv2d, 3: clconv.Conv3d}
CONV = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}


def host(a):
    return None if a is None else np.asarray(a.get() if hasattr(a, "get") else a)


# ---------------------------------------------------------------- initialisation

@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_shapes_and_bounds(ndim):
    layer = LAYERS[ndim](6, 8, 3, groups=2, seed=1)
    kernel = (3,) * ndim
    assert layer.weight.shape == (8, 3, *kernel) and layer.weight.dtype == np.float32
    assert layer.bias.shape == (8,) and layer.bias.dtype == np.float32
    bound = 1 / math.sqrt(3 * 3**ndim)
    assert np.abs(layer.weight).max() <= bound
    assert np.abs(layer.bias).max() <= bound
    assert layer.grad_weight is None and layer.grad_bias is None


def test_init_statistics():
    """Uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]: mean 0, variance bound**2 / 3."""
    layer = clconv.Conv2d(64, 128, (3, 5), seed=7, dtype="float64")
    bound = 1 / math.sqrt(64 * 15)
    w = layer.weight.ravel() / bound
    assert w.min() >= -1 and w.max() <= 1
    assert w.min() < -0.999 and w.max() > 0.999  # fills the whole interval
    assert abs(w.mean()) < 0.01
    assert abs(w.var() - 1 / 3) < 0.01
    hist, _ = np.histogram(w, bins=10, range=(-1, 1))
    assert hist.min() > 0.9 * w.size / 10  # flat
    b = clconv.Conv2d(64, 2000, 1, seed=7).bias / (1 / 8)
    assert np.abs(b).max() <= 1 and abs(b.mean()) < 0.05 and abs(b.var() - 1 / 3) < 0.03


def test_seed_determinism():
    a = clconv.Conv2d(3, 4, 3, seed=42)
    b = clconv.Conv2d(3, 4, 3, seed=42)
    c = clconv.Conv2d(3, 4, 3, seed=43)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weight, c.weight)
    assert not np.array_equal(clconv.Conv2d(3, 4, 3).weight, clconv.Conv2d(3, 4, 3).weight)
    gen = clconv.Conv2d(3, 4, 3, seed=np.random.default_rng(42))
    np.testing.assert_array_equal(gen.weight, a.weight)


def test_no_bias_and_dtypes():
    layer = clconv.Conv1d(2, 3, 4, bias=False, seed=0, dtype="float64", backend="numpy")
    assert layer.bias is None and layer.weight.dtype == np.float64
    y = layer(np.ones((2, 2, 7)))
    layer.backward(np.ones_like(y))
    assert layer.grad_bias is None and layer.grad_weight.dtype == np.float64
    assert list(layer.parameters()) == ["weight"] and list(layer.gradients()) == ["weight"]
    half = clconv.Conv2d(1, 2, 3, seed=0, dtype=np.float16, backend="numpy")
    assert half.weight.dtype == np.float16 and half(np.ones((1, 5, 5))).dtype == np.float16


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(in_channels=0), ShapeError, "in_channels=0"),
    (dict(out_channels=2.5), ShapeError, "out_channels=2.5"),
    (dict(in_channels=True), ShapeError, "in_channels=True"),
    (dict(groups=4), ShapeError, "groups=4"),
    (dict(groups=0), ShapeError, "groups=0"),
    (dict(kernel_size=0), ShapeError, "kernel_size"),
    (dict(kernel_size=(3, 3, 3)), ShapeError, "kernel_size"),
    (dict(stride=0), ShapeError, "stride"),
    (dict(dilation=(1, -1)), ShapeError, "dilation"),
    (dict(padding=-1), ShapeError, "padding"),
    (dict(padding=(1, 2, 3)), ShapeError, "padding"),
    (dict(padding="half"), ArgumentError, "padding"),
    (dict(padding_mode="mirror"), ArgumentError, "padding_mode"),
    (dict(bias="yes"), ArgumentError, "bias"),
    (dict(dtype="int32"), DTypeError, "dtype"),
    (dict(dtype="complex64"), DTypeError, "dtype"),
    (dict(seed="abc"), ArgumentError, "seed"),
    (dict(backend="no-such-backend"), BackendUnavailable, "no-such-backend"),
])
def test_bad_arguments_raise_at_construction(kwargs, error, match):
    args = dict(in_channels=6, out_channels=9, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        clconv.Conv2d(args.pop("in_channels"), args.pop("out_channels"),
                      args.pop("kernel_size"), **args)


def test_conv1d_padding_pair_is_an_error():
    with pytest.raises(ShapeError):
        clconv.Conv1d(1, 1, 3, padding=(1, 2))
    assert clconv.Conv1d(1, 1, 3, padding=((1, 2),)).padding == ((1, 2),)


def test_repr():
    assert repr(clconv.Conv2d(3, 8, 3)) == "Conv2d(3, 8, kernel_size=(3, 3))"
    text = repr(clconv.Conv1d(4, 8, 5, stride=2, padding="same", dilation=2, groups=4,
                              bias=False, padding_mode="reflect", dtype="float64",
                              backend="numpy"))
    assert text == ("Conv1d(4, 8, kernel_size=(5,), stride=(2,), padding='same', "
                    "dilation=(2,), groups=4, bias=False, padding_mode='reflect', "
                    "dtype='float64', backend='numpy')")


# ---------------------------------------------------------------- passes

def test_backward_before_forward_and_wrong_grad_shape():
    layer = clconv.Conv2d(2, 3, 3, backend="numpy", seed=0)
    with pytest.raises(ArgumentError, match="forward"):
        layer.backward(np.ones((1, 3, 3, 3)))
    layer(np.ones((1, 2, 5, 5)))
    with pytest.raises(ShapeError, match="grad_output"):
        layer.backward(np.ones((1, 3, 5, 5)))
    with pytest.raises(ShapeError):
        layer(np.ones((1, 3, 5, 5)))  # wrong channel count


@pytest.mark.parametrize("ndim, kwargs", [
    (1, dict(stride=2, padding=((3, 1),), padding_mode="reflect")),
    (2, dict(padding="same", dilation=2, groups=2, padding_mode="circular")),
    (2, dict(padding=5, padding_mode="replicate", data_format="channels_last")),
    (3, dict(padding=1, stride=(1, 2, 1), bias=False)),
])
def test_layer_matches_functional_and_finite_differences(rng, ndim, kwargs):
    layer = LAYERS[ndim](4, 6, 3, seed=3, dtype="float64", backend="numpy", **kwargs)
    fmt = kwargs.get("data_format", "channels_first")
    size = (5, 4, 3)[:ndim]
    x = rng.standard_normal((2, 4, *size) if fmt == "channels_first" else (2, *size, 4))
    y = layer(x)
    fkw = {k: v for k, v in kwargs.items() if k != "bias"}
    fkw.setdefault("groups", 1)
    np.testing.assert_array_equal(y, CONV[ndim](x, layer.weight, layer.bias, backend="numpy",
                                                **fkw))
    gy = rng.standard_normal(y.shape)
    gx = layer.backward(gy)
    gx_f, gw_f, gb_f = clconv.conv_backward(x, layer.weight, gy, backend="numpy", **fkw)
    np.testing.assert_array_equal(gx, gx_f)
    np.testing.assert_array_equal(layer.grad_weight, gw_f)
    if layer.bias is not None:
        np.testing.assert_array_equal(layer.grad_bias, gb_f)

    # Directional central difference of L = <layer(x), gy> in (x, weight, bias).
    params = layer.parameters()
    grads = {"x": gx, **layer.gradients()}
    dirs = {"x": rng.standard_normal(x.shape),
            **{k: rng.standard_normal(v.shape) for k, v in params.items()}}
    saved = {k: v.copy() for k, v in params.items()}

    def loss(t):
        for k, v in saved.items():
            params[k][...] = v + t * dirs[k]
        return float(np.vdot(layer(x + t * dirs["x"]), gy))

    eps = 1e-3
    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    analytic = sum(np.vdot(grads[k], dirs[k]) for k in dirs)
    assert numeric == pytest.approx(analytic, rel=1e-9, abs=1e-9)


def test_unbatched_and_integer_input(rng):
    layer = clconv.Conv2d(3, 2, 3, padding=1, padding_mode="reflect", seed=0, backend="numpy")
    x = rng.integers(0, 255, (3, 6, 6)).astype(np.uint8)
    y = layer(x)
    assert y.shape == (2, 6, 6) and y.dtype == np.float32
    gx = layer.backward(np.ones_like(y))
    assert gx.shape == (3, 6, 6) and gx.dtype == np.float32
    batched = clconv.Conv2d(3, 2, 3, padding=1, padding_mode="reflect", seed=0,
                            backend="numpy")
    np.testing.assert_array_equal(batched(x[None])[0], y)
    np.testing.assert_array_equal(batched.backward(np.ones((1, 2, 6, 6)))[0], gx)
    np.testing.assert_array_equal(batched.grad_weight, layer.grad_weight)


def test_sgd_step_reduces_loss(rng):
    """A few plain SGD steps fit a random target: the gradients point downhill."""
    layer = clconv.Conv2d(2, 3, 3, padding=1, seed=0, backend="numpy", dtype="float64")
    x = rng.standard_normal((4, 2, 6, 6))
    target = rng.standard_normal((4, 3, 6, 6))
    losses = []
    for _ in range(20):
        err = layer(x) - target
        losses.append(0.5 * float((err**2).mean()))
        layer.backward(err / err.size)
        layer.weight -= 2.0 * layer.grad_weight
        layer.bias -= 2.0 * layer.grad_bias
    assert losses[-1] < 0.9 * losses[0]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))


# ---------------------------------------------------------------- every backend

@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_layer_on_backend_matches_numpy(backend, rng, ndim):
    kw = dict(padding=2, padding_mode="reflect", stride=2, groups=2, seed=5)
    ref = LAYERS[ndim](4, 6, 3, backend="numpy", **kw)
    got = LAYERS[ndim](4, 6, 3, backend=backend, **kw)
    x = rng.standard_normal((2, 4, *(7, 6, 5)[:ndim])).astype(np.float32)
    y_ref, y = ref(x), host(got(x))
    reduction = 2 * 3**ndim
    assert_close(y, y_ref, dtype=np.float32, reduction=reduction)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx_ref, gx = ref.backward(gy), host(got.backward(gy))
    assert_close(gx, gx_ref, dtype=np.float32, reduction=6 * 3**ndim)
    positions = gy.size // 6
    assert_close(got.grad_weight, ref.grad_weight, dtype=np.float32, reduction=positions)
    assert_close(got.grad_bias, ref.grad_bias, dtype=np.float32, reduction=positions)


def test_layer_with_device_arrays(cl_backend, rng):
    """On OpenCL, device arrays in give device arrays out, forward and backward."""
    layer = clconv.Conv2d(3, 4, 3, padding=1, padding_mode="replicate", seed=0,
                          backend=cl_backend)
    ref = clconv.Conv2d(3, 4, 3, padding=1, padding_mode="replicate", seed=0, backend="numpy")
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = layer(clconv.to_device(x, backend=cl_backend))
    assert hasattr(y, "queue")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = layer.backward(clconv.to_device(gy, backend=cl_backend))
    assert hasattr(gx, "queue")
    ref(x)
    assert_close(gx, ref.backward(gy), dtype=np.float32, reduction=36)
    assert_close(layer.grad_weight, ref.grad_weight, dtype=np.float32, reduction=128)
