"""An FFT path evaluated: pyvkfft's OpenCL FFTs against clconv's own kernels.

Usage: python benchmarks/fft_eval.py [opencl:P:D ...]   (default: the default device)

Needs pyvkfft, which is not a clconv dependency: PyPI has only its source, and
building it needs a C++ compiler and the OpenCL headers
(``VKFFT_BACKEND=opencl pip install pyvkfft`` after installing
``opencl-headers ocl-icd-opencl-dev``). For single-channel images and large
kernels it times, with both operands resident on the device, one FFT
convolution (real-to-complex FFTs of the zero-padded image and kernel at a
fast FFT length, a complex product, the inverse FFT) against
``clconv.conv2d`` on the same device, and checks the FFT result against
clconv's NumPy backend. Median ms; benchmarks/README.md has the numbers.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pyopencl.array as cla
import scipy.fft
from pyvkfft.opencl import VkFFTApp

import clconv

CASES = ((512, 15), (512, 31), (1024, 15))  # (image side, kernel side)


def median_ms(fn, repeat: int = 15) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def evaluate(backend: str) -> None:
    queue = clconv.get_backend(backend).dctx.queue
    rng = np.random.default_rng(0)
    for n, k in CASES:
        one_case(backend, queue, n, k, rng)


def one_case(backend: str, queue, n: int, k: int, rng: np.random.Generator) -> None:
    """Print both timings of an n x n image with a k x k kernel."""
    x = rng.standard_normal((n, n)).astype(np.float32)
    w = rng.standard_normal((k, k)).astype(np.float32)
    ref = clconv.conv2d(x[None, None], w[None, None], padding=k // 2, backend="numpy")[0, 0]
    m = scipy.fft.next_fast_len(n + k - 1, real=True)
    xh = np.zeros((m, m), np.float32)
    xh[:n, :n] = x
    wh = np.zeros((m, m), np.float32)
    wh[:k, :k] = w[::-1, ::-1]  # correlation = convolution with the reversed kernel
    xd, wd = cla.to_device(queue, xh), cla.to_device(queue, wh)
    app = VkFFTApp((m, m), np.float32, queue, r2c=True, ndim=2, inplace=False)
    xf = cla.empty(queue, (m, m // 2 + 1), np.complex64)
    wf = cla.empty(queue, (m, m // 2 + 1), np.complex64)
    out = cla.empty(queue, (m, m), np.float32)

    def fft_conv() -> None:
        app.fft(xd, xf)
        app.fft(wd, wf)
        xf.__imul__(wf)
        app.ifft(xf, out)
        queue.finish()

    fft_conv()
    y = out.get()[k // 2:k // 2 + n, k // 2:k // 2 + n]
    err = float(np.abs(y - ref).max() / np.abs(ref).max())
    x_dev = clconv.to_device(x[None, None], backend=backend)

    def direct() -> None:
        clconv.conv2d(x_dev, w[None, None], padding=k // 2, backend=backend).finish()

    print(f"{backend} {n}x{n}, {k}x{k}: pyvkfft FFT (length {m}) {median_ms(fft_conv):.2f} "
          f"ms (max rel err {err:.1e}); clconv {median_ms(direct):.2f} ms", flush=True)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["opencl"]:
        evaluate(name)
