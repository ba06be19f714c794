"""Train a small CNN on scikit-learn's 8x8 handwritten digits with clconv layers.

The two convolutions (forward and backward) run on a clconv backend; ReLU,
2x2 max-pooling, the dense softmax head and the Adam optimiser are plain
NumPy. The data ship with scikit-learn (``load_digits``), nothing is
downloaded.

    python examples/train_digits.py                     # default backend, 15 epochs
    python examples/train_digits.py --backend numpy --epochs 3

Network: (1, 8, 8) -> Conv2d(1, 16, 3, padding=1) -> ReLU -> maxpool 2
-> Conv2d(16, 32, 3, padding=1) -> ReLU -> maxpool 2 -> flatten (128)
-> dense 10 -> softmax. Prints loss and accuracy per epoch and the time per
epoch; reaches about 97-98 % test accuracy with the defaults.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import clconv


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def maxpool2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max-pooling of (N, C, H, W) with even H, W; returns the result and the argmax."""
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(n, c, h // 2, w // 2, 4)
    arg = blocks.argmax(axis=-1)
    return np.take_along_axis(blocks, arg[..., None], axis=-1)[..., 0], arg


def maxpool2_backward(grad: np.ndarray, arg: np.ndarray) -> np.ndarray:
    """Route the pooled gradient to the position of each block's maximum."""
    n, c, h2, w2 = grad.shape
    blocks = np.zeros((n, c, h2, w2, 4), dtype=grad.dtype)
    np.put_along_axis(blocks, arg[..., None], grad[..., None], axis=-1)
    blocks = blocks.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return blocks.reshape(n, c, 2 * h2, 2 * w2)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class Adam:
    """Adam on a list of arrays, updated in place."""

    def __init__(self, params: list[np.ndarray], lr: float = 3e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            g = np.asarray(g, dtype=p.dtype)
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            mhat = m / (1 - b1 ** self.t)
            vhat = v / (1 - b2 ** self.t)
            p -= self.lr * mhat / (np.sqrt(vhat) + self.eps)


class DigitsCNN:
    """conv-relu-pool, conv-relu-pool, dense softmax; convolutions on a clconv backend."""

    def __init__(self, backend: str | None, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.conv1 = clconv.Conv2d(1, 16, 3, padding=1, backend=backend, seed=seed)
        self.conv2 = clconv.Conv2d(16, 32, 3, padding=1, backend=backend, seed=seed + 1)
        bound = 1 / np.sqrt(128)
        self.w = rng.uniform(-bound, bound, (128, 10)).astype(np.float32)
        self.b = np.zeros(10, dtype=np.float32)

    def params(self) -> list[np.ndarray]:
        return [self.conv1.weight, self.conv1.bias, self.conv2.weight, self.conv2.bias,
                self.w, self.b]

    def forward(self, x: np.ndarray) -> np.ndarray:
        a1 = relu(np.asarray(self.conv1(x)))
        self.mask1 = a1 > 0
        p1, self.arg1 = maxpool2(a1)
        a2 = relu(np.asarray(self.conv2(p1)))
        self.mask2 = a2 > 0
        p2, self.arg2 = maxpool2(a2)
        self.flat = p2.reshape(len(x), -1)
        return self.flat @ self.w + self.b

    def backward(self, grad_logits: np.ndarray) -> list[np.ndarray]:
        grad_w = self.flat.T @ grad_logits
        grad_b = grad_logits.sum(axis=0)
        g = (grad_logits @ self.w.T).reshape(len(grad_logits), 32, 2, 2)
        g = maxpool2_backward(g, self.arg2) * self.mask2
        g = maxpool2_backward(np.asarray(self.conv2.backward(g)), self.arg1) * self.mask1
        self.conv1.backward(g)  # dL/dx of the image is not needed
        return [self.conv1.grad_weight, self.conv1.grad_bias, self.conv2.grad_weight,
                self.conv2.grad_bias, grad_w, grad_b]

    def predict(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        return np.concatenate([self.forward(x[i:i + batch]).argmax(axis=1)
                               for i in range(0, len(x), batch)])


def load_data(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    return train_test_split(x, digits.target, test_size=0.2, random_state=seed,
                            stratify=digits.target)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--backend", default=None,
                        help="clconv backend name (default: clconv's default, the OpenCL "
                             "device when one works)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for the NumPy parts; the matrices are tiny, so more "
                             "threads mostly add overhead (up to 6x slower on busy cores)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits  # ships with scikit-learn

    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        return train(args)


def train(args: argparse.Namespace) -> float:
    """The training loop; prints one line per epoch and returns the final test accuracy."""

    backend = clconv.get_backend(args.backend)
    x_train, x_test, y_train, y_test = load_data(args.seed)
    print(f"backend {backend.name}: {len(x_train)} training and {len(x_test)} test digits",
          flush=True)
    model = DigitsCNN(backend.name, args.seed)
    opt = Adam(model.params(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    test_acc = 0.0
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        total_loss, correct = 0.0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            logits = model.forward(x_train[idx])
            logp = log_softmax(logits)
            total_loss -= logp[np.arange(len(idx)), y_train[idx]].sum()
            correct += int((logits.argmax(axis=1) == y_train[idx]).sum())
            grad = np.exp(logp)
            grad[np.arange(len(idx)), y_train[idx]] -= 1
            opt.step(model.backward(grad / len(idx)))
        test_acc = float((model.predict(x_test) == y_test).mean())
        print(f"epoch {epoch:3d}/{args.epochs}  loss {total_loss / len(x_train):.4f}  "
              f"train_acc {correct / len(x_train):.4f}  test_acc {test_acc:.4f}  "
              f"time {time.perf_counter() - t0:.2f} s", flush=True)
    print(f"final test accuracy {test_acc:.4f} on backend {backend.name} "
          f"in {time.perf_counter() - start:.1f} s")
    return test_acc


if __name__ == "__main__":
    main()
