"""Where the time of one clconv OpenCL call goes: host overhead vs kernels.

Usage: python benchmarks/profile_opencl.py [case ...]  (case names of clconv.bench)

Prints, per case, the median wall time of a NumPy-in/NumPy-out call and of
its kernels alone (OpenCL profiling events of one call), so host overhead
(normalisation, uploads, downloads, synchronisation) is the difference.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pyopencl as cl

import clconv
from clconv.bench import CASES
from clconv.bench import _clconv as clconv_call


def main(names: list[str]) -> None:
    be = clconv.get_backend("opencl")
    dctx = be.dctx
    plain_queue = dctx.queue
    prof_queue = cl.CommandQueue(dctx.context, dctx.device,
                                 properties=cl.command_queue_properties.PROFILING_ENABLE)
    rng = np.random.default_rng(0)
    for case in CASES:
        if names and case.name not in names:
            continue
        x = rng.standard_normal((case.batch, case.in_channels, *case.in_size)).astype(np.float32)
        w = rng.standard_normal(case.weight_shape).astype(np.float32)
        # The benchmark's own call of the case (conv_transpose*d for transposed ones).
        call = clconv_call("opencl")(case, x, w)

        call()
        walls = []
        for _ in range(9):
            t = time.perf_counter()
            call()
            walls.append(time.perf_counter() - t)
        events: list = []
        real_enqueue = cl.enqueue_nd_range_kernel

        def spy(queue, kernel, *a, real_enqueue=real_enqueue, events=events, **k):
            ev = real_enqueue(queue, kernel, *a, **k)
            events.append((kernel.function_name, ev))
            return ev

        cl.enqueue_nd_range_kernel = spy
        dctx.queue = prof_queue
        try:
            kern = []
            for _ in range(5):
                events.clear()
                call()
                # Summed per kernel name: a call may launch one kernel several times.
                times: dict[str, float] = {}
                for n, e in events:
                    times[n] = times.get(n, 0.0) + (e.profile.end - e.profile.start) * 1e-6
                kern.append(times)
        finally:
            cl.enqueue_nd_range_kernel = real_enqueue
            dctx.queue = plain_queue
        per_kernel = {n: statistics.median(k[n] for k in kern) for n in kern[0]}
        total = sum(per_kernel.values())
        wall = statistics.median(walls) * 1e3
        detail = ", ".join(f"{n} {v:.3f}" for n, v in per_kernel.items())
        print(f"{case.name:15s} wall {wall:8.3f} ms  kernels {total:8.3f} ms  "
              f"host {wall - total:7.3f} ms  [{detail}]", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
