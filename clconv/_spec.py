"""The frozen description of one convolution that every backend receives.

A ``ConvSpec`` is built once by :mod:`clconv._normalize` from the user's
arguments. Backends read it; they never look at the user's arguments again.
All sizes are final: padding is explicit (before, after) per spatial axis and
the output size is already computed and validated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class HashedOnce:
    """For frozen dataclasses that key caches: the hash is computed once per
    object (a call hashes its spec, limits and path choice several times).
    The dataclass must name it (``__hash__ = HashedOnce.__hash__``): it
    generates its own hash for every frozen class that defines none."""

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f) for f in self.__dataclass_fields__))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict:
        # The cached hash depends on the process (string hashing is salted).
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}


@dataclass(frozen=True)
class ConvSpec(HashedOnce):
    """Everything a backend needs to run one N-d convolution.

    Layout of the arrays a backend receives and returns: input is batched,
    ``(N, C, *in_size)`` when ``channels_last`` is false, else
    ``(N, *in_size, C)``; the output uses the same layout with ``F`` channels
    and ``out_size``. The weight is always ``(F, C // groups, *kernel_size)``.
    """

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    out_size: tuple[int, ...]
    # The border rule, named by numpy.pad's modes, which have one meaning each:
    # "constant" (with fill_value), "reflect", "edge", "wrap" or "symmetric".
    border: str = "constant"
    fill_value: float = 0.0
    flip: bool = False
    has_bias: bool = False
    # The result dtype: "float16", "float32" or "float64".
    dtype: str = "float32"
    channels_last: bool = False

    __hash__ = HashedOnce.__hash__

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (1, 2 or 3)."""
        return len(self.in_size)

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.channels_last:
            return (self.batch, *self.in_size, self.in_channels)
        return (self.batch, self.in_channels, *self.in_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.channels_last:
            return (self.batch, *self.out_size, self.out_channels)
        return (self.batch, self.out_channels, *self.out_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_per_group, *self.kernel_size)

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(n + b + a for n, b, a in zip(self.in_size, self.pad_before, self.pad_after))

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the forward pass (2 * macs = FLOPs)."""
        return (self.batch * self.out_channels * math.prod(self.out_size)
                * self.in_per_group * math.prod(self.kernel_size))


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of ``shape``."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))
