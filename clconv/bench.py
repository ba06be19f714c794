"""Benchmark harness: clconv's backends against PyTorch CPU, OpenCV, SciPy and plain NumPy.

Runs common convolution layers and image/signal filters (:data:`CASES`),
NumPy in and NumPy out, and prints one table with the median milliseconds,
GFLOP/s (2 x real multiply-accumulates / time) and, for every clconv backend,
the ratio ``fastest other / clconv`` (above 1 means clconv is faster).

Implementations of one case are timed in rounds (after a warm-up call) so that
load from other processes hits all of them alike. Each round gives every
implementation a block of :data:`BLOCK` consecutive calls, after a pause of
:data:`SETTLE` seconds; the first call of a block and any further calls within
:data:`WARMUP` seconds of its start are not timed. The pause is there because
the worker threads of the library called before keep spinning after their call
(OpenBLAS for up to ~0.1 s, PyTorch's OpenMP) and take the cores from the next
one, which a program that calls one library repeatedly never sees. The untimed
calls are there because after the pause every library needs a few
milliseconds of calls to reach its steady speed again (PoCL's workers sleep
between commands and come back slowest), which the untimed calls absorb for
every implementation alike. benchmarks/README.md ("How it measures") has the
measurements behind both. Every implementation's result is checked against
the reference once; a wrong result is flagged in the table.

Used by ``clconv bench`` (:func:`add_arguments`, :func:`run`) and by
``benchmarks/run.py`` (:func:`main`). Importing this module is cheap: NumPy,
SciPy, PyTorch and matplotlib are imported only when a run starts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from ._cases import CASES, Case

__all__ = ["CASES", "Case", "add_arguments", "main", "run", "run_cases"]


# Calls per implementation per round (the first of each block is untimed),
# and the pause before each block that lets other libraries' threads sleep.
BLOCK = 6
SETTLE = 0.25
# Untimed calls at the start of each block go on for at least this many seconds.
WARMUP = 0.02

# Skip NumPy peers whose temporary arrays would exceed this many bytes.
PEER_MEMORY_LIMIT = 1 << 30


# ---------------------------------------------------------------------------
# Implementations. Each factory returns a callable ``f() -> ndarray`` for a
# case and its arrays, or raises _NotApplicable.

class _NotApplicable(Exception):
    """The implementation does not cover this case (left out of the table)."""


def _np():
    import numpy

    return numpy


def _pad(x, case: Case):
    np = _np()
    if not case.padding:
        return x
    p = case.padding
    return np.pad(x, [(0, 0), (0, 0)] + [(p, p)] * case.ndim)


def _tap_slices(tap: tuple[int, ...], case: Case) -> tuple[slice, ...]:
    s = case.stride
    return tuple(slice(t, t + (o - 1) * s + 1, s) for t, o in zip(tap, case.out_size))


def _taps(case: Case):
    from itertools import product

    return product(*(range(k) for k in case.kernel))


def _same_mode(case: Case) -> str | None:
    """The SciPy mode equal to the case's padding at stride 1, else None."""
    if case.stride != 1:
        return None
    if case.padding == 0:
        return "valid"
    if all(k % 2 == 1 and case.padding == k // 2 for k in case.kernel):
        return "same"
    return None


def _per_channel(case: Case) -> None:
    if case.in_channels // case.groups != 1 or case.out_channels != case.groups:
        raise _NotApplicable("needs one input channel and one filter per group")


def _clconv(backend: str) -> Callable[[Case, Any, Any], Callable[[], Any]]:
    def factory(case: Case, x, w):
        import clconv

        np = _np()
        clconv.get_backend(backend)  # BackendUnavailable -> reported as n/a
        if case.transposed:
            tconv = getattr(clconv, f"conv_transpose{case.ndim}d")

            def f():
                return tconv(x, w, stride=case.stride, padding=case.padding,
                             output_padding=case.output_padding, groups=case.groups,
                             backend=backend)
            return f
        conv = getattr(clconv, f"conv{case.ndim}d")

        def f():
            y = conv(x, w, stride=case.stride, padding=case.padding, groups=case.groups,
                     backend=backend)
            return y.get() if hasattr(y, "get") and not isinstance(y, np.ndarray) else y
        return f
    return factory


def _torch(case: Case, x, w):
    try:
        import torch
    except ImportError:
        raise _NotApplicable("torch is not installed") from None
    wt = torch.from_numpy(w)
    if case.transposed:
        tconv = getattr(torch.nn.functional, f"conv_transpose{case.ndim}d")

        def f():
            with torch.no_grad():
                return tconv(torch.from_numpy(x), wt, stride=case.stride, padding=case.padding,
                             output_padding=case.output_padding, groups=case.groups).numpy()
        return f
    conv = getattr(torch.nn.functional, f"conv{case.ndim}d")

    def f():
        with torch.no_grad():
            return conv(torch.from_numpy(x), wt, stride=case.stride, padding=case.padding,
                        groups=case.groups).numpy()
    return f


def _torch_cuda(case: Case, x, w, resident: bool = False):
    """PyTorch on a CUDA device (cuDNN): NumPy in and out like the clconv rows, or with
    the operands resident on the device (``resident``; synchronised per call)."""
    try:
        import torch
    except ImportError:
        raise _NotApplicable("torch is not installed") from None
    if not torch.cuda.is_available():
        raise _NotApplicable("no CUDA device")
    torch.backends.cudnn.benchmark = True  # cuDNN's fastest algorithm, picked at warm-up
    dev = torch.device("cuda")
    wt = torch.from_numpy(w).to(dev)
    f_nn = torch.nn.functional
    kw = {"stride": case.stride, "padding": case.padding, "groups": case.groups}
    if case.transposed:
        op = getattr(f_nn, f"conv_transpose{case.ndim}d")
        kw["output_padding"] = case.output_padding
    else:
        op = getattr(f_nn, f"conv{case.ndim}d")
    xt = torch.from_numpy(x).to(dev) if resident else None

    def f():
        with torch.no_grad():
            y = op(xt if resident else torch.from_numpy(x).to(dev), wt, **kw)
        if resident:
            torch.cuda.synchronize()
            return y
        return y.cpu().numpy()
    return f


def _torch_cuda_resident(case: Case, x, w):
    return _torch_cuda(case, x, w, resident=True)


def _scipy_channels(case: Case, x, w, one: Callable, mode: str):
    """Loop a single-channel SciPy routine over batch and channels."""
    np = _np()
    y = np.empty((case.batch, case.out_channels, *case.out_size), dtype=x.dtype)
    src = x if mode != "valid" else _pad(x, case)
    for n in range(case.batch):
        for c in range(case.out_channels):
            y[n, c] = one(src[n, c], w[c, 0], mode)
    return y


def _scipy_correlate(case: Case, x, w):
    _per_channel(case)
    import scipy.signal

    mode = _same_mode(case)
    if mode is None:
        raise _NotApplicable("strided or uneven padding")
    return lambda: _scipy_channels(case, x, w, lambda a, k, m: scipy.signal.correlate(a, k, m),
                                   mode)


def _scipy_correlate2d(case: Case, x, w):
    _per_channel(case)
    if case.ndim != 2:
        raise _NotApplicable("2-D only")
    import scipy.signal

    mode = _same_mode(case)
    if mode is None:
        raise _NotApplicable("strided or uneven padding")
    return lambda: _scipy_channels(case, x, w, scipy.signal.correlate2d, mode)


def _cv2_filter2d(case: Case, x, w):
    """OpenCV's ``filter2D`` per plane (zero border), the CPU path image users pick."""
    _per_channel(case)
    if case.ndim != 2:
        raise _NotApplicable("2-D only")
    try:
        import cv2
    except ImportError:
        raise _NotApplicable("opencv-python-headless is not installed") from None
    mode = _same_mode(case)
    if mode is None:
        raise _NotApplicable("strided or uneven padding")
    cv2.setNumThreads(os.cpu_count() or 1)

    def one(a, k, m):
        y = cv2.filter2D(a, -1, k, borderType=cv2.BORDER_CONSTANT)
        if m == "valid":
            kh, kw = k.shape
            y = y[kh // 2: y.shape[0] - (kh - 1) // 2, kw // 2: y.shape[1] - (kw - 1) // 2]
        return y

    return lambda: _scipy_channels(case, x, w, one, mode)


def _scipy_fftconvolve(case: Case, x, w):
    _per_channel(case)
    import scipy.signal

    mode = _same_mode(case)
    if mode is None:
        raise _NotApplicable("strided or uneven padding")
    axes = tuple(range(2, 2 + case.ndim))
    flipped = _np().ascontiguousarray(w[(slice(None), 0, *(slice(None, None, -1),) * case.ndim)])
    wf = flipped.reshape(1, case.out_channels, *case.kernel)
    src = x if mode == "same" else _pad(x, case)
    return lambda: scipy.signal.fftconvolve(src, wf, mode=mode, axes=axes)


def _scipy_ndimage(case: Case, x, w):
    _per_channel(case)
    import scipy.ndimage

    if _same_mode(case) != "same":
        raise _NotApplicable("needs 'same' padding")
    return lambda: _scipy_channels(
        case, x, w, lambda a, k, m: scipy.ndimage.correlate(a, k, mode="constant"), "same")


def _numpy_correlate(case: Case, x, w):
    _per_channel(case)
    if case.ndim != 1:
        raise _NotApplicable("1-D only")
    np = _np()
    mode = _same_mode(case)
    if mode is None:
        raise _NotApplicable("strided or uneven padding")
    return lambda: _scipy_channels(case, x, w, np.correlate, mode)


def _numpy_taps(case: Case, x, w):
    """Sum over kernel taps of weight x shifted view (one input channel per group)."""
    if case.in_channels // case.groups != 1:
        raise _NotApplicable("needs one input channel per group")
    np = _np()
    nd = case.ndim
    fg = case.out_channels // case.groups
    channel = np.arange(case.out_channels) // fg

    def f():
        xp = _pad(x, case)
        if fg != 1:
            xp = xp[:, channel]
        y = np.zeros((case.batch, case.out_channels, *case.out_size), dtype=x.dtype)
        for tap in _taps(case):
            wt = w[(slice(None), 0, *tap)].reshape(1, -1, *(1,) * nd)
            y += wt * xp[(slice(None), slice(None), *_tap_slices(tap, case))]
        return y
    return f


def _numpy_tap_gemm(case: Case, x, w):
    """Per-tap GEMM: for each tap, (F x C) @ (C x positions) added into the output."""
    if case.groups != 1:
        raise _NotApplicable("groups=1 only")
    np = _np()
    p = math.prod(case.out_size)

    def f():
        xp = _pad(x, case)
        y = np.zeros((case.batch, case.out_channels, p), dtype=x.dtype)
        for tap in _taps(case):
            xs = np.ascontiguousarray(xp[(slice(None), slice(None), *_tap_slices(tap, case))])
            y += np.matmul(w[(slice(None), slice(None), *tap)],
                           xs.reshape(case.batch, case.in_channels, p))
        return y.reshape(case.batch, case.out_channels, *case.out_size)
    return f


def _numpy_im2col(case: Case, x, w):
    """Sliding-window view contracted with the weights by ``tensordot`` (one big copy)."""
    if case.groups != 1:
        raise _NotApplicable("groups=1 only")
    cols = case.batch * case.in_channels * math.prod(case.kernel) * math.prod(case.out_size)
    if cols * x.itemsize > PEER_MEMORY_LIMIT:
        raise _NotApplicable("im2col matrix too large")
    np = _np()
    from numpy.lib.stride_tricks import sliding_window_view

    nd = case.ndim
    spatial = tuple(range(2, 2 + nd))

    def f():
        win = sliding_window_view(_pad(x, case), case.kernel, axis=spatial)
        win = win[(slice(None), slice(None), *(slice(None, None, case.stride),) * nd)]
        y = np.tensordot(win, w, axes=((1, *range(2 + nd, 2 + 2 * nd)), (1, *range(2, 2 + nd))))
        return np.ascontiguousarray(np.moveaxis(y, -1, 1))
    return f


PEERS: dict[str, Callable[[Case, Any, Any], Callable[[], Any]]] = {
    "torch": _torch,
    "torch.cuda": _torch_cuda,
    "torch.cuda.resident": _torch_cuda_resident,
    "scipy.correlate": _scipy_correlate,
    "scipy.correlate2d": _scipy_correlate2d,
    "cv2.filter2D": _cv2_filter2d,
    "scipy.fftconvolve": _scipy_fftconvolve,
    "scipy.ndimage": _scipy_ndimage,
    "numpy.correlate": _numpy_correlate,
    "numpy.taps": _numpy_taps,
    "numpy.tap_gemm": _numpy_tap_gemm,
    "numpy.im2col": _numpy_im2col,
}


# ---------------------------------------------------------------------------
# Running

def default_backends() -> list[str]:
    """The NumPy backend plus one ``opencl:P:D`` name per working OpenCL device
    (not ``opencl`` as well: it is one of those devices)."""
    import clconv

    names = ["numpy"] + [d.backend for d in clconv.devices() if d.works]
    others = [n for n in clconv.available_backends() if n not in ("numpy", "opencl")]
    return list(dict.fromkeys(names + others))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 90 else text[:87] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close(y, ref) -> bool:
    np = _np()
    y = np.asarray(y.cpu().numpy() if hasattr(y, "cpu") else y)
    if y.shape != ref.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    return bool(np.allclose(y, ref, rtol=1e-3, atol=1e-4 * scale))


def _time_case(case: Case, backends: list[str], repeat: int, budget: float,
               peers: list[str], block: int = 1, settle: float = 0.0,
               warmup: float = 0.0) -> dict[str, Any]:
    np = _np()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.batch, case.in_channels, *case.in_size), dtype=np.float32)
    w = rng.standard_normal(case.weight_shape, dtype=np.float32)
    impls: list[tuple[str, str, Callable]] = [
        (f"clconv:{b}", "clconv", _clconv(b)) for b in backends]
    # The SciPy and NumPy peers are correlations; only PyTorch has transposed ones.
    impls += [(name, "peer", PEERS[name]) for name in peers
              if not case.transposed or name.startswith("torch")]
    rows, runners = _warm_up(case, impls, x, w)
    _time_rounds(rows, runners, repeat, budget, block, settle, warmup)
    for name in runners:
        ms = statistics.median(rows[name]["times_ms"])
        rows[name]["ms"] = ms
        rows[name]["gflops"] = 2 * case.macs / (ms * 1e6)

    timed = [r for r in rows.values() if r["ms"] is not None and r["correct"] is not False]
    for row in rows.values():
        if row["kind"] != "clconv" or row["ms"] is None:
            continue
        others = [r for r in timed if r["kind"] == "peer"]
        _ratio(row, "ratio", others)
        _ratio(row, "ratio_torch", [r for r in others if r["impl"].startswith("torch")])
        _ratio(row, "ratio_non_torch", [r for r in others
                                         if not r["impl"].startswith("torch")])
    return {"name": case.name, "title": case.title, "macs": case.macs, "flops": 2 * case.macs,
            "dense": case.dense, "results": list(rows.values())}


