"""Finding OpenCL runtimes, device health and selection by name.

Runs on every machine: what each test checks holds whichever runtimes work
here (PoCL, Intel's CPU runtime, a GPU driver). Tests that need a fresh ICD
loader (it reads its variables once per process) run in a subprocess.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import clconv
from clconv.backends.opencl import device as dev
from clconv.backends.opencl import runtimes

X86_LINUX = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run ``code`` in a fresh interpreter; return (returncode, stdout, stderr)."""
    full = {k: v for k, v in os.environ.items() if k != runtimes.LOADER_VAR}
    full.update(env or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


LIST_DEVICES = """
    import json, os, clconv
    print(json.dumps({"devices": [[d.backend, d.platform, d.works, d.problem]
                                  for d in clconv.devices()],
                      "vendors": os.environ.get("OCL_ICD_VENDORS")}))
"""


# ------------------------------------------------------------------ runtimes


def test_the_install_brings_intels_runtime():
    found = runtimes.installed_libraries()
    if not X86_LINUX:  # a dependency on x86-64 Linux only
        assert found == {}
        return
    assert list(found) == ["clconv-intel-opencl-rt.icd"]
    library = found["clconv-intel-opencl-rt.icd"]
    assert library.name == "libintelocl.so" and library.is_file()


def test_registration_leaves_a_users_loader_setting_alone(tmp_path):
    env = {runtimes.LOADER_VAR: str(tmp_path)}
    assert runtimes.register_pip_runtimes(env) is None
    assert env == {runtimes.LOADER_VAR: str(tmp_path)}
    env = {runtimes.OPT_OUT_VAR: "0"}
    assert runtimes.register_pip_runtimes(env) is None
    assert runtimes.LOADER_VAR not in env


def test_registration_points_the_loader_at_a_folder_with_the_pip_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    env: dict[str, str] = {}
    folder = Path(runtimes.register_pip_runtimes(env))
    assert env == {runtimes.LOADER_VAR: str(folder)}
    assert folder.parent == tmp_path / "clconv" / "icd"
    icd = (folder / "clconv-intel-opencl-rt.icd").read_text().strip()
    assert icd == str(runtimes.installed_libraries()["clconv-intel-opencl-rt.icd"])
    # A second process finds the same folder (named by its contents).
    assert runtimes.register_pip_runtimes({}) == str(folder)


def test_the_folder_keeps_the_systems_own_icd_files(tmp_path):
    system = tmp_path / "vendors"
    system.mkdir()
    (system / "nvidia.icd").write_text("libnvidia-opencl.so.1\n")
    (system / "notes.txt").write_text("not an icd file")
    contents = runtimes.vendor_folder_contents({"mine.icd": Path("/opt/lib/libmine.so")}, system)
    assert contents == {"mine.icd": "/opt/lib/libmine.so\n",
                        "nvidia.icd": "libnvidia-opencl.so.1\n"}
    folder = runtimes.write_vendor_folder(contents, tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == ["mine.icd", "nvidia.icd"]
    assert runtimes.write_vendor_folder(contents, tmp_path / "cache") == folder
    # A missing system folder is no error.
    assert runtimes.vendor_folder_contents({}, tmp_path / "missing") == {}


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    folder = runtimes.write_vendor_folder({"a.icd": "/x/liba.so\n"}, blocker / "icd")
    assert (folder / "a.icd").read_text() == "/x/liba.so\n"
    assert not str(folder).startswith(str(blocker))


def test_a_fresh_process_sees_intels_device_working_and_its_children_see_the_same():
    child_code = textwrap.dedent(LIST_DEVICES)
    code = LIST_DEVICES + f"""
    import subprocess, sys
    child = subprocess.run([sys.executable, "-c", {child_code!r}],
                           capture_output=True, text=True)
    print(child.stdout.strip().splitlines()[-1])
    """
    rc, out, err = run_python(code)
    assert rc == 0, err
    mine, child = (json.loads(line) for line in out.strip().splitlines()[-2:])
    intel = [d for d in mine["devices"] if d[1] == "Intel(R) OpenCL"]
    assert intel and all(d[2] and d[3] is None for d in intel), mine
    assert mine["vendors"] and child["vendors"] == mine["vendors"]
    assert child["devices"] == mine["devices"]


def test_a_broken_icd_gives_no_device_and_the_default_falls_back_to_numpy(tmp_path):
    """An .icd naming a missing library (the loader's only one): no platform, no
    crash; devices() is [], the implicit default is NumPy and says why; a named
    OpenCL backend raises BackendUnavailable."""
    icd = tmp_path / "broken.icd"
    icd.write_text("/nonexistent/libOpenCL-driver.so\n")
    code = """
    import logging, clconv, numpy as np
    logging.basicConfig(level=logging.WARNING)
    print(clconv.devices())
    print(clconv.get_backend().name)
    x = np.ones((1, 1, 4, 4), np.float32)
    print(float(clconv.conv2d(x, np.ones((1, 1, 3, 3), np.float32)).sum()))
    try:
        clconv.get_backend("opencl")
    except clconv.BackendUnavailable as exc:
        print("unavailable:", exc)
    """
    rc, out, err = run_python(code, {runtimes.LOADER_VAR: str(icd)})
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["[]", "numpy", "36.0"]
    assert lines[3].startswith("unavailable:") and "no OpenCL platform" in lines[3]
    assert "falling back to NumPy" in err and "no OpenCL platform" in err


def test_a_users_own_icd_choice_is_used_as_it_is():
    library = runtimes.installed_libraries()["clconv-intel-opencl-rt.icd"]
    rc, out, err = run_python(LIST_DEVICES, {runtimes.LOADER_VAR: str(library)})
    assert rc == 0, err
    found = json.loads(out.strip().splitlines()[-1])
    assert found["vendors"] == str(library)
    assert [d[1] for d in found["devices"]] == ["Intel(R) OpenCL"]


# ------------------------------------------------------------------ health


def test_every_device_has_a_verdict():
    for d in clconv.devices():
        assert isinstance(d.works, bool) and d.driver_version
        if d.works:
            assert d.problem is None
        else:
            assert isinstance(d.problem, str) and d.problem and "\n" not in d.problem


def test_the_probe_checks_every_number():
    a = np.arange(64, dtype=np.float32)
    want = dev.probe_expected(a, 16)
    assert want[0] == 2 * 15 + (0 + 7) + 0      # reversed in its group, its 8-vector, i
    assert want[17] == 2 * 30 + (16 + 23) + 17


def _working_device(cl_backend):
    be = clconv.get_backend(cl_backend)
    return be.dctx.context, be.dctx.device


def test_a_probe_that_does_not_build_names_the_first_log_line(cl_backend, tmp_path):
    source = tmp_path / "bad_probe.cl"
    source.write_text("__kernel void probe(__global float *a) { this is not C; }\n")
    verdict = dev.run_probe(*_working_device(cl_backend), filename=str(source))
    assert not verdict.works and verdict.context is None
    assert verdict.problem.startswith("the probe kernel does not build: ")
    assert "\n" not in verdict.problem and verdict.log


def test_a_probe_with_wrong_numbers_is_caught(cl_backend, tmp_path):
    source = tmp_path / "wrong_probe.cl"
    source.write_text("__kernel void probe(__global const float *a, __global float *b, "
                      "__local float *t) { b[get_global_id(0)] = a[get_global_id(0)]; }\n")
    verdict = dev.run_probe(*_working_device(cl_backend), filename=str(source))
    assert not verdict.works
    assert "wrong numbers (element 0: " in verdict.problem


def test_a_probe_that_runs_too_long_does_not_hang(cl_backend, tmp_path):
    source = tmp_path / "slow_probe.cl"
    source.write_text(
        "__kernel void probe(__global const float *a, __global float *b, __local float *t) {\n"
        "  float acc = a[get_global_id(0)];\n"
        "  for (int k = 0; k < 100000000; k++) acc = acc * 0.999999f + 1.0f;\n"
        "  b[get_global_id(0)] = acc; }\n")
    verdict = dev.run_probe(*_working_device(cl_backend), filename=str(source), timeout_s=0.01)
    assert not verdict.works
    assert verdict.problem == "the probe kernel did not finish within 0.01 s"


def test_the_real_probe_passes_on_every_working_device(cl_backend):
    verdict = dev.run_probe(*_working_device(cl_backend))
    assert verdict.works and verdict.problem is None


# ------------------------------------------------------------------ selection


@pytest.fixture
def one_device_broken(monkeypatch, cl_backend):
    """The device of ``cl_backend`` as if its probe had failed (for selection only)."""
    device = clconv.get_backend(cl_backend).dctx.device
    broken = dev.Probe(False, "simulated: the probe kernel does not build: error: no",
                       "error: no\nsecond log line")
    monkeypatch.setitem(dev._probes, int(device.int_ptr), broken)
    return cl_backend


def test_a_named_device_that_does_not_work_raises_with_its_problem_and_log(one_device_broken):
    option = one_device_broken.split(":", 1)[1]
    with pytest.raises(clconv.BackendUnavailable, match="does not work: simulated") as info:
        dev.select_device(option)
    assert "build log:\nerror: no\nsecond log line" in str(info.value)


def test_the_default_never_picks_a_device_that_does_not_work(one_device_broken):
    working = [d.backend for d in clconv.devices() if d.works]
    assert one_device_broken not in working
    if working:
        assert dev.select_device(None).info.backend in working
    else:
        with pytest.raises(clconv.BackendUnavailable, match="no working OpenCL device") as info:
            dev.select_device(None)
        assert "does not work: simulated" in str(info.value)


def test_selection_by_name_text(cl_backend):
    info = clconv.get_backend(cl_backend).dctx.info
    fragment = info.platform.split()[0]
    picked = dev.select_device(fragment.swapcase())     # case-insensitive
    assert fragment.lower() in picked.searchable() and picked.info.works
    be = clconv.get_backend(f"opencl:{info.name}")
    assert be.dctx.info.works and info.name.lower() in be.dctx.info.name.lower()


def test_pocl_is_selected_as_pocl():
    pocl = [d for d in clconv.devices() if d.platform == "Portable Computing Language"]
    if not pocl:
        with pytest.raises(clconv.BackendUnavailable, match="contains 'pocl'"):
            dev.select_device("pocl")
    elif any(d.works for d in pocl):
        assert dev.select_device("pocl").info.platform == "Portable Computing Language"
    else:
        with pytest.raises(clconv.BackendUnavailable, match="no device matching 'pocl' works"):
            dev.select_device("pocl")


def test_an_unknown_name_lists_the_devices_and_the_name_forms():
    with pytest.raises(clconv.BackendUnavailable) as info:
        clconv.get_backend("opencl:no-such-device-anywhere")
    text = str(info.value)
    assert "contains 'no-such-device-anywhere'" in text and "'opencl:P:D'" in text
    for d in clconv.devices():
        assert d.backend in text
    with pytest.raises(clconv.BackendUnavailable, match="expected one of"):
        clconv.get_backend("opencl:1:2:3")


def test_the_default_prefers_gpus_then_the_documented_cpu_runtime():
    def found(p, kind, platform):
        info = dev.DeviceInfo(f"opencl:{p}:0", platform, "x", kind, 1, 1, 1, False, False)
        return dev.Found(p, 0, None, None, info)

    entries = [found(0, "cpu", "Intel(R) OpenCL"), found(1, "cpu", "Portable Computing Language"),
               found(2, "accelerator", "Intel(R) FPGA Emulation Platform"),
               found(3, "gpu", "NVIDIA CUDA")]
    ranked = [e.info.platform for e in sorted(entries, key=dev.preference)]
    assert ranked == ["NVIDIA CUDA", "Portable Computing Language", "Intel(R) OpenCL",
                      "Intel(R) FPGA Emulation Platform"]


# ------------------------------------------------------------------ device arrays


def test_a_device_result_carries_the_event_of_its_computation(cl_backend):
    """``y.finish()`` waits for the work, so a read on another queue is never stale."""
    import pyopencl as cl

    be = clconv.get_backend(cl_backend)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 16, 180, 320)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    want = clconv.conv2d(x, w, padding=1, backend="numpy")
    other = cl.CommandQueue(be.context, be.dctx.device)
    for _ in range(3):
        y = clconv.conv2d(clconv.to_device(x, backend=cl_backend), w, padding=1,
                          backend=cl_backend)
        assert y.events, "the result holds no event"
        y.finish()
        assert all(e.command_execution_status == cl.command_execution_status.COMPLETE
                   for e in y.events)
        np.testing.assert_allclose(y.with_queue(other).get(), want, rtol=1e-4, atol=1e-3)
    gx, gw, gb = clconv.conv_backward(clconv.to_device(x, backend=cl_backend), w,
                                      clconv.to_device(want, backend=cl_backend), padding=1,
                                      backend=cl_backend)
    for g in (gx, gw, gb):
        assert g.events


# ------------------------------------------------------------------ the command line


def test_cli_devices_shows_each_status_and_problem(one_device_broken, capsys):
    from clconv.cli import main

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "status" in out.splitlines()[0] and "driver" in out.splitlines()[0]
    for d in clconv.devices():
        row = next(line for line in out.splitlines() if line.startswith(d.backend + " "))
        assert row.endswith("works" if d.works else "NOT WORKING")
        assert d.driver_version in row
    assert f"{one_device_broken} (" in out and "does not work: simulated" in out


def test_cli_names_a_device_that_does_not_work_once_with_the_hint(cl_backend, monkeypatch,
                                                                    capsys):
    from clconv.cli import main

    # Every device broken, so that no other device of the same name answers the text.
    for d in clconv.devices():
        entry = next(e for e in dev.enumerate_devices() if f"opencl:{e[0]}:{e[1]}" == d.backend)
        monkeypatch.setitem(dev._probes, int(entry[3].int_ptr),
                            dev.Probe(False, "simulated: the probe kernel does not build"))
    name = clconv.get_backend(cl_backend).dctx.info.name
    assert main(["selftest", "--backend", f"opencl:{name.swapcase()}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "does not work: simulated" in err[0] and "--backend numpy" in err[0]


def _kernel_build_error():
    return clconv.KernelBuildError("building kernels_cl/conv_rows.cl failed", device="Dev X",
                                   options=("-cl-std=CL1.2",),
                                   log="error: unknown target CPU 'generic'\nmore")


def test_cli_filter_stops_at_a_device_fault_and_says_it_once(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from clconv.cli import main

    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        raise _kernel_build_error()

    monkeypatch.setattr(clconv, "filter2d", failing)
    rc = main(["filter", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
               str(tmp_path / "c.png"), "-k", "box", "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and len(calls) == 1
    assert err.count("cannot build clconv's kernels") == 1
    assert "Dev X" in err and "build log: error: unknown target CPU 'generic'" in err
    assert "--backend numpy" in err and "stopped after 0 of 3 images" in err
    assert not (tmp_path / "out" / "a.png").exists()


def test_cli_tune_with_every_candidate_rejected_fails_with_the_cause(monkeypatch, capsys):
    from clconv.backends.opencl import tune as tune_module
    from clconv.cli import main

    def rejected(**kwargs):
        bad = tune_module.Candidate("rows", {}, error="KernelBuildError: building failed",
                                    exception=_kernel_build_error())
        return tune_module.TuneResult("class", "device", "rows(default)", [bad], None, None)

    monkeypatch.setattr(tune_module, "tune", rejected)
    assert main(["tune", "depthwise"]) == 1
    captured = capsys.readouterr()
    assert "rejected: KernelBuildError" in captured.out
    assert "every candidate was rejected; root cause: OpenCL device 'Dev X'" in captured.err


def test_bench_fails_when_no_clconv_backend_ran(capsys):
    from clconv.bench import _nothing_ran

    def case(*rows):
        return {"results": [{"impl": impl, "kind": kind, "ms": ms, "error": error}
                            for impl, kind, ms, error in rows]}

    failed = ("clconv:opencl:0:0", "clconv", None, "KernelBuildError: building failed")
    assert _nothing_ran([case(failed, ("torch", "peer", 1.0, None))]) == 1
    assert "clconv:opencl:0:0: KernelBuildError: building failed" in capsys.readouterr().err
    assert _nothing_ran([case(failed, ("clconv:numpy", "clconv", 2.0, None))]) == 0
