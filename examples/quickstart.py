"""A first convolution on the default device, checked against the NumPy reference.

Run: python examples/quickstart.py
"""

import numpy as np

import clconv


def main() -> None:
    backend = clconv.get_backend()
    print(f"default backend: {backend.name}")
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, 64, 64), dtype=np.float32)        # one RGB image, N C H W
    filters = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    y = clconv.conv2d(image, filters, stride=2, padding="same")
    ref = clconv.conv2d(image, filters, stride=2, padding="same", backend="numpy")
    print(f"input {image.shape} -> output {y.shape}")
    print(f"max |default - numpy| = {np.abs(y - ref).max():.2e}")
    print("1-D pattern match:", clconv.convolve([0, 0, 0, 1, 2, 3, 2, 1, 0, 0], [1, 2, 3, 2, 1]))


if __name__ == "__main__":
    main()