def _warm_up(case: Case, impls: list[tuple[str, str, Callable]], x: Any, w: Any,
             ) -> tuple[dict[str, dict[str, Any]], dict[str, Callable[[], Any]]]:
    """One untimed call of each implementation (builds, caches), its result checked
    against the reference: the result rows and the runnable implementations."""
    rows: dict[str, dict[str, Any]] = {}
    runners: dict[str, Callable[[], Any]] = {}
    outputs: dict[str, Any] = {}
    for name, kind, factory in impls:
        row: dict[str, Any] = {"impl": name, "kind": kind, "ms": None, "gflops": None,
                               "error": None, "correct": None, "times_ms": []}
        try:
            fn = factory(case, x, w)
            t0 = time.perf_counter()
            outputs[name] = fn()
            row["warmup_ms"] = (time.perf_counter() - t0) * 1e3
            runners[name] = fn
        except _NotApplicable:
            continue
        except Exception as exc:  # a failing implementation is reported, never fatal
            row["error"] = _short(exc)
        rows[name] = row
    ref_name = next((n for n in ("clconv:numpy", "torch") if n in outputs),
                    next(iter(outputs), None))
    for name, y in outputs.items():
        rows[name]["correct"] = _close(y, outputs[ref_name])
    return rows, runners


def _time_rounds(rows: dict[str, dict[str, Any]], runners: dict[str, Callable[[], Any]],
                 repeat: int, budget: float, block: int, settle: float, warmup: float) -> None:
    """Rounds: each gives every implementation a block of consecutive calls; the first
    call of a block (block > 1), and further calls until ``warmup`` seconds have
    passed, are not timed: they absorb the switch from the previous implementation
    (see the module docstring)."""
    counts = {n: max(1, min(repeat, int(budget * 1e3 / max(rows[n]["warmup_ms"], 1e-3))))
              for n in runners}
    timed_per_block = max(block - 1, 1)
    while any(len(rows[n]["times_ms"]) < counts[n] for n in runners):
        for name, fn in runners.items():
            times = rows[name]["times_ms"]
            if len(times) >= counts[name]:
                continue
            if settle:
                time.sleep(settle)
            if block > 1:
                start = time.perf_counter()
                fn()
                while time.perf_counter() - start < warmup:
                    fn()
            for _ in range(min(timed_per_block, counts[name] - len(times))):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)


