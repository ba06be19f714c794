"""The benchmark cases: common convolution layers and image/signal filters.

A plain table with no dependency beyond the standard library, so that what
needs the cases (``clconv bench``, the autotuner's ``tune(case=...)``, the
scripts in ``benchmarks/``) can import it without the benchmark harness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["CASES", "Case"]


@dataclass(frozen=True)
class Case:
    """One convolution to time: channels-first input, symmetric zero padding."""

    name: str
    title: str
    batch: int
    in_channels: int
    in_size: tuple[int, ...]
    out_channels: int
    kernel: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    groups: int = 1
    dense: bool = False  # a dense deep-learning layer (reported as such in the JSON)
    transposed: bool = False  # conv_transpose*d (weight (C, F // groups, *kernel))
    output_padding: int = 0

    @property
    def ndim(self) -> int:
        return len(self.in_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups, *self.kernel)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    @property
    def out_size(self) -> tuple[int, ...]:
        if self.transposed:
            return tuple((n - 1) * self.stride - 2 * self.padding + k + self.output_padding
                         for n, k in zip(self.in_size, self.kernel))
        return tuple((n + 2 * self.padding - k) // self.stride + 1
                     for n, k in zip(self.in_size, self.kernel))

    @property
    def macs(self) -> int:
        """Real multiply-accumulates (depthwise counts one input channel per filter; a
        transposed convolution counts every input position times its scattered taps)."""
        if self.transposed:
            return (self.batch * self.in_channels * math.prod(self.in_size)
                    * (self.out_channels // self.groups) * math.prod(self.kernel))
        return (self.batch * self.out_channels * math.prod(self.out_size)
                * (self.in_channels // self.groups) * math.prod(self.kernel))

    def quick(self) -> Case:
        """A tiny version of the case with the same structure (for smoke tests)."""
        cap = {1: 256, 2: 12, 3: 6}[self.ndim]
        depthwise = self.groups == self.in_channels and self.groups > 1
        cin = min(self.in_channels, 4)
        return replace(self, batch=min(self.batch, 2), in_channels=cin,
                       out_channels=cin if depthwise else min(self.out_channels, 4),
                       groups=cin if depthwise else 1,
                       in_size=tuple(min(n, cap) for n in self.in_size))


CASES: tuple[Case, ...] = (
    Case("conv3x3_64", "1x64x56x56, 64 filters 3x3, pad 1", 1, 64, (56, 56), 64, (3, 3),
         padding=1, dense=True),
    Case("conv3x3_batch8", "8x32x64x64, 64 filters 3x3, pad 1", 8, 32, (64, 64), 64, (3, 3),
         padding=1, dense=True),
    Case("stem7x7", "1x3x224x224, 64 filters 7x7, stride 2, pad 3", 1, 3, (224, 224), 64,
         (7, 7), stride=2, padding=3, dense=True),
    Case("pointwise", "1x256x28x28, 128 filters 1x1", 1, 256, (28, 28), 128, (1, 1),
         dense=True),
    Case("conv3x3_s2", "1x64x56x56, 64 filters 3x3, stride 2, pad 1", 1, 64, (56, 56), 64,
         (3, 3), stride=2, padding=1, dense=True),
    Case("depthwise", "depthwise 1x128x56x56 3x3, pad 1", 1, 128, (56, 56), 128, (3, 3),
         padding=1, groups=128),
    Case("rgb_depthwise", "RGB 1x3x1080x1920, depthwise 3x3, pad 1", 1, 3, (1080, 1920), 3,
         (3, 3), padding=1, groups=3),
    Case("rgb_16", "RGB 1x3x1080x1920, 16 filters 3x3, pad 1", 1, 3, (1080, 1920), 16,
         (3, 3), padding=1),
    Case("img512_15x15", "1x1x512x512, 15x15 kernel, pad 7", 1, 1, (512, 512), 1, (15, 15),
         padding=7),
    Case("signal1d_k101", "1-D 1x1x1,000,000, k=101, pad 50", 1, 1, (1_000_000,), 1, (101,),
         padding=50),
    Case("vol3d", "3-D 1x1x64x64x64, 3x3x3, pad 1", 1, 1, (64, 64, 64), 1, (3, 3, 3),
         padding=1),
    Case("latency8x8", "1x1x8x8, 3x3, pad 1 (latency)", 1, 1, (8, 8), 1, (3, 3), padding=1),
    Case("img512_3x3", "1x1x512x512, 3x3 kernel, pad 1", 1, 1, (512, 512), 1,
         (3, 3), padding=1),
    # Other common layers: training batches, MobileNet's
    # strided depthwise, grouped, 5x5, ResNet's last stage and shortcut, audio, 3-D.
    Case("layer_cifar_in", "64x3x32x32, 32 filters 3x3, pad 1", 64, 3, (32, 32), 32, (3, 3),
         padding=1),
    Case("layer_cifar_mid", "64x32x32x32, 64 filters 3x3, pad 1", 64, 32, (32, 32), 64,
         (3, 3), padding=1),
    Case("layer_dw_s2", "depthwise 1x32x112x112 3x3, stride 2, pad 1", 1, 32, (112, 112), 32,
         (3, 3), stride=2, padding=1, groups=32),
    Case("layer_grouped", "1x64x56x56, 64 filters 3x3, 4 groups, pad 1", 1, 64, (56, 56), 64,
         (3, 3), padding=1, groups=4),
    Case("layer_5x5", "1x16x64x64, 32 filters 5x5, pad 2", 1, 16, (64, 64), 32, (5, 5),
         padding=2),
    Case("layer_res7x7", "1x512x7x7, 512 filters 3x3, pad 1", 1, 512, (7, 7), 512, (3, 3),
         padding=1),
    Case("layer_1x1_s2", "1x256x56x56, 512 filters 1x1, stride 2", 1, 256, (56, 56), 512,
         (1, 1), stride=2),
    Case("layer_audio", "1-D 1x1x16000, 32 filters k=80, stride 4", 1, 1, (16000,), 32, (80,),
         stride=4),
    Case("layer_vol", "3-D 1x8x32x32x32, 16 filters 3x3x3, pad 1", 1, 8, (32, 32, 32), 16,
         (3, 3, 3), padding=1),
    # Transposed convolutions: a decoder, an upsampling head, a 3-D decoder.
    Case("tconv_decoder", "transposed 1x64x28x28 -> 32, 4x4, stride 2, pad 1", 1, 64, (28, 28),
         32, (4, 4), stride=2, padding=1, transposed=True),
    Case("tconv_upsample", "transposed 1x16x128x128 -> 16, 3x3, stride 2, pad 1, out pad 1",
         1, 16, (128, 128), 16, (3, 3), stride=2, padding=1, transposed=True,
         output_padding=1),
    Case("tconv_3d", "transposed 3-D 1x32x16x16x16 -> 16, 2x2x2, stride 2", 1, 32,
         (16, 16, 16), 16, (2, 2, 2), stride=2, transposed=True),
)
