"""``clconv selftest``: every feature on one backend against the NumPy reference.

Each check runs a small case on the chosen backend and on the NumPy backend
(in float64, so the reference carries no float32 rounding of its own) and
compares them with :mod:`clconv.testing`'s tolerance, scaled by the reduction
length, the rule the test suite and the tuner apply too. A check that
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

from .testing import assert_close, host_array, oracle

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


Check = Callable[[], tuple[float | None, str]]


def _compare(got: Any, ref: Any, reduction: int, dtype: Any = np.float32) -> float:
    """Max abs error; raises AssertionError with the reason when out of tolerance.

    The absolute term scales with the reference's largest magnitude (at least
    1), so checks on uint8 pixels and on unit-sized values share one rule.
    """
    ref = host_array(ref)
    finite = ref.size and np.isfinite(ref).any()
    magnitude = float(np.nanmax(np.abs(ref))) if finite else 1.0
    return assert_close(got, ref, dtype=dtype, reduction=reduction, scale=max(magnitude, 1.0))


class _Cases:
    """The check builders for one backend.

    They share one seeded generator, drawn in the same order on every run, so
    every run checks the same operands and reports the same errors. Builders
    that take shapes draw their operands when the table is built; the
    argument-less checks draw theirs when they run.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.rng = np.random.default_rng(7)

    def r(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape).astype(np.float32)

    def conv(self, fn: Callable, x: np.ndarray, w: np.ndarray, reduction: int,
             **kw: Any) -> Check:
        def check() -> tuple[float, str]:
            got = fn(x, w, backend=self.backend, **kw)
            rest = {k: v for k, v in kw.items() if k != "bias"}
            ref = oracle(fn, x, w, kw.get("bias"), **rest)
            return _compare(got, ref.astype(np.float32), reduction), ""
        return check

    def filter(self, name: str, **kw: Any) -> Check:
        import clconv

        img = self.rng.random((19, 23, 3)).astype(np.float32)
        k = clconv.kernels.get(name, **kw)

        def check() -> tuple[float, str]:
            got = clconv.filter2d(img, k, backend=self.backend)
            ref = oracle(clconv.filter2d, img, k)
            return _compare(got, ref.astype(np.float32), k.size), ""
        return check

    def dtype(self, dtype: Any) -> Check:
        import clconv

        x, w = self.r(2, 3, 9, 9), self.r(4, 3, 3, 3)

        def check() -> tuple[float | None, str]:
            xd = x.astype(dtype)
            try:
                got = clconv.conv2d(xd, w, padding=1, backend=self.backend)
            except clconv.BackendUnavailable as exc:
                if np.dtype(dtype) == np.float64 and "fp64" in str(exc):
                    return None, "n/a: device has no fp64"
                raise
            ref = oracle(clconv.conv2d, xd, w, padding=1)
            out = np.float32 if np.dtype(dtype).kind != "f" else dtype
            if np.dtype(out) == np.float16:   # half storage, float32 accumulation
                ref = clconv.conv2d(xd, w.astype(np.float16), padding=1, backend="numpy")
            return _compare(got, ref.astype(out), 27, out), ""
        return check

    def backward(self) -> tuple[float, str]:
        import clconv

        x, w = self.r(2, 4, 8, 8), self.r(6, 2, 3, 3)
        kw = {"stride": 2, "padding": 1, "groups": 2}
        gy = self.r(2, 6, 4, 4)
        got = clconv.conv_backward(x, w, gy, backend=self.backend, **kw)
        ref = oracle(clconv.conv_backward, x, w, gy, **kw)
        return max(_compare(a, b.astype(np.float32), 64) for a, b in zip(got, ref)), ""

    def transpose(self) -> tuple[float, str]:
        import clconv

        x, w, b = self.r(2, 4, 7, 6), self.r(4, 3, 4, 3), self.r(6)
        kw = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}
        errs = []
        for operand in (x, x[:, :, ::-1]):  # host (stride phases) and a strided view
            got = clconv.conv_transpose2d(operand, w, b, backend=self.backend, **kw)
            ref = oracle(clconv.conv_transpose2d, operand, w, b, **kw)
            errs.append(_compare(got, ref.astype(np.float32), 24))
        if hasattr(clconv.get_backend(self.backend), "to_device"):  # the input-gradient kernels
            got = clconv.conv_transpose2d(clconv.to_device(x, backend=self.backend), w, b,
                                          dilation=2, backend=self.backend, **kw)
            ref = oracle(clconv.conv_transpose2d, x, w, b, dilation=2, **kw)
            errs.append(_compare(got, ref.astype(np.float32), 24))
        return max(errs), ""

    def transpose_layer(self) -> tuple[float, str]:
        import clconv

        layer = clconv.ConvTranspose2d(3, 4, 3, stride=2, seed=0, backend=self.backend)
        ref_layer = clconv.ConvTranspose2d(3, 4, 3, stride=2, seed=0, backend="numpy")
        x = self.r(2, 3, 6, 6)
        y, ref = layer(x), ref_layer(x)
        gy = self.r(*ref.shape)
        errs = [_compare(y, ref, 27), _compare(layer.backward(gy), ref_layer.backward(gy), 36),
                _compare(layer.grad_weight, ref_layer.grad_weight, 400)]
        return max(errs), ""

    def layer(self) -> tuple[float, str]:
        import clconv

        layer = clconv.Conv2d(3, 5, 3, padding=1, seed=0, backend=self.backend)
        ref_layer = clconv.Conv2d(3, 5, 3, padding=1, seed=0, backend="numpy")
        x = self.r(2, 3, 10, 10)
        return _compare(layer(x), ref_layer(x), 27), ""

    def device(self) -> tuple[float | None, str]:
        import clconv

        if not hasattr(clconv.get_backend(self.backend), "to_device"):
            return None, "n/a: host-only backend"
        x, w = self.r(1, 3, 12, 12), self.r(4, 3, 3, 3)
        y = clconv.conv2d(clconv.to_device(x, backend=self.backend), w, padding=1,
                          backend=self.backend)
        if not type(y).__module__.startswith("pyopencl"):
            raise AssertionError(f"device input gave {type(y).__name__}, not a device array")
        return _compare(y, clconv.conv2d(x, w, padding=1, backend="numpy"), 27), ""

    def nan(self) -> tuple[float, str]:
        import clconv

        x = self.r(1, 1, 9, 9)
        x[0, 0, 4, 4] = np.nan
        w = self.r(1, 1, 3, 3)
        return _compare(clconv.conv2d(x, w, backend=self.backend),
                        clconv.conv2d(x, w, backend="numpy"), 9), ""

    def signal(self) -> tuple[float, str]:
        import clconv

        a, v = self.r(40), self.r(7)
        img, k = self.r(12, 15), self.r(4, 3)
        be = self.backend
        errs = [
            _compare(clconv.convolve(a, v, backend=be),
                     np.convolve(a.astype(np.float64), v).astype(np.float32), 7),
            _compare(clconv.convolve2d(img, k, "same", "wrap", backend=be),
                     oracle(clconv.convolve2d, img, k, mode="same", boundary="wrap"
                            ).astype(np.float32), 12),
            _compare(clconv.correlate2d(img, k, "full", "symm", backend=be),
                     oracle(clconv.correlate2d, img, k, mode="full", boundary="symm"
                            ).astype(np.float32), 12),
        ]
        return max(errs), ""


