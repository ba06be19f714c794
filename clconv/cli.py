"""The ``clconv`` command line (also ``python -m clconv``)."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _cmd_devices(args: argparse.Namespace) -> int:
    from . import devices

    found = devices()
    if not found:
        print("no OpenCL platform or device found; clconv will use the NumPy backend")
        return 0
    header = ("backend", "type", "name", "platform", "CUs", "global mem", "max alloc",
              "fp64", "fp16")
    rows = [(d.backend, d.type, d.name, d.platform, str(d.compute_units),
             f"{d.global_mem / 2**30:.1f} GiB", f"{d.max_alloc / 2**30:.1f} GiB",
             "yes" if d.fp64 else "no", "yes" if d.fp16 else "no") for d in found]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clconv", description=__doc__)
    parser.add_argument("--version", action="version", version=f"clconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("devices", help="list OpenCL platforms and devices")
    p.set_defaults(func=_cmd_devices)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clconv`` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
