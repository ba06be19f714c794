"""Device limits for launch planning and tiling, with the environment overrides.

Both variables are read at call time:

* ``CLCONV_MAX_ALLOC`` (bytes; ``inf`` for none): lowers the largest single
  buffer, so tests can exercise tiling on small arrays. Host inputs are tiled
  to fit it; a device-array input is already resident and its result must
  fit it (else ``AllocationError``).
* ``CLCONV_STRICT_LIMITS=1``: caps work-groups at :data:`STRICT_WORK_GROUP`
  items and local memory at :data:`STRICT_LOCAL_MEM` bytes, like a small GPU,
  even on devices (PoCL) that report far larger limits, and plans the
  GPU-shaped work-groups (:attr:`Limits.group_items`), so the kernels are
  launched as a GPU would run them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..._normalize import env_bytes
from .devices import DeviceInfo

STRICT_WORK_GROUP = 256
# Work-items per group that the fast paths plan on GPUs and accelerators: a
# compute unit runs a group's items in SIMD lanes (32-64 wide), so groups of
# one item would leave most lanes idle. CPU devices (PoCL) loop over a
# group's items instead and pay only ~10 ns per group, so there each path
# keeps the shape measured best on the CPU.
GPU_GROUP_ITEMS = 64
STRICT_LOCAL_MEM = 32 * 1024
# Share of global memory one piece of work may use: leaves room for the
# caller's own arrays and the driver.
MEMORY_FRACTION = 0.5


@dataclass(frozen=True)
class Limits:
    """What one launch / one piece of work may use on a device."""

    max_alloc: int
    memory_budget: int
    max_work_group: int
    local_mem: int
    strict: bool
    group_items: int = 1  # items per work-group the fast paths aim for (1: CPU shapes)


def strict_mode() -> bool:
    """True when ``CLCONV_STRICT_LIMITS`` asks for GPU-sized limits."""
    return os.environ.get("CLCONV_STRICT_LIMITS", "").strip().lower() in ("1", "true", "yes", "on")


# (id(info), CLCONV_MAX_ALLOC, CLCONV_STRICT_LIMITS) -> (info, Limits): the variables
# are still read at every call, only the arithmetic is remembered.
_memo: dict[tuple, tuple[DeviceInfo, Limits]] = {}


def current_limits(info: DeviceInfo) -> Limits:
    """The device's limits, lowered by ``CLCONV_MAX_ALLOC`` and strict mode."""
    env = os.environ
    key = (id(info), env.get("CLCONV_MAX_ALLOC"), env.get("CLCONV_STRICT_LIMITS"))
    hit = _memo.get(key)
    if hit is not None and hit[0] is info:
        return hit[1]
    limits = _compute_limits(info)
    if len(_memo) > 64:
        _memo.clear()
    _memo[key] = (info, limits)
    return limits


def _compute_limits(info: DeviceInfo) -> Limits:
    max_alloc = info.max_alloc
    budget = int(info.global_mem * MEMORY_FRACTION)
    override = env_bytes("CLCONV_MAX_ALLOC")
    if override is not None:
        max_alloc = min(max_alloc, override)
    strict = strict_mode()
    wg = info.max_work_group_size or 1
    local = info.local_mem
    if strict:
        wg = min(wg, STRICT_WORK_GROUP)
        local = min(local, STRICT_LOCAL_MEM)
    group_items = min(GPU_GROUP_ITEMS, wg) if strict or info.type != "cpu" else 1
    return Limits(max_alloc=max_alloc, memory_budget=budget, max_work_group=wg,
                  local_mem=local, strict=strict, group_items=group_items)
