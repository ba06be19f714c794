"""``clconv selftest``: every feature on one backend against the NumPy reference.

Each check runs a small case on the chosen backend and on the NumPy backend
(in float64, so the reference carries no float32 rounding of its own) and
compares them with a tolerance scaled by the reduction length. A check that
raises is a failure with its one-line reason; float64 on a device without
fp64 must raise ``BackendUnavailable`` and then counts as a pass ("n/a").
The whole run takes a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Result", "run_selftest", "format_table"]


@dataclass(frozen=True)
class Result:
    """One row of the pass/fail table."""

    feature: str
    ok: bool
    max_error: float | None
    seconds: float
    note: str = ""
    exception: BaseException | None = field(default=None, repr=False, compare=False)


def _tol(dtype: Any, reduction: int) -> tuple[float, float]:
    eps = float(np.finfo(dtype).eps)
    return 8 * eps * np.sqrt(max(reduction, 1)) + eps, 8 * eps * max(reduction, 1)


def _compare(got: Any, ref: Any, reduction: int, dtype: Any = np.float32) -> float:
    """Max abs error; raises AssertionError with the reason when out of tolerance."""
    if type(got).__module__.startswith("pyopencl"):
        got = got.get()
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        raise AssertionError(f"shape {got.shape}, expected {ref.shape}")
    if got.dtype != np.dtype(dtype):
        raise AssertionError(f"dtype {got.dtype}, expected {np.dtype(dtype)}")
    rtol, atol = _tol(dtype, reduction)
    scale = float(np.nanmax(np.abs(ref))) if ref.size and np.isfinite(ref).any() else 1.0
    g, r = got.astype(np.float64), ref.astype(np.float64)
    if not np.array_equal(np.isnan(g), np.isnan(r)):
        raise AssertionError("NaN positions differ from the reference")
    err = float(np.nanmax(np.abs(g - r), initial=0.0))
    if not np.allclose(g, r, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True):
        raise AssertionError(f"max |error| {err:.3g} above tolerance")
    return err


def _checks(backend: str) -> list[tuple[str, Callable[[], tuple[float | None, str]]]]:
    import clconv

    rng = np.random.default_rng(7)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    def conv_case(fn: Callable, x: np.ndarray, w: np.ndarray, reduction: int,
                  **kw: Any) -> Callable[[], tuple[float, str]]:
        def check() -> tuple[float, str]:
            got = fn(x, w, backend=backend, **kw)
            b = kw.pop("bias", None)
            ref = fn(x.astype(np.float64), w.astype(np.float64), backend="numpy",
                     bias=None if b is None else b.astype(np.float64), **kw)
            return _compare(got, ref.astype(np.float32), reduction), ""
        return check

    def filter_case(name: str, **kw: Any) -> Callable[[], tuple[float, str]]:
        img = rng.random((19, 23, 3)).astype(np.float32)
        k = clconv.kernels.get(name, **kw)

        def check() -> tuple[float, str]:
            got = clconv.filter2d(img, k, backend=backend)
            ref = clconv.filter2d(img.astype(np.float64), k.astype(np.float64),
                                  backend="numpy")
            return _compare(got, ref.astype(np.float32), k.size), ""
        return check

    def dtype_case(dtype: Any) -> Callable[[], tuple[float | None, str]]:
        x, w = r(2, 3, 9, 9), r(4, 3, 3, 3)

        def check() -> tuple[float | None, str]:
            xd = x.astype(dtype)
            try:
                got = clconv.conv2d(xd, w, padding=1, backend=backend)
            except clconv.BackendUnavailable as exc:
                if np.dtype(dtype) == np.float64 and "fp64" in str(exc):
                    return None, "n/a: device has no fp64"
                raise
            ref = clconv.conv2d(xd.astype(np.float64), w.astype(np.float64), padding=1,
                                backend="numpy")
            out = np.float32 if np.dtype(dtype).kind != "f" else dtype
            if np.dtype(out) == np.float16:   # half storage, float32 accumulation
                ref = clconv.conv2d(xd, w.astype(np.float16), padding=1, backend="numpy")
            return _compare(got, ref.astype(out), 27, out), ""
        return check

    def backward_case() -> tuple[float, str]:
        x, w = r(2, 4, 8, 8), r(6, 2, 3, 3)
        kw = {"stride": 2, "padding": 1, "groups": 2}
        gy = r(2, 6, 4, 4)
        got = clconv.conv_backward(x, w, gy, backend=backend, **kw)
        ref = clconv.conv_backward(x.astype(np.float64), w.astype(np.float64),
                                   gy.astype(np.float64), backend="numpy", **kw)
        return max(_compare(a, b.astype(np.float32), 64) for a, b in zip(got, ref)), ""

    def transpose_case() -> tuple[float, str]:
        x, w, b = r(2, 4, 7, 6), r(4, 3, 4, 3), r(6)
        kw = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}
        errs = []
        for operand in (x, x[:, :, ::-1]):  # host (stride phases) and a strided view
            got = clconv.conv_transpose2d(operand, w, b, backend=backend, **kw)
            ref = clconv.conv_transpose2d(operand.astype(np.float64), w.astype(np.float64),
                                          b.astype(np.float64), backend="numpy", **kw)
            errs.append(_compare(got, ref.astype(np.float32), 24))
        be = clconv.get_backend(backend)
        if hasattr(be, "to_device"):  # the input-gradient kernels
            got = clconv.conv_transpose2d(clconv.to_device(x, backend=backend), w, b,
                                          dilation=2, backend=backend, **kw)
            ref = clconv.conv_transpose2d(x.astype(np.float64), w.astype(np.float64),
                                          b.astype(np.float64), dilation=2, backend="numpy",
                                          **kw)
            errs.append(_compare(got, ref.astype(np.float32), 24))
        return max(errs), ""

    def transpose_layer_case() -> tuple[float, str]:
        layer = clconv.ConvTranspose2d(3, 4, 3, stride=2, seed=0, backend=backend)
        ref_layer = clconv.ConvTranspose2d(3, 4, 3, stride=2, seed=0, backend="numpy")
        x = r(2, 3, 6, 6)
        y, ref = layer(x), ref_layer(x)
        gy = r(*ref.shape)
        errs = [_compare(y, ref, 27), _compare(layer.backward(gy), ref_layer.backward(gy), 36),
                _compare(layer.grad_weight, ref_layer.grad_weight, 400)]
        return max(errs), ""

    def layer_case() -> tuple[float, str]:
        layer = clconv.Conv2d(3, 5, 3, padding=1, seed=0, backend=backend)
        ref_layer = clconv.Conv2d(3, 5, 3, padding=1, seed=0, backend="numpy")
        x = r(2, 3, 10, 10)
        return _compare(layer(x), ref_layer(x), 27), ""

    def device_case() -> tuple[float | None, str]:
        be = clconv.get_backend(backend)
        if not hasattr(be, "to_device"):
            return None, "n/a: host-only backend"
        x, w = r(1, 3, 12, 12), r(4, 3, 3, 3)
        y = clconv.conv2d(clconv.to_device(x, backend=backend), w, padding=1, backend=backend)
        if not type(y).__module__.startswith("pyopencl"):
            raise AssertionError(f"device input gave {type(y).__name__}, not a device array")
        return _compare(y, clconv.conv2d(x, w, padding=1, backend="numpy"), 27), ""

    def nan_case() -> tuple[float, str]:
        x = r(1, 1, 9, 9)
        x[0, 0, 4, 4] = np.nan
        w = r(1, 1, 3, 3)
        return _compare(clconv.conv2d(x, w, backend=backend),
                        clconv.conv2d(x, w, backend="numpy"), 9), ""

    def signal_case() -> tuple[float, str]:
        a, v = r(40), r(7)
        img, k = r(12, 15), r(4, 3)
        errs = [
            _compare(clconv.convolve(a, v, backend=backend),
                     np.convolve(a.astype(np.float64), v).astype(np.float32), 7),
            _compare(clconv.convolve2d(img, k, "same", "wrap", backend=backend),
                     clconv.convolve2d(img.astype(np.float64), k, "same", "wrap",
                                       backend="numpy").astype(np.float32), 12),
            _compare(clconv.correlate2d(img, k, "full", "symm", backend=backend),
                     clconv.correlate2d(img.astype(np.float64), k, "full", "symm",
                                        backend="numpy").astype(np.float32), 12),
        ]
        return max(errs), ""

    checks: list[tuple[str, Callable[[], tuple[float | None, str]]]] = [
        ("conv1d", conv_case(clconv.conv1d, r(2, 3, 40), r(5, 3, 5), 15, padding=2)),
        ("conv2d", conv_case(clconv.conv2d, r(2, 3, 16, 16), r(8, 3, 3, 3), 27, padding=1)),
        ("conv3d", conv_case(clconv.conv3d, r(1, 2, 8, 8, 8), r(3, 2, 3, 3, 3), 54,
                             padding=1)),
        ("stride", conv_case(clconv.conv2d, r(2, 3, 17, 15), r(4, 3, 3, 3), 27, stride=(2, 3))),
        ("dilation", conv_case(clconv.conv2d, r(1, 3, 16, 16), r(4, 3, 3, 3), 27,
                               dilation=2)),
        ("groups", conv_case(clconv.conv2d, r(2, 6, 12, 12), r(9, 2, 3, 3), 18, groups=3)),
        ("depthwise", conv_case(clconv.conv2d, r(2, 4, 12, 12), r(4, 1, 5, 5), 25, groups=4,
                                padding=2)),
        ("bias", conv_case(clconv.conv2d, r(1, 3, 10, 10), r(4, 3, 3, 3), 27, bias=r(4))),
        ("padding same (stride 2)", conv_case(clconv.conv2d, r(1, 3, 15, 14), r(4, 3, 4, 3),
                                              36, padding="same", stride=2)),
        ("padding full", conv_case(clconv.conv2d, r(1, 2, 9, 9), r(3, 2, 3, 3), 18,
                                   padding="full")),
        ("padding asymmetric", conv_case(clconv.conv2d, r(1, 2, 9, 9), r(3, 2, 3, 3), 18,
                                         padding=((0, 3), (2, 1)))),
    ]
    for mode in ("reflect", "replicate", "circular"):
        checks.append((f"padding_mode {mode} (wide)",
                       conv_case(clconv.conv2d, r(1, 2, 6, 7), r(3, 2, 3, 3), 18, padding=7,
                                 padding_mode=mode)))
    checks += [
        ("flip (true convolution)", conv_case(clconv.conv2d, r(1, 3, 10, 10), r(2, 3, 3, 5),
                                              45, flip=True)),
        ("channels_last", conv_case(clconv.conv2d, r(2, 11, 13, 3), r(4, 3, 3, 3), 27,
                                    data_format="channels_last", padding=1)),
        ("unbatched", conv_case(clconv.conv2d, r(3, 11, 13), r(4, 3, 3, 3), 27)),
        ("non-contiguous input", conv_case(clconv.conv2d, r(1, 3, 20, 20)[:, :, ::-2, ::2],
                                           r(4, 3, 3, 3), 27)),
        ("dtype float16", dtype_case(np.float16)),
        ("dtype float64", dtype_case(np.float64)),
        ("dtype uint8", dtype_case(np.uint8)),
        ("NaN propagation", nan_case),
        ("numpy/scipy wrappers", signal_case),
        ("conv_backward", backward_case),
        ("Conv2d layer", layer_case),
        ("conv_transpose2d", transpose_case),
        ("ConvTranspose2d layer", transpose_layer_case),
        ("device arrays", device_case),
    ]
    for name in clconv.kernels.names():
        checks.append((f"filter2d {name}", filter_case(name)))
    checks.append(("filter2d gaussian 9x9", filter_case("gaussian", size=9, sigma=2.0)))
    return checks


def run_selftest(backend: str) -> list[Result]:
    """Run every check on ``backend``; never raises for a failing check."""
    results = []
    for feature, check in _checks(backend):
        start = time.perf_counter()
        error = None
        try:
            err, note = check()
            ok = True
        except Exception as exc:  # every failure becomes a row, not a traceback
            err, ok, error = None, False, exc
            note = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
        results.append(Result(feature, ok, err, time.perf_counter() - start, note, error))
    return results


def format_table(results: list[Result]) -> str:
    """The pass/fail table as text."""
    rows = [("feature", "result", "max |err|", "ms", "note")]
    for res in results:
        rows.append((res.feature, "pass" if res.ok else "FAIL",
                     "-" if res.max_error is None else f"{res.max_error:.2e}",
                     f"{res.seconds * 1e3:.0f}", res.note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths))
                     + ("  " + row[4] if row[4] else "") for row in rows).rstrip()
