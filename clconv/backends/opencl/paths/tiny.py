"""The tiny path: small problems in one launch of the direct kernel."""

from __future__ import annotations

from ...._spec import ConvSpec
from ..context import Limits
from .direct import DirectPath


class TinyPath(DirectPath):
    """Problems of at most :attr:`MAX_MACS` multiply-adds: the direct kernel alone.

    Every OpenCL command costs a synchronisation-sized delay on a CPU device,
    more than such a problem computes, so this path skips the pad pre-pass of
    the fast paths; with small host operands copied at buffer creation and
    one blocking read, a call is one launch and one read.
    """

    name = "tiny"
    MAX_MACS = 1 << 16

    def preferred(self, spec: ConvSpec, limits: Limits) -> bool:
        return spec.macs <= self.MAX_MACS