def _conv_checks(c: _Cases) -> list[tuple[str, Check]]:
    """The forward convolution rows: dimensions, arguments, padding, layouts."""
    import clconv

    r, conv = c.r, c.conv
    checks = [
        ("conv1d", conv(clconv.conv1d, r(2, 3, 40), r(5, 3, 5), 15, padding=2)),
        ("conv2d", conv(clconv.conv2d, r(2, 3, 16, 16), r(8, 3, 3, 3), 27, padding=1)),
        ("conv3d", conv(clconv.conv3d, r(1, 2, 8, 8, 8), r(3, 2, 3, 3, 3), 54, padding=1)),
        ("stride", conv(clconv.conv2d, r(2, 3, 17, 15), r(4, 3, 3, 3), 27, stride=(2, 3))),
        ("dilation", conv(clconv.conv2d, r(1, 3, 16, 16), r(4, 3, 3, 3), 27, dilation=2)),
        ("groups", conv(clconv.conv2d, r(2, 6, 12, 12), r(9, 2, 3, 3), 18, groups=3)),
        ("depthwise", conv(clconv.conv2d, r(2, 4, 12, 12), r(4, 1, 5, 5), 25, groups=4,
                           padding=2)),
        ("bias", conv(clconv.conv2d, r(1, 3, 10, 10), r(4, 3, 3, 3), 27, bias=r(4))),
        ("padding same (stride 2)", conv(clconv.conv2d, r(1, 3, 15, 14), r(4, 3, 4, 3), 36,
                                         padding="same", stride=2)),
        ("padding full", conv(clconv.conv2d, r(1, 2, 9, 9), r(3, 2, 3, 3), 18,
                              padding="full")),
        ("padding asymmetric", conv(clconv.conv2d, r(1, 2, 9, 9), r(3, 2, 3, 3), 18,
                                    padding=((0, 3), (2, 1)))),
    ]
    for mode in ("reflect", "replicate", "circular"):
        checks.append((f"padding_mode {mode} (wide)",
                       conv(clconv.conv2d, r(1, 2, 6, 7), r(3, 2, 3, 3), 18, padding=7,
                            padding_mode=mode)))
    checks += [
        ("flip (true convolution)", conv(clconv.conv2d, r(1, 3, 10, 10), r(2, 3, 3, 5), 45,
                                         flip=True)),
        ("channels_last", conv(clconv.conv2d, r(2, 11, 13, 3), r(4, 3, 3, 3), 27,
                               data_format="channels_last", padding=1)),
        ("unbatched", conv(clconv.conv2d, r(3, 11, 13), r(4, 3, 3, 3), 27)),
        ("non-contiguous input", conv(clconv.conv2d, r(1, 3, 20, 20)[:, :, ::-2, ::2],
                                      r(4, 3, 3, 3), 27)),
    ]
    return checks


def _checks(backend: str) -> list[tuple[str, Check]]:
    """Every row of the table, in order, each with the check that fills it."""
    import clconv

    c = _Cases(backend)
    checks = _conv_checks(c)
    checks += [
        ("dtype float16", c.dtype(np.float16)),
        ("dtype float64", c.dtype(np.float64)),
        ("dtype uint8", c.dtype(np.uint8)),
        ("NaN propagation", c.nan),
        ("numpy/scipy wrappers", c.signal),
        ("conv_backward", c.backward),
        ("Conv2d layer", c.layer),
        ("conv_transpose2d", c.transpose),
        ("ConvTranspose2d layer", c.transpose_layer),
        ("device arrays", c.device),
    ]
    for name in clconv.kernels.names():
        checks.append((f"filter2d {name}", c.filter(name)))
    checks.append(("filter2d gaussian 9x9", c.filter("gaussian", size=9, sigma=2.0)))
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
