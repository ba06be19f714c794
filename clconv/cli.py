"""The ``clconv`` command line (also ``python -m clconv``).

Commands: ``devices``, ``filter``, ``selftest``, ``bench``, ``tune``. Every error is
one line on stderr and a non-zero exit code: 1 when a run failed (a bad
image, a failed self-test check), 2 for a bad command line or option. Set
``CLCONV_DEBUG=1`` to get the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .errors import ArgumentError, BackendUnavailable, ClconvError, KernelBuildError

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line or option value: exit code 2."""


def _error(message: str) -> None:
    print(f"clconv: error: {message}", file=sys.stderr)


HINT = ("use a working device (see `clconv devices`) or `--backend numpy`")


def device_fault(exc: BaseException) -> str | None:
    """The root cause of a device failure in a few lines, or None for any other error.

    A kernel that does not build or a device that cannot run affects every
    later call the same way, so commands report it once, with the device, the
    first lines of the build log and :data:`HINT`, and stop.
    """
    if isinstance(exc, KernelBuildError):
        log = [line for line in exc.log.splitlines() if line.strip()][:3]
        head = str(exc).splitlines()[0]
        lines = [f"OpenCL device {exc.device!r} cannot build clconv's kernels ({head})"]
        lines += [f"  build log: {line.strip()}" for line in log]
        return "\n".join([*lines, HINT])
    if isinstance(exc, BackendUnavailable):
        return f"{str(exc).splitlines()[0]}; {HINT}"
    return None


def _cmd_devices(args: argparse.Namespace) -> int:
    from . import devices

    found = devices()
    if not found:
        print("no OpenCL platform or device found; clconv will use the NumPy backend")
        return 0
    header = ("backend", "type", "name", "platform", "CUs", "global mem", "max alloc",
              "fp64", "fp16", "driver", "status")
    rows = [(d.backend, d.type, d.name, d.platform, str(d.compute_units),
             f"{d.global_mem / 2**30:.1f} GiB", f"{d.max_alloc / 2**30:.1f} GiB",
             "yes" if d.fp64 else "no", "yes" if d.fp16 else "no", d.driver_version,
             "works" if d.works else "NOT WORKING") for d in found]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for d in found:
        if not d.works:
            print(f"{d.backend} ({d.name}, {d.platform}) does not work: {d.problem}")
    working = [d for d in found if d.works]
    if not working:
        print("no OpenCL device works; clconv will use the NumPy backend")
        return 0
    try:
        from . import get_backend

        info = get_backend("opencl").dctx.info
        print(f"'opencl' (the default) selects {info.backend}: {info.name} ({info.platform})")
    except ClconvError as exc:
        print(f"'opencl' cannot start: {str(exc).splitlines()[0]}")
    return 0



# ---------------------------------------------------------------- filter

