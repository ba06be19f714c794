"""glibc's malloc thresholds (clconv.backends.opencl.host_memory): set once when a CPU
OpenCL device is opened, so that a call's freed result and temporaries serve the next
call instead of coming back as fresh pages, page-faulted by the kernels."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from clconv.backends.opencl import host_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


class FakeLibc:
    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


def test_thresholds_are_glibcs_own_upper_values():
    libc = FakeLibc()
    assert host_memory.set_thresholds({}, libc)
    assert libc.calls == [(-3, 32 << 20), (-1, 64 << 20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


@pytest.mark.parametrize("environ", [
    {"CLCONV_MALLOC": "0"},
    {"MALLOC_TRIM_THRESHOLD_": "1000000"},
    {"MALLOC_TOP_PAD_": "0"},
    {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
])
def test_the_users_choice_wins(environ):
    libc = FakeLibc()
    assert not host_memory.set_thresholds(environ, libc)
    assert libc.calls == []


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_a_setting_made_after_start_is_not_the_users(monkeypatch):
    """A MALLOC_ variable put into os.environ after the process started (as dask
    does) changes nothing in this process's malloc, so it does not count as the
    user's choice; one present at start does."""
    env = {**os.environ, "CLCONV_MALLOC": ""}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    late = textwrap.dedent("""
        import os
        from clconv.backends.opencl import host_memory
        os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
        print(host_memory.keep_freed_memory())
    """)
    run = functools.partial(subprocess.run, [sys.executable, "-c", late], capture_output=True,
                            text=True, timeout=120)
    assert run(env=env).stdout.split() == ["True"]
    assert run(env={**env, "MALLOC_TRIM_THRESHOLD_": "65536"}).stdout.split() == ["False"]


def test_a_refused_setting_is_reported():
    assert not host_memory.set_thresholds({"GLIBC_TUNABLES": "glibc.pthread.x=1"},
                                          FakeLibc(result=0))


# Three 256 KiB blocks allocated and freed together, as a call's result and
# temporaries are: with glibc's starting thresholds the freed top of the heap is
# trimmed every time, and the next blocks are fresh pages.
_LOOP = textwrap.dedent("""
    import resource, sys
    import numpy as np
    {setup}
    def once():
        blocks = [np.ones(64 * 1024, np.float32) for _ in range(3)]
        del blocks
    for _ in range(5):
        once()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        once()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
""")


def _faults_per_call(setup: str, **env: str) -> float:
    # A child of its own malloc settings only (dask, for one, puts
    # MALLOC_TRIM_THRESHOLD_ into this process's environment).
    inherited = {k: v for k, v in os.environ.items()
                 if k not in host_memory.USER_SETTINGS and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", _LOOP.format(setup=setup)],
                         capture_output=True, text=True, env={**inherited, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_blocks_serve_the_next_call():
    keep = "from clconv.backends.opencl.host_memory import keep_freed_memory\n" \
           "assert keep_freed_memory()"
    assert _faults_per_call(keep) < 5
    # The same loop with glibc left alone faults in much of the blocks' 192 pages.
    assert _faults_per_call("") > 50
    assert _faults_per_call("from clconv.backends.opencl.host_memory import "
                            "keep_freed_memory\nassert not keep_freed_memory()",
                            CLCONV_MALLOC="0") > 50


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_opening_a_cpu_device_sets_them(cl_backend):
    """Opening a CPU device that works on host memory sets them; a device with
    memory of its own (a GPU) leaves malloc as it is."""
    import clconv

    setup = f"import clconv\nclconv.get_backend({cl_backend!r})"
    if clconv.get_backend(cl_backend).dctx.host_unified:
        assert _faults_per_call(setup) < 5
    else:
        assert _faults_per_call(setup) > 50
