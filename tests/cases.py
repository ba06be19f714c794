"""The one description of a convolution test case, shared by the test files.

A :class:`Case` holds the arguments of one conv1d/2d/3d call and the shape of
its operands (spatial sizes only); the files that use it build operands from
it their own way (random floats in the oracle grid, float64 normals in the
property tests). Results are compared with :mod:`clconv.testing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import clconv

CONV = {1: clconv.conv1d, 2: clconv.conv2d, 3: clconv.conv3d}


def per_dim(value: Any, ndim: int) -> tuple:
    """``value`` for each of ``ndim`` axes (a tuple or list as given, else repeated)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim


@dataclass(frozen=True)
class Case:
    """One convolution: its arguments and operand shapes (sizes are spatial only)."""

    ndim: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    batch: int | None = 2          # None: unbatched input
    channels: int = 4
    filters: int = 6
    groups: int = 1
    stride: Any = 1
    padding: Any = 1
    dilation: Any = 1
    padding_mode: str = "zeros"
    channels_last: bool = False
    flip: bool = False
    bias: bool = True
    layout: str = "contiguous"     # contiguous | strided | reversed | fortran
    dtype: str = "float32"

    @property
    def reduction(self) -> int:
        """Products summed per output value (the bias counts as one more)."""
        return (self.channels // self.groups) * math.prod(self.kernel) + int(self.bias)

    def ident(self) -> str:
        """The test id: every argument that distinguishes the case."""
        parts = [f"{self.ndim}d", "x".join(map(str, self.size)),
                 "k" + "x".join(map(str, self.kernel)),
                 "unb" if self.batch is None else f"n{self.batch}",
                 f"c{self.channels}f{self.filters}g{self.groups}",
                 f"s{self.stride}", f"p{self.padding}", f"d{self.dilation}", self.padding_mode,
                 "cl" if self.channels_last else "cf"]
        if self.flip:
            parts.append("flip")
        if not self.bias:
            parts.append("nobias")
        if self.layout != "contiguous":
            parts.append(self.layout)
        parts.append(self.dtype)
        return "-".join(str(p).replace(" ", "") for p in parts)

    def pads(self) -> list[tuple[int, int]]:
        """Explicit ``(before, after)`` per axis, string forms resolved by API.md section 1."""
        if isinstance(self.padding, str):
            pairs = []
            for n, k, s, d in zip(self.size, self.kernel, per_dim(self.stride, self.ndim),
                                  per_dim(self.dilation, self.ndim)):
                span = (k - 1) * d + 1
                form = self.padding.lower()
                if form == "valid":
                    pairs.append((0, 0))
                elif form == "full":
                    pairs.append((span - 1, span - 1))
                else:   # same: ceil(n / s) outputs, the odd pixel after
                    total = max((math.ceil(n / s) - 1) * s + span - n, 0)
                    pairs.append((total // 2, total - total // 2))
            return pairs
        return [tuple(p) if isinstance(p, (tuple, list)) else (p, p)
                for p in per_dim(self.padding, self.ndim)]

    def valid(self) -> bool:
        """True when the (dilated) kernel fits the padded input on every axis."""
        return all(n + b + a >= (k - 1) * d + 1
                   for n, k, d, (b, a) in zip(self.size, self.kernel,
                                              per_dim(self.dilation, self.ndim), self.pads()))

    def kwargs(self, **changes: Any) -> dict:
        """The keyword arguments of the call, with ``changes`` applied."""
        kw = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                  groups=self.groups, padding_mode=self.padding_mode,
                  data_format="channels_last" if self.channels_last else "channels_first",
                  flip=self.flip)
        kw.update(changes)
        return kw

    def call(self, x: Any, w: Any, b: Any, backend: str, **changes: Any) -> Any:
        """conv{ndim}d of the operands on ``backend`` with this case's arguments."""
        return CONV[self.ndim](x, w, b, backend=backend, **self.kwargs(**changes))