class _Progress:
    """A one-line progress bar on stderr: ``[#####     ] 5/10 name``."""

    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.start = time.perf_counter()
        self.drawn = False

    def update(self, done: int, label: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(self.total, 1)
        elapsed = time.perf_counter() - self.start
        line = (f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{self.total} "
                f"{elapsed:5.1f}s {label[:40]}")
        self.stream.write(line.ljust(90))
        self.stream.flush()
        self.drawn = True

    def end_line(self) -> None:
        """Move past the bar so that a message gets its own line."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _collect_inputs(items: list[str]) -> list[Path]:
    """Files as given; folders expand to their image files (sorted, not recursive)."""
    from ._images import IMAGE_SUFFIXES

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"folder {item!r} holds no image files "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        else:
            paths.append(path)   # a missing file is reported with the other bad files
    return paths


def _parse_padding(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _plan_outputs(inputs: list[Path], out: Path, many: bool) -> list[Path]:
    """One output path per input: ``out`` itself for one file, else ``out/<name>``."""
    from ._images import IMAGE_SUFFIXES

    if not many and not out.is_dir() and out.suffix.lower() in IMAGE_SUFFIXES:
        return [out]
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {str(out)!r} is a file; several inputs need an output folder")
    targets = [out / p.name for p in inputs]
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, targets):
        if dst in seen:
            raise UsageError(f"inputs {str(seen[dst])!r} and {str(src)!r} would both be "
                             f"written to {str(dst)!r}; rename one")
        seen[dst] = src
    return targets


def _cmd_filter(args: argparse.Namespace) -> int:
    """``clconv filter``: read, filter, write, with one error message per failure kind
    (the length is its list of user errors, each with its own hint)."""
    from . import filter2d, get_backend, kernels
    from ._images import ImageModeError, read_image, to_pixels, write_image
    from ._normalize import border_mode, explicit_padding, int_tuple

    params: dict[str, Any] = {}
    if args.size is not None:
        params["size"] = args.size
    if args.sigma is not None:
        params["sigma"] = args.sigma
    kernel = kernels.get(args.kernel, **params)          # ArgumentError -> exit 2
    backend = get_backend(args.backend).name             # BackendUnavailable -> exit 2
    padding = _parse_padding(args.padding)
    border_mode(args.padding_mode)                       # option errors before any file
    explicit_padding(padding, 2)
    int_tuple(args.stride, 2, "stride", 1)
    inputs = _collect_inputs(args.images)
    many = len(inputs) > 1 or len(args.images) > 1 or Path(args.images[0]).is_dir()
    outputs = _plan_outputs(inputs, Path(args.output), many)
    try:
        outputs[0].parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {str(outputs[0].parent)!r}: "
                         f"{exc.strerror or exc}") from None

    show = sys.stderr.isatty() if args.progress is None else args.progress
    progress = _Progress(len(inputs), sys.stderr, enabled=many and show and not args.quiet)
    failed: list[str] = []
    for done, (src, dst) in enumerate(zip(inputs, outputs), start=1):
        stage = "read"
        try:
            pixels, maxval = read_image(src)
            stage = "filter"
            values = filter2d(pixels, kernel, stride=args.stride, padding=padding,
                              padding_mode=args.padding_mode, backend=backend)
            stage = "write"
            write_image(dst, to_pixels(values, maxval, args.scale))
        except (OSError, ImageModeError, ClconvError) as exc:
            fault = device_fault(exc) if stage == "filter" else None
            if fault is not None:  # every later image would fail the same way
                progress.end_line()
                _error(f"{src}: {fault}")
                _error(f"stopped after {done - 1 - len(failed)} of {len(inputs)} images")
                return EXIT_FAILED
            if isinstance(exc, FileNotFoundError) and stage == "read":
                reason = "no such file"
            elif stage == "write":
                reason = f"cannot write {dst}: {exc}"
            else:
                reason = str(exc)
            progress.update(done, src.name)
            progress.end_line()
            _error(f"{src}: {reason.splitlines()[0] if reason else type(exc).__name__}")
            failed.append(str(src))
            continue
        progress.update(done, src.name)
    progress.end_line()
    written = len(inputs) - len(failed)
    if failed:
        _error(f"{len(failed)} of {len(inputs)} images failed ({', '.join(failed)}); "
               f"{written} written")
        return EXIT_FAILED
    if not args.quiet:
        where = outputs[0] if not many else Path(args.output)
        print(f"{written} image{'s' if written != 1 else ''} written to {where}")
    return 0


# ---------------------------------------------------------------- selftest

def _cmd_selftest(args: argparse.Namespace) -> int:
    from . import get_backend
    from ._selftest import format_table, run_selftest

    backend = get_backend(args.backend).name
    start = time.perf_counter()
    results = run_selftest(backend)
    print(f"clconv selftest on backend {backend!r} against the NumPy reference")
    print(format_table(results))
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed "
          f"in {time.perf_counter() - start:.1f} s")
    faults = [f for f in (device_fault(r.exception) for r in failed if r.exception) if f]
    if faults:
        _error(f"{len(faults)} of the failures have one root cause: {faults[0]}")
    return EXIT_FAILED if failed else 0


# ---------------------------------------------------------------- bench

def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        from . import bench
        add_arguments, run = bench.add_arguments, bench.run
    except Exception as exc:  # a missing or broken bench module: one clear line
        raise UsageError(f"the bench command is unavailable: clconv.bench failed to load "
                         f"({type(exc).__name__}: {exc})") from None
    parser = argparse.ArgumentParser(prog="clconv bench",
                                     description="GFLOP/s per case and backend")
    add_arguments(parser)
    return int(run(parser.parse_args(args.rest)) or 0)


# ---------------------------------------------------------------- tune

def _cmd_tune(args: argparse.Namespace) -> int:
    from .backends.opencl.tune import tune

    def shape(text: str | None) -> tuple[int, ...] | None:
        try:
            return None if text is None else tuple(int(v) for v in text.split(","))
        except ValueError:
            raise UsageError(f"shape {text!r}; expected integers separated by commas") from None

    common = {"backend": args.backend, "repeat": args.repeat, "store": not args.no_store}
    if args.cases:
        problems = [{"case": name} for name in args.cases]
    elif args.input and args.weight:
        problems = [{"input_shape": shape(args.input), "weight_shape": shape(args.weight),
                     "stride": args.stride, "padding": _parse_padding(args.padding),
                     "dilation": args.dilation, "groups": args.groups, "dtype": args.dtype}]
    else:
        raise UsageError("clconv tune needs CASE names or both --input and --weight")
    status = 0
    for problem in problems:
        result = tune(**problem, **common)
        print(result.format(), flush=True)
        if result.winner is None:
            errors = [c.exception for c in result.candidates if c.exception is not None]
            cause = next((f for f in map(device_fault, errors) if f), None)
            _error("every candidate was rejected"
                   + (f"; root cause: {cause}" if cause else ""))
            status = EXIT_FAILED
    return status


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand.

    Long by nature: one flat list of declarations, read top to bottom like the
    ``--help`` it produces; splitting it would only scatter them.
    """
    parser = argparse.ArgumentParser(
        prog="clconv", description="Convolutions as OpenCL kernels, with a NumPy reference.")
    parser.add_argument("--version", action="version", version=f"clconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("devices", help="list OpenCL platforms and devices")
    p.set_defaults(func=_cmd_devices)

    p = sub.add_parser(
        "filter", help="apply a named kernel to PNG/JPEG images",
        description="Apply a named kernel (clconv.kernels) to grey or RGB images, 8 or 16 "
                    "bit. Float results become pixels by --scale: 'clip' rounds and clips "
                    "into the input's range (0..255 or 0..65535; for blur and sharpen), "
                    "'rescale' maps the result's min..max onto the full range (for edge "
                    "kernels, whose values are signed). Several inputs or a folder write "
                    "into the output folder under the same file names.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--kernel", "-k", required=True, metavar="NAME",
                   help="kernel name: identity, box, gaussian, sharpen, laplacian, "
                        "sobel_x, sobel_y, prewitt_x, prewitt_y, emboss")
    p.add_argument("--size", type=int, help="kernel size for box and gaussian")
    p.add_argument("--sigma", type=float, help="standard deviation for gaussian")
    p.add_argument("--stride", type=int, default=1, help="stride (default 1)")
    p.add_argument("--padding", default="same",
                   help="same (default), valid, full, or an int")
    p.add_argument("--padding-mode", default="reflect",
                   help="how the border is extended: zeros, reflect (default; mirrors "
                        "without repeating the edge pixel), replicate (repeats the edge "
                        "pixel), circular (wraps around) or symmetric (mirrors and repeats "
                        "the edge pixel: OpenCV's BORDER_REFLECT, scipy.ndimage's "
                        "'reflect'); numpy.pad's names constant, edge and wrap also work")
    p.add_argument("--backend", "-b", help="backend name (default: the default device)")
    p.add_argument("--scale", choices=("clip", "rescale"), default="clip",
                   help="how float results map to pixels (default clip)")
    p.add_argument("--output", "-o", required=True, metavar="OUT",
                   help="output file (one input) or folder (several inputs or a folder)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr for several inputs (default: when stderr "
                        "is a terminal)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_filter)

    p = sub.add_parser("selftest", help="check every feature against the NumPy reference")
    p.add_argument("--backend", "-b", help="backend name (default: the default device)")
    p.set_defaults(func=_cmd_selftest)

    p = sub.add_parser("tune", help="time path/tile candidates of a problem, cache the winner")
    p.add_argument("cases", nargs="*", metavar="CASE", help="benchmark case names (clconv "
                   "bench --list); or give --input and --weight")
    p.add_argument("--input", metavar="SHAPE",
                   help="input shape, channels first, e.g. 1,64,56,56 (with --weight)")
    p.add_argument("--weight", metavar="SHAPE",
                   help="weight shape (filters, channels/groups, kernel...), e.g. 64,64,3,3")
    p.add_argument("--stride", type=int, default=1, help="stride (default 1)")
    p.add_argument("--padding", default="0", help="an int, valid, same or full (default 0)")
    p.add_argument("--dilation", type=int, default=1, help="dilation (default 1)")
    p.add_argument("--groups", type=int, default=1,
                   help="channel groups; as many as input channels for depthwise (default 1)")
    p.add_argument("--dtype", default="float32",
                   help="float16, float32 (default) or float64")
    p.add_argument("--backend", "-b",
                   help="OpenCL backend name, e.g. opencl:0:0 (default: the default device)")
    p.add_argument("--repeat", type=int, default=7,
                   help="timed calls per candidate (default 7; fewer when a round runs long)")
    p.add_argument("--no-store", action="store_true",
                   help="time only, leave the tune cache as it is")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("bench", add_help=False,
                       help="GFLOP/s per case and backend (clconv bench --help for options)")
    p.set_defaults(func=_cmd_bench, rest=[])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clconv`` command; returns the exit code."""
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if args.command == "bench":
            args.rest = rest
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args.func(args)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except ClconvError as exc:   # bad option values (2) or a backend that cannot run (1)
        _error(device_fault(exc) or (str(exc).splitlines()[0] if str(exc)
                                     else type(exc).__name__))
        return EXIT_USAGE if isinstance(exc, (ArgumentError, BackendUnavailable)) \
            else EXIT_FAILED
    except BrokenPipeError:   # e.g. `clconv bench --list | head`: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("CLCONV_DEBUG") == "1":
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (set CLCONV_DEBUG=1 for the traceback)")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
