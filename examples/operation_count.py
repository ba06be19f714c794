"""Operation count: multiply-accumulates (MACs) and output shape of a conv layer.

For a layer with C input channels, F filters of size k x k, stride s and
padding p on an H x W input:

    out = floor((H + 2p - k) / s) + 1      (same for W)
    MACs = F * out_H * out_W * C * k * k   (FLOPs = 2 * MACs)

The table varies kernel size, stride and padding, prints shape, MACs and the
measured time on the chosen backend, and checks the model against the
measurement: time should grow with MACs (the script reports the correlation
between log MACs and log time, and ns per MAC). Also draws time vs MACs, one
colour per layer, against the line of constant (median) ns per MAC.

Run: python examples/operation_count.py [--out OUT] [--backend B] [--size N] [--repeat R]
Writes OUT/operation_count.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import clconv

CHANNELS, FILTERS = 16, 16
LAYERS = [  # (kernel, stride, padding)
    (1, 1, 0), (3, 1, 0), (3, 1, 1), (3, 2, 1), (5, 1, 2), (5, 2, 2), (7, 1, 3), (7, 2, 3),
    (9, 1, 4), (3, 4, 1),
]


def layer_shape(size: int, k: int, s: int, p: int) -> int:
    """Output size of one spatial axis."""
    return (size + 2 * p - k) // s + 1


def macs(size: int, k: int, s: int, p: int) -> int:
    """Multiply-accumulates of the layer on a size x size input."""
    out = layer_shape(size, k, s, p)
    return FILTERS * out * out * CHANNELS * k * k


def best_time(fn, repeat: int) -> float:
    fn()                                   # warm-up: kernel build, caches
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    parser.add_argument("--backend", help="backend name (default: the default device)")
    parser.add_argument("--size", type=int, default=64, help="input height = width (64)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per layer (3)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = clconv.get_backend(args.backend).name
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, CHANNELS, args.size, args.size)).astype(np.float32)

    print(f"backend {backend}; input 1x{CHANNELS}x{args.size}x{args.size}, {FILTERS} filters")
    header = f"{'k':>2} {'s':>2} {'p':>2}  {'output':>14}  {'MACs':>12}  {'ms':>8}  {'ns/MAC':>7}"
    print(header)
    print("-" * len(header))
    rows = []
    for k, s, p in LAYERS:
        w = rng.standard_normal((FILTERS, CHANNELS, k, k)).astype(np.float32)
        y = clconv.conv2d(x, w, stride=s, padding=p, backend=backend)
        n_out = layer_shape(args.size, k, s, p)
        assert y.shape == (1, FILTERS, n_out, n_out), (y.shape, n_out)   # the formula holds
        m = macs(args.size, k, s, p)
        seconds = best_time(lambda w=w, s=s, p=p: clconv.conv2d(x, w, stride=s, padding=p,
                                                                 backend=backend),
                            args.repeat)
        rows.append((k, s, p, tuple(y.shape), m, seconds))
        print(f"{k:>2} {s:>2} {p:>2}  {str(tuple(y.shape)):>14}  {m:>12,}  "
              f"{seconds * 1e3:8.2f}  {seconds / m * 1e9:7.3f}")

    m_arr = np.array([r[4] for r in rows], dtype=np.float64)
    t_arr = np.array([r[5] for r in rows])
    corr = float(np.corrcoef(np.log(m_arr), np.log(t_arr))[0, 1])
    print(f"\ncorrelation of log MACs with log time: {corr:.2f} "
          f"({'time follows the MAC count' if corr > 0.8 else 'fixed costs dominate at this size'}"
          f"; small layers pay launch and transfer overhead, so ns/MAC is highest there)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Layers with nearly equal MACs sit on top of each other, so text next to the
    # points collides: each layer gets its own colour (and a marker per stride)
    # and is named in a legend beside the axes instead.
    fig, ax = plt.subplots(figsize=(7.5, 4))
    markers = {1: "o", 2: "s", 4: "^"}
    colours = plt.get_cmap("tab10").colors
    for i, (k, s, p, _, m, t) in enumerate(rows):
        ax.loglog(m, t * 1e3, markers.get(s, "D"), color=colours[i % len(colours)],
                  markersize=7, alpha=0.85, linestyle="none",
                  label=f"k{k} s{s} p{p}  {m / 1e6:5.1f}M")
    # Pure proportionality (the median ns/MAC): points above it pay fixed costs.
    ns_per_mac = float(np.median(t_arr / m_arr))
    span = np.array([m_arr.min(), m_arr.max()])
    ax.loglog(span, span * ns_per_mac * 1e3, "--", color="0.6", linewidth=1,
              label=f"{ns_per_mac * 1e9:.3f} ns/MAC")
    ax.set_xlabel("multiply-accumulates")
    ax.set_ylabel("best time (ms)")
    ax.set_title(f"conv2d on {backend}: time vs MACs (corr {corr:.2f})", fontsize=10)
    ax.legend(title="kernel, stride, pad, MACs", loc="upper left", bbox_to_anchor=(1.02, 1),
              title_fontsize=8, frameon=False, prop={"family": "monospace", "size": 8})
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    fig.tight_layout()
    path = out / "operation_count.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