def _ratio(row: dict[str, Any], key: str, others: list[dict[str, Any]]) -> None:
    """``row[key]`` = fastest other ms / row ms (>1: clconv faster), and who that was."""
    if not others:
        row[key], row[key + "_vs"] = None, None
        return
    best = min(others, key=lambda r: r["ms"])
    row[key], row[key + "_vs"] = best["ms"] / row["ms"], best["impl"]


def run_cases(cases: list[Case], backends: list[str], repeat: int = 7, budget: float = 3.0,
              peers: list[str] | None = None, progress: Callable[[str], None] | None = None,
              block: int = BLOCK, settle: float = SETTLE,
              warmup: float = WARMUP) -> list[dict[str, Any]]:
    """Time every case; one result dict per case (see the JSON output).

    ``peers`` names entries of :data:`PEERS` (default: all of them).
    """
    peers = list(PEERS) if peers is None else peers
    if "torch" in peers:
        try:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
        except ImportError:
            pass
    results = []
    for case in cases:
        if progress:
            progress(f"  {case.name}: {case.title} ...")
        results.append(_time_case(case, backends, repeat, budget, peers, block, settle,
                                  warmup))
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    """One plain-text table: a line per case and implementation."""
    head = (f"{'case':<15} {'implementation':<20} {'ms':>10} {'GFLOP/s':>8} "
            f"{'x fastest other':>26} {'x torch':>8} {'x non-torch':>11}")
    lines = [head, "-" * len(head)]
    for res in results:
        first = True
        for row in res["results"]:
            label = res["name"] if first else ""
            first = False
            if row["ms"] is None:
                lines.append(f"{label:<15} {row['impl']:<20} n/a ({row['error']})")
                continue
            cells = [f"{label:<15} {row['impl']:<20} {row['ms']:>10.3f} {row['gflops']:>8.3g}"]
            if row["kind"] == "clconv":
                best = (f"{row['ratio']:.2f} ({row['ratio_vs']})"
                        if row.get("ratio") is not None else "-")
                cells.append(f"{best:>26}")
                for key, width in (("ratio_torch", 8), ("ratio_non_torch", 11)):
                    val = row.get(key)
                    cells.append(f"{val:>{width}.2f}" if val is not None else f"{'-':>{width}}")
            if row["correct"] is False:
                cells.append("  WRONG RESULT")
            lines.append(" ".join(cells))
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: str) -> None:
    """A grouped bar chart of GFLOP/s per case and implementation (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = list(dict.fromkeys(r["impl"] for res in results for r in res["results"]
                               if r["ms"] is not None))
    width = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(results)) + 3, 5))
    colors = plt.get_cmap("tab20").colors
    for i, impl in enumerate(impls):
        xs, ys = [], []
        for j, res in enumerate(results):
            row = next((r for r in res["results"] if r["impl"] == impl), None)
            if row and row["gflops"]:
                xs.append(j + (i - (len(impls) - 1) / 2) * width)
                ys.append(row["gflops"])
        ax.bar(xs, ys, width, label=impl, color=colors[i % len(colors)])
    ax.set_xticks(range(len(results)), [r["name"] for r in results], rotation=40, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("clconv benchmark (NumPy in, NumPy out; higher is better)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _meta(args: argparse.Namespace, backends: list[str]) -> dict[str, Any]:
    import numpy

    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "backends": backends, "repeat": args.repeat,
            "quick": args.quick, "block": args.block, "settle": args.settle,
            "warmup": args.warmup,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    for mod in ("scipy", "torch"):
        try:
            meta[mod] = __import__(mod).__version__
        except ImportError:
            meta[mod] = None
    return meta


def select_cases(names: list[str] | None, quick: bool = False) -> list[Case]:
    """The cases named, all by default; tiny versions when ``quick``."""
    by_name = {c.name: c for c in CASES}
    if not names:
        chosen = list(CASES)
    else:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown case(s) {unknown}; expected some of "
                             f"{sorted(by_name)}")
        chosen = [by_name[n] for n in dict.fromkeys(names)]
    return [c.quick() for c in chosen] if quick else chosen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark options to ``parser`` (used by ``clconv bench``)."""
    parser.add_argument("--backend", action="append", metavar="B",
                        help="clconv backend to time (repeatable); default: every available "
                             "backend and one opencl:P:D per OpenCL device")
    parser.add_argument("--cases", nargs="+", metavar="NAME",
                        help="cases to run (default all); see --list")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--repeat", type=int, default=7, metavar="N",
                        help="timed calls per implementation after a warm-up (default 7)")
    parser.add_argument("--block", type=int, default=BLOCK, metavar="N",
                        help="consecutive calls per implementation per round, the first "
                             f"one untimed (default {BLOCK}; 1: plain round-robin, every "
                             "call timed)")
    parser.add_argument("--settle", type=float, default=SETTLE, metavar="S",
                        help=f"pause before each block (default {SETTLE} s; 0 with --quick)")
    parser.add_argument("--warmup", type=float, default=WARMUP, metavar="S",
                        help="untimed calls at the start of each block go on for at least S "
                             f"seconds (default {WARMUP}; 0: only the first call; 0 with "
                             "--quick)")
    parser.add_argument("--budget", type=float, default=3.0, metavar="S",
                        help="cap the timed calls of one implementation to about S seconds")
    parser.add_argument("--peers", nargs="+", metavar="PREFIX",
                        help="time only the peers whose names start with one of these "
                             f"(default all of {list(PEERS)})")
    parser.add_argument("--no-peers", action="store_true",
                        help="time only clconv backends (no PyTorch/SciPy/NumPy peers)")
    parser.add_argument("--json", metavar="OUT.json", help="write all results as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="bar chart of GFLOP/s (matplotlib)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    parser.add_argument("--filters", action="store_true",
                        help="time the image filters against OpenCV and scipy.ndimage "
                             "instead of the convolution cases (--rows NAME... picks rows)")
    parser.add_argument("--rows", nargs="+", metavar="NAME",
                        help="with --filters: rows whose names contain one of these")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; print the table; exit status."""
    if args.list:
        for case in CASES:
            print(f"{case.name:<15} {case.title}")
        return 0
    if args.filters:
        from .bench_filters import run_filters

        results = run_filters(args.backend or default_backends(), args.repeat, args.quick,
                              args.rows)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"meta": _meta(args, args.backend or []), "filters": results}, fh,
                          indent=1)
        return 0
    try:
        cases = select_cases(args.cases, args.quick)
    except ValueError as exc:
        print(f"clconv bench: {exc}", file=sys.stderr)
        return 2
    for option, value, least in (("--repeat", args.repeat, 1), ("--block", args.block, 1),
                                 ("--settle", args.settle, 0), ("--warmup", args.warmup, 0)):
        if not value >= least:  # also rejects nan
            print(f"clconv bench: {option} {value}; expected at least {least}", file=sys.stderr)
            return 2
    backends = args.backend or default_backends()
    peers = [] if args.no_peers else [
        name for name in PEERS if not args.peers or name.startswith(tuple(args.peers))]
    print(f"clconv bench: {len(cases)} case(s), backends {backends}, "
          f"repeat {args.repeat}{', quick' if args.quick else ''}", file=sys.stderr)
    results = run_cases(cases, backends, args.repeat, args.budget, peers,
                        progress=lambda s: print(s, file=sys.stderr, flush=True),
                        block=args.block, settle=0.0 if args.quick else args.settle,
                        warmup=0.0 if args.quick else args.warmup)
    print(format_table(results))
    status = _nothing_ran(results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": _meta(args, backends), "cases": results},
                      fh, indent=1)
    if args.plot:
        try:
            plot(results, args.plot)
        except ImportError as exc:
            print(f"clconv bench: --plot needs matplotlib: {exc}", file=sys.stderr)
            return 1
    return status


def _nothing_ran(results: list[dict[str, Any]]) -> int:
    """1 (with the first error, once) when no clconv row of any case could run, else 0."""
    rows = [r for case in results for r in case["results"] if r["kind"] == "clconv"]
    if not rows or any(r["ms"] is not None for r in rows):
        return 0
    first = next((r for r in rows if r["error"]), None)
    cause = f": {first['impl']}: {first['error']}" if first else ""
    print(f"clconv bench: no clconv backend could run any case{cause}; use a working "
          "device (see `clconv devices`) or --backend numpy", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python benchmarks/run.py``)."""
    parser = argparse.ArgumentParser(prog="clconv-bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
