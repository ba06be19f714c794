"""The OpenCL backend's speed targets, judged from a ``benchmarks/run.py --json`` file.

Usage: python benchmarks/targets_table.py benchmarks/results/zen5_intel_pocl.json

Prints a Markdown table: per case the OpenCL backend's median (and fastest)
ms and GFLOP/s, the NumPy backend, PyTorch and the fastest non-PyTorch peer of
the same run, and the targets judged against both the same run and the
reference numbers the targets were set against (the machine is shared:
PyTorch's times swing 2-10x with load, so a target can be met against one and
missed against the other).
"""

from __future__ import annotations

import json
import sys

# The numbers the targets were set against: (PyTorch ms, best other ms, best OpenCL
# peer ms) per case.
REFERENCE = {
    "conv3x3_64": (4.4, 10.0, 34.5), "conv3x3_batch8": (21.1, 73.9, 110),
    "stem7x7": (3.4, 14.4, 61.8), "pointwise": (1.0, 1.3, 22.4), "conv3x3_s2": (1.5, 5.0, 28.7),
    "depthwise": (1.1, 6.6, 15.9), "rgb_depthwise": (121, 157, 47.9),
    "rgb_16": (230, 987, 295), "img512_15x15": (23.1, 8.9, 34.5),
    "signal1d_k101": (436, 21.1, 42.6), "vol3d": (20.5, 8.9, 17.3),
    "latency8x8": (0.09, 0.044, 1.3),
}
DENSE = {"conv3x3_64", "conv3x3_batch8", "stem7x7", "pointwise", "conv3x3_s2"}
FASTEST = {"depthwise", "rgb_depthwise", "rgb_16", "img512_15x15", "signal1d_k101", "vol3d"}


def main(path: str) -> None:
    data = json.load(open(path))
    print("| case | OpenCL ms (fastest) | GFLOP/s | NumPy backend ms | PyTorch ms (run / reference)"
          " | best non-torch ms (which) | OpenCL x torch (run / reference) | target |")
    print("|---|---|---|---|---|---|---|---|")
    for case in data["cases"]:
        name = case["name"]
        if name not in REFERENCE:
            continue
        res = {r["impl"]: r for r in case["results"] if r.get("ms")}
        ocl = next(r for k, r in res.items() if k.startswith("clconv:opencl"))
        npb = res.get("clconv:numpy")
        torch = res.get("torch")
        others = [r for k, r in res.items() if r["kind"] != "clconv" and k != "torch"]
        best = min(others, key=lambda r: r["ms"]) if others else None
        it, io, ip = REFERENCE[name]
        ms = ocl["ms"]
        fastest = min(ocl["times_ms"])
        t_run = torch["ms"] if torch else float("nan")
        if name in DENSE:
            ok_run, ok_ref = t_run / ms >= 0.6, it / ms >= 0.6
            goal = ">= 0.6x torch"
        elif name in FASTEST:
            rivals = [t_run, best["ms"] if best else float("inf"), npb["ms"] if npb else 1e9]
            ok_run = ms < min(rivals)
            ok_ref = ms < min(it, io, ip)
            goal = "fastest"
        else:
            ok_run = ok_ref = ms < 0.3
            goal = "< 0.3 ms"
        ok3 = ms * 3 <= ip
        verdict = ("met" if ok_run and ok_ref else "met vs reference" if ok_ref
                   else "met in run" if ok_run else "MISSED")
        print(f"| {name} | {ms:.3g} ({fastest:.3g}) | {ocl['gflops']:.3g} | "
              f"{npb['ms']:.3g} | {t_run:.3g} / {it} | "
              f"{best['ms']:.3g} ({best['impl']}) | {t_run / ms:.2f} / {it / ms:.2f} | "
              f"{goal}: {verdict}; 3x OpenCL peer ({ip} ms): {'met' if ok3 else 'MISSED'} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/zen5_intel_pocl.json")
