"""The per-call floor of the OpenCL backend for a case's data, against PyTorch.

Usage: python benchmarks/floor.py [case ...]   (case names of clconv.bench; default depthwise)

For each case, times in interleaved blocks (medians, same process):

- ``case``: the case itself on clconv's OpenCL backend;
- ``floor``: a 1x1 convolution with one filter per channel and no padding on
  the same input (one launch that reads every input element once, multiplies
  it and writes the result: the cheapest clconv call that moves the case's
  data, with the library's argument checks, launch and result mapping);
- ``torch``: ``torch.nn.functional.conv*d`` of the case, when PyTorch is installed.

When ``floor`` is already slower than ``torch``, no kernel can make the case
beat PyTorch on this device from Python: the time goes to the runtime
(launch, worker wake-up, mapping) and the call's Python, not the arithmetic.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import clconv
from clconv.bench import CASES


def _blocks(calls: dict, rounds: int = 15, block: int = 20) -> dict[str, float]:
    """Median seconds per call of each callable, timed in alternating blocks."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            time.sleep(0.05)
            for i in range(block):
                start = time.perf_counter()
                call()
                if i >= block // 4:  # the first calls of a block wake threads up
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(names: list[str]) -> None:
    rng = np.random.default_rng(0)
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        torch = None
    for case in CASES:
        if case.name not in (names or ["depthwise"]):
            continue
        x = rng.standard_normal((case.batch, case.in_channels, *case.in_size)).astype(np.float32)
        w = rng.standard_normal((case.out_channels, case.in_channels // case.groups,
                                 *case.kernel)).astype(np.float32)
        ones = np.ones((case.in_channels, 1) + (1,) * case.ndim, np.float32)
        fn = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}[case.ndim]
        calls = {
            "case": lambda fn=fn, x=x, w=w, case=case: fn(
                x, w, stride=case.stride, padding=case.padding, groups=case.groups,
                backend="opencl"),
            "floor": lambda fn=fn, x=x, ones=ones, case=case: fn(
                x, ones, groups=case.in_channels, backend="opencl"),
        }
        if torch is not None:
            tfn = getattr(torch.nn.functional, f"conv{case.ndim}d")
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)
            calls["torch"] = lambda tfn=tfn, xt=xt, wt=wt, case=case: tfn(
                xt, wt, stride=case.stride, padding=case.padding, groups=case.groups).numpy()
        for call in calls.values():
            call()
        ms = {name: 1e3 * t for name, t in _blocks(calls).items()}
        line = "  ".join(f"{name} {value:.3f} ms" for name, value in ms.items())
        if "torch" in ms:
            line += f"  floor/torch {ms['floor'] / ms['torch']:.2f}"
        print(f"{case.name:14s} {line}")


if __name__ == "__main__":
    main(sys.argv[1:])
