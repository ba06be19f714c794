"""The OpenCL backend's speed targets, judged from one or more ``--json`` runs.

Usage: python benchmarks/targets_table.py RUN.json [RUN.json ...]

Prints a Markdown table: per case the median ms over the runs of clconv's NumPy
backend, each OpenCL backend of the runs, PyTorch and the fastest other peer;
each OpenCL backend's speed against PyTorch and against the NumPy backend
(per-run ratios, then their median: the implementations of one case are
interleaved within a run, so a run's ratios are fairer than ratios of medians);
and the targets of issue 17 judged per OpenCL backend:

- dense layers and the depthwise layer: at least 0.8x PyTorch, and at most 10%
  slower than the NumPy backend;
- the image, 1-D and 3-D rows: faster than every other column;
- the 8x8 latency case: under 0.05 ms per call;
- every other case: at most 10% slower than the NumPy backend.
"""

from __future__ import annotations

import json
import statistics
import sys

TORCH_TARGET = {"conv3x3_64", "conv3x3_batch8", "stem7x7", "pointwise", "conv3x3_s2",
                "depthwise"}
FASTEST = {"rgb_depthwise", "rgb_16", "img512_15x15", "signal1d_k101", "vol3d"}
TINY = {"latency8x8": 0.05}


def _times(run: dict) -> dict[str, dict[str, float]]:
    return {case["name"]: {r["impl"]: r["ms"] for r in case["results"] if r.get("ms")}
            for case in run["cases"]}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def main(paths: list[str]) -> None:
    runs = [json.load(open(p)) for p in paths]
    times = [_times(r) for r in runs]
    names = [c["name"] for c in runs[0]["cases"]]
    backends = sorted({k for t in times for case in t.values() for k in case
                       if k.startswith("clconv:opencl")})
    head = ["case", "NumPy backend", *(b.split(":", 1)[1] for b in backends), "PyTorch",
            "best other"]
    head += [f"{b.split(':', 1)[1]} x {ref}" for b in backends for ref in ("torch", "NumPy")]
    head += [f"target ({b.split(':', 1)[1]})" for b in backends]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name in names:
        rows = [t[name] for t in times if name in t]

        def med(impl: str, rows: list = rows) -> float | None:
            return _median([r[impl] for r in rows if impl in r])

        def ratio(impl: str, ref: str, rows: list = rows) -> float | None:
            return _median([r[ref] / r[impl] for r in rows if impl in r and ref in r])

        peers: dict[str, list[float]] = {}
        for r in rows:
            for impl, ms in r.items():
                if not impl.startswith("clconv") and not impl.startswith("torch"):
                    peers.setdefault(impl, []).append(ms)
        best = min(((k, statistics.median(v)) for k, v in peers.items()),
                   key=lambda kv: kv[1], default=None)
        cells = [name, _fmt(med("clconv:numpy")), *(_fmt(med(b)) for b in backends),
                 _fmt(med("torch")), f"{_fmt(best[1])} {best[0]}" if best else "-"]
        cells += [_fmt(ratio(b, ref)) for b in backends for ref in ("torch", "clconv:numpy")]
        for b in backends:
            ms = med(b)
            if ms is None:
                cells.append("-")
            elif name in TORCH_TARGET:
                r, n = ratio(b, "torch"), ratio(b, "clconv:numpy")
                cells.append(f">= 0.8x torch: {'met' if r and r >= 0.8 else 'MISSED'}; "
                             f"<= 1.1x NumPy: {'met' if n and n >= 1 / 1.1 else 'MISSED'}")
            elif name in FASTEST:
                rivals = [v for k, v in ((k, med(k)) for k in (*peers, "torch", "clconv:numpy"))
                          if v is not None]
                cells.append(f"fastest: {'met' if ms < min(rivals) else 'MISSED'}")
            elif name in TINY:
                cells.append(f"< {TINY[name]} ms: {'met' if ms < TINY[name] else 'MISSED'}")
            else:
                r = ratio(b, "clconv:numpy")
                cells.append(f"<= 1.1x NumPy backend: {'met' if r and r >= 1 / 1.1 else 'MISSED'}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["benchmarks/results/zen5_intel_pocl.json"])
