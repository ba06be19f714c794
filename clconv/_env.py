"""The environment settings clconv reads on every call, at a dict lookup's cost.

Settings such as ``CLCONV_MAX_ALLOC`` may change while a program runs (tests
and users set them through ``os.environ``), so every call reads them again.
``os.environ.get`` encodes the name, looks it up and decodes the value: about
0.5 us each, and a small convolution reads four. On POSIX, CPython's
``os.environ`` keeps its encoded pairs in a dict that every change through
``os.environ`` updates; :func:`setting` reads that dict directly, and falls
back to ``os.environ.get`` wherever it is not there.
"""

from __future__ import annotations

import os
import sys

_DATA = getattr(os.environ, "_data", None)
_FAST = os.name == "posix" and isinstance(_DATA, dict)
_KEYS: dict[str, bytes] = {}
_ENCODING = sys.getfilesystemencoding()


def setting(name: str) -> str | None:
    """``os.environ.get(name)``."""
    if not _FAST:
        return os.environ.get(name)
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = os.fsencode(name)
    raw = _DATA.get(key)
    return None if raw is None else raw.decode(_ENCODING, "surrogateescape")
