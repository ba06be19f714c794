"""The forward path interface that every path module implements."""

from __future__ import annotations

from typing import Any

from ...._spec import ConvSpec
from ..context import DeviceContext, Limits
from ..plan import Layout, Plan
from .pack import pack_operands, packed_bytes


class ForwardPath:
    """One way of computing the forward convolution on a device.

    A path says whether it can run a problem (:meth:`supports`) and whether
    the built-in heuristic should pick it (:meth:`preferred`); gives its
    built-in configuration (:meth:`config`, a dataclass of :func:`tunable`
    fields) and the variants worth timing; and turns a problem, a
    configuration and the operands' layout into a :class:`~..plan.Plan`
    (:meth:`plan`) without touching any buffer. Weights are packed once per
    call (:meth:`pack`), for every piece.
    """

    name = ""
    weight_dependent = False  # whether it applies depends on the weights' values
    # The kernel style (see tuning.STYLE_DEFAULTS): "vector", "lanes", or None for
    # paths the heuristic picks on every device.
    style: str | None = None

    def supports(self, spec: ConvSpec, limits: Limits) -> bool:
        raise NotImplementedError

    def preferred(self, spec: ConvSpec, limits: Limits) -> bool:
        """Whether the heuristic picks this path for ``spec`` (which it supports)."""
        return True

    def preferred_across_styles(self, spec: ConvSpec, limits: Limits) -> bool:
        """Whether the heuristic picks this path for ``spec`` (which it supports) ahead
        of every path of the device's own style, on a device of the other style."""
        return False

    def config(self, spec: ConvSpec, limits: Limits) -> Any:
        raise NotImplementedError

    def variants(self, spec: ConvSpec, limits: Limits) -> list[dict[str, int]]:
        """Parameter sets besides the built-in configuration worth timing."""
        return []

    def block(self, config: Any) -> int:
        """Filters per packed weight block."""
        return config.fb

    def packed_bytes(self, spec: ConvSpec, config: Any) -> int:
        return packed_bytes(spec, self.block(config))

    def pack(self, dctx: DeviceContext, queue: Any, weight: Any, bias: Any, spec: ConvSpec,
             config: Any, allocate: Any, in_place: bool = False) -> dict[str, Any] | None:
        """The packed weight and bias bound as ``w`` and ``b`` (None: this path declines
        these weights, see :attr:`weight_dependent`). ``in_place``: host arrays may be
        used in place, the call keeping the mapping until its kernels are done."""
        return pack_operands(dctx, queue, weight, bias, spec, self.block(config), allocate,
                             in_place)

    def plan(self, dctx: DeviceContext, spec: ConvSpec, config: Any, layout: Layout,
             limits: Limits) -> Plan:
        raise NotImplementedError
