"""The backend registry: names, selection, scopes, plug-ins, environment, lazy import."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import clconv
from clconv import ArgumentError, BackendUnavailable
from clconv import backends as registry

X = np.arange(12.0).reshape(1, 1, 3, 4)
W = np.ones((1, 1, 2, 2))


class FakeBackend:
    """A plug-in backend: the NumPy reference under another name, counting its calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def conv_forward(self, x, weight, bias, spec):
        self.calls += 1
        return clconv.get_backend("numpy").conv_forward(x, weight, bias, spec)

    def conv_backward(self, x, weight, grad_output, spec):
        return clconv.get_backend("numpy").conv_backward(x, weight, grad_output, spec)


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Every test sees (and leaves) the registry and environment as they were."""
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_instances", dict(registry._instances))
    monkeypatch.setattr(registry, "_process_default", None)
    monkeypatch.setattr(registry, "_implicit_fallback", False)
    monkeypatch.delenv("CLCONV_BACKEND", raising=False)
    yield


def fake_factory(base: str, seen: list | None = None):
    def factory(option):
        if seen is not None:
            seen.append(option)
        return FakeBackend(base if option is None else f"{base}:{option}")
    return factory


def run_python(code: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "CLCONV_BACKEND"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=120, cwd=cwd)


# ---------------------------------------------------------------- listing and selection

def test_list_and_available():
    names = clconv.list_backends()
    assert names[:2] == ["numpy", "opencl"] or {"numpy", "opencl"} <= set(names)
    available = clconv.available_backends()
    assert "numpy" in available
    assert set(available) <= set(names)
    for name in available:
        assert clconv.get_backend(name) is clconv.get_backend(name)


def test_available_is_computed_live():
    clconv.register_backend("flaky", fake_factory("flaky"))
    assert "flaky" in clconv.available_backends()

    def broken(option):
        raise BackendUnavailable("device unplugged")

    clconv.register_backend("flaky", broken, replace=True)
    assert "flaky" in clconv.list_backends()
    assert "flaky" not in clconv.available_backends()


def test_get_backend_numpy_is_cached_and_implements_protocol():
    be = clconv.get_backend("numpy")
    assert be is clconv.get_backend("numpy")
    assert be.name == "numpy"
    assert isinstance(be, clconv.Backend)


def test_set_backend_and_clear():
    clconv.register_backend("fake", fake_factory("fake"))
    clconv.set_backend("fake")
    assert clconv.get_backend().name == "fake"
    y = clconv.conv2d(X, W)  # the default is used by the ops
    assert clconv.get_backend("fake").calls == 1
    np.testing.assert_array_equal(y, clconv.conv2d(X, W, backend="numpy"))
    clconv.set_backend(None)
    assert registry._process_default is None
    assert clconv.get_backend().name != "fake"


def test_set_backend_unknown_raises_and_keeps_default():
    clconv.set_backend("numpy")
    with pytest.raises(BackendUnavailable, match="'nonesuch'"):
        clconv.set_backend("nonesuch")
    assert clconv.get_backend().name == "numpy"


def test_explicit_argument_beats_scope_beats_process_beats_env(monkeypatch):
    for name in ("a", "b", "c", "d"):
        clconv.register_backend(name, fake_factory(name))
    monkeypatch.setenv("CLCONV_BACKEND", "d")
    assert clconv.get_backend().name == "d"
    clconv.set_backend("c")
    assert clconv.get_backend().name == "c"
    with clconv.use_backend("b"):
        assert clconv.get_backend().name == "b"
        assert clconv.get_backend("a").name == "a"
        clconv.conv2d(X, W, backend="a")
        assert clconv.get_backend("a").calls == 1 and clconv.get_backend("b").calls == 0


def test_env_var_read_at_every_resolution(monkeypatch):
    clconv.register_backend("e1", fake_factory("e1"))
    clconv.register_backend("e2", fake_factory("e2"))
    monkeypatch.setenv("CLCONV_BACKEND", "e1")
    assert clconv.get_backend().name == "e1"
    monkeypatch.setenv("CLCONV_BACKEND", "e2")
    assert clconv.get_backend().name == "e2"
    monkeypatch.setenv("CLCONV_BACKEND", "e2:opt")
    assert clconv.get_backend().name == "e2:opt"


# ---------------------------------------------------------------- scopes

def test_use_backend_nesting_and_restore_on_error():
    for name in ("outer", "inner"):
        clconv.register_backend(name, fake_factory(name))
    clconv.set_backend("numpy")
    with clconv.use_backend("outer") as be:
        assert be.name == "outer" and clconv.get_backend().name == "outer"
        with clconv.use_backend("inner"):
            assert clconv.get_backend().name == "inner"
            with clconv.use_backend("outer"):
                assert clconv.get_backend().name == "outer"
            assert clconv.get_backend().name == "inner"
        assert clconv.get_backend().name == "outer"
        with pytest.raises(RuntimeError, match="boom"), clconv.use_backend("inner"):
            raise RuntimeError("boom")
        assert clconv.get_backend().name == "outer"
    assert clconv.get_backend().name == "numpy"


def test_use_backend_unknown_raises_on_entry():
    with pytest.raises(BackendUnavailable, match="'missing'"):
        with clconv.use_backend("missing"):
            pytest.fail("entered a scope for an unknown backend")


def test_use_backend_is_thread_local():
    for name in ("t0", "t1", "t2", "t3"):
        clconv.register_backend(name, fake_factory(name))
    clconv.set_backend("numpy")
    barrier = threading.Barrier(5, timeout=30)
    seen: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        names = []
        with clconv.use_backend(name):
            barrier.wait()  # every thread is inside its own scope now
            for _ in range(50):
                names.append(clconv.get_backend().name)
                clconv.conv2d(X, W)
            barrier.wait()
        names.append(clconv.get_backend().name)
        seen[name] = names

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    barrier.wait()
    main_inside = clconv.get_backend().name  # main thread: no scope of its own
    barrier.wait()
    for t in threads:
        t.join(30)
    assert main_inside == "numpy"
    for i in range(4):
        name = f"t{i}"
        assert seen[name][:-1] == [name] * 50
        assert seen[name][-1] == "numpy"
        assert clconv.get_backend(name).calls == 50


def test_use_backend_follows_contextvars():
    clconv.register_backend("ctx", fake_factory("ctx"))
    clconv.set_backend("numpy")
    with clconv.use_backend("ctx"):
        copied = contextvars.copy_context()
    assert clconv.get_backend().name == "numpy"
    assert copied.run(lambda: clconv.get_backend().name) == "ctx"

    async def task(name: str, delay: float) -> str:
        with clconv.use_backend(name):
            await asyncio.sleep(delay)
            return clconv.get_backend().name

    async def both():
        return await asyncio.gather(task("ctx", 0.02), task("numpy", 0.01))

    assert asyncio.run(both()) == ["ctx", "numpy"]


# ---------------------------------------------------------------- registration

def test_register_backend_duplicate_and_replace():
    seen: list = []
    clconv.register_backend("dup", fake_factory("dup", seen))
    first = clconv.get_backend("dup")
    with pytest.raises(ArgumentError, match="'dup'.*replace=True"):
        clconv.register_backend("dup", fake_factory("dup"))
    assert clconv.get_backend("dup") is first
    clconv.register_backend("dup", fake_factory("dup"), replace=True)
    assert clconv.get_backend("dup") is not first  # the cached instance was dropped
    with pytest.raises(ArgumentError, match="'numpy'"):
        clconv.register_backend("numpy", fake_factory("numpy"))


@pytest.mark.parametrize("name,factory,word", [
    ("", fake_factory("x"), "name"), ("a:b", fake_factory("x"), "name"),
    (3, fake_factory("x"), "name"), ("ok", "not callable", "factory"),
])
def test_register_backend_bad_arguments(name, factory, word):
    with pytest.raises(ArgumentError, match=word):
        clconv.register_backend(name, factory)


def test_factory_receives_option_and_instances_are_per_full_name():
    seen: list = []
    clconv.register_backend("opt", fake_factory("opt", seen))
    a = clconv.get_backend("opt")
    b = clconv.get_backend("opt:fast")
    c = clconv.get_backend("opt:0:1")
    assert (a.name, b.name, c.name) == ("opt", "opt:fast", "opt:0:1")
    assert clconv.get_backend("opt:fast") is b
    assert seen == [None, "fast", "0:1"]


def test_factory_failure_becomes_backend_unavailable_with_reason():
    def crashing(option):
        raise OSError("driver exploded")

    def refusing(option):
        raise BackendUnavailable("no fp64 on this device")

    clconv.register_backend("crash", crashing)
    clconv.register_backend("refuse", refusing)
    with pytest.raises(BackendUnavailable, match="driver exploded"):
        clconv.get_backend("crash")
    with pytest.raises(BackendUnavailable, match="no fp64"):
        clconv.conv2d(X, W, backend="refuse")


# ---------------------------------------------------------------- implicit default

def test_implicit_default_falls_back_to_numpy_and_logs(caplog):
    def no_opencl(option):
        raise BackendUnavailable("no OpenCL platform found")

    registry._factories["opencl"] = no_opencl
    registry._instances.pop("opencl", None)
    with caplog.at_level(logging.INFO, logger="clconv"):
        assert clconv.get_backend().name == "numpy"
        y = clconv.conv2d(X, W)
    np.testing.assert_array_equal(y, clconv.conv2d(X, W, backend="numpy"))
    assert any("no OpenCL platform found" in r.getMessage() and "NumPy" in r.getMessage()
               for r in caplog.records)
    # asked for by name, it does not fall back
    with pytest.raises(BackendUnavailable, match="no OpenCL platform"):
        clconv.get_backend("opencl")
    with pytest.raises(BackendUnavailable, match="no OpenCL platform"):
        clconv.set_backend("opencl")


def test_implicit_fallback_probes_and_logs_once(caplog):
    calls = []

    def no_opencl(option):
        calls.append(option)
        raise BackendUnavailable("no OpenCL platform found")

    registry._factories["opencl"] = no_opencl
    registry._instances.pop("opencl", None)
    with caplog.at_level(logging.INFO, logger="clconv"):
        for _ in range(3):
            clconv.conv2d(X, W)
    assert calls == [None]
    assert sum("falling back" in r.getMessage() for r in caplog.records) == 1
    # a newly registered opencl backend is tried again
    clconv.register_backend("opencl", fake_factory("opencl"), replace=True)
    assert clconv.get_backend().name == "opencl"


def test_named_default_does_not_fall_back(monkeypatch):
    def no_opencl(option):
        raise BackendUnavailable("no OpenCL platform found")

    registry._factories["opencl"] = no_opencl
    registry._instances.pop("opencl", None)
    monkeypatch.setenv("CLCONV_BACKEND", "opencl")
    with pytest.raises(BackendUnavailable, match="no OpenCL platform"):
        clconv.conv2d(X, W)


def test_implicit_default_prefers_working_opencl():
    registry._factories["opencl"] = fake_factory("opencl")
    registry._instances.pop("opencl", None)
    assert clconv.get_backend().name == "opencl"


# ---------------------------------------------------------------- fake entry points

def test_plugin_through_entry_points_monkeypatched(monkeypatch):
    import importlib.metadata as md

    good = md.EntryPoint("fakeep", "tests_fake_plugin:factory", registry.ENTRY_POINT_GROUP)
    broken = md.EntryPoint("brokenep", "no_such_module_xyz:factory",
                           registry.ENTRY_POINT_GROUP)
    notcallable = md.EntryPoint("constep", "math:pi", registry.ENTRY_POINT_GROUP)
    module = type(sys)("tests_fake_plugin")
    module.factory = fake_factory("fakeep")
    monkeypatch.setitem(sys.modules, "tests_fake_plugin", module)

    def entry_points(**kw):
        assert kw == {"group": registry.ENTRY_POINT_GROUP}
        return md.EntryPoints([good, broken, notcallable])

    monkeypatch.setattr(md, "entry_points", entry_points)
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with pytest.warns(RuntimeWarning) as record:
        names = clconv.list_backends()
    messages = " ".join(str(w.message) for w in record)
    assert "brokenep" in messages and "constep" in messages
    assert "fakeep" in names and "brokenep" not in names and "constep" not in names
    y = clconv.conv2d(X, W, backend="fakeep")
    assert clconv.get_backend("fakeep").calls == 1
    np.testing.assert_array_equal(y, clconv.conv2d(X, W, backend="numpy"))


PLUGIN = '''
import clconv

class Plug:
    def __init__(self, option):
        self.name = "plug" if option is None else "plug:" + option

    def conv_forward(self, x, weight, bias, spec):
        return clconv.get_backend("numpy").conv_forward(x, weight, bias, spec) + 1000

    def conv_backward(self, x, weight, grad_output, spec):
        raise NotImplementedError

def factory(option):
    return Plug(option)
'''


def test_plugin_through_installed_dist_info(tmp_path):
    """A real distribution on sys.path with entry points; a broken one only warns."""
    (tmp_path / "clconv_plug.py").write_text(PLUGIN)
    dist = tmp_path / "clconv_plug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clconv-plug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[clconv.backends]\nplug = clconv_plug:factory\nbroken = clconv_plug_gone:factory\n")
    code = """
        import warnings, numpy as np
        warnings.simplefilter("error")      # importing clconv must not warn
        import clconv
        warnings.simplefilter("default")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = clconv.list_backends()
        assert "plug" in names and "broken" not in names, names
        assert any("broken" in str(w.message) for w in caught), caught
        y = clconv.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)), backend="plug:x")
        assert y.tolist() == [[[1002.0, 1002.0, 1002.0]]], y
        assert clconv.get_backend("plug:x").name == "plug:x"
        print("OK")
    """
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = run_python(code, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


# ---------------------------------------------------------------- subprocesses

def test_env_var_in_subprocess():
    code = """
        import numpy as np, clconv
        print(clconv.get_backend().name)
        try:
            clconv.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)))
        except clconv.BackendUnavailable as exc:
            print("unavailable:", exc)
    """
    proc = run_python(code, {"CLCONV_BACKEND": "numpy"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "numpy"
    proc = run_python(code.replace("print(clconv.get_backend().name)", "pass"),
                      {"CLCONV_BACKEND": "nonesuch"})
    assert proc.returncode == 0, proc.stderr
    assert "unavailable:" in proc.stdout and "'nonesuch'" in proc.stdout


def test_import_does_not_import_pyopencl():
    code = """
        import sys, numpy as np
        import clconv
        assert "pyopencl" not in sys.modules, "import clconv imported pyopencl"
        clconv.list_backends()
        clconv.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)), backend="numpy")
        clconv.convolve([1, 2, 3], [1, 1], backend="numpy")
        assert "pyopencl" not in sys.modules, "the NumPy path imported pyopencl"
        print("OK")
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


# ---------------------------------------------------------------- device arrays

class PlugArray:
    """A plug-in backend's device array: host memory behind an opaque handle."""

    def __init__(self, data) -> None:
        self._data = np.array(data)

    dtype = property(lambda self: self._data.dtype)
    shape = property(lambda self: self._data.shape)
    ndim = property(lambda self: self._data.ndim)

    def reshape(self, shape):
        return PlugArray(self._data.reshape(shape))


class DeviceFakeBackend(FakeBackend):
    """A plug-in with device memory of its own: it owns PlugArrays."""

    def owns(self, obj) -> bool:
        return isinstance(obj, PlugArray)

    def to_host(self, array):
        return array._data.copy() if isinstance(array, PlugArray) else registry.to_host(array)

    def to_device(self, array):
        return array if isinstance(array, PlugArray) else PlugArray(array)


def test_numpy_backend_owns_nothing_and_reads_host_data():
    be = clconv.get_backend("numpy")
    assert not be.owns(X) and not be.owns([1.0]) and not registry.has_device_memory(be)
    assert be.to_host(X) is X
    for host in (X, [1, 2], 3.0, None, np.float32(2)):
        assert not registry.is_device_array(host) and registry.array_owner(host) is None
    np.testing.assert_array_equal(registry.to_host([[1, 2]]), [[1, 2]])
    with pytest.raises(ArgumentError, match="no device memory"):
        clconv.to_device(X, backend="numpy")


def test_plugin_arrays_are_recognised_through_owns():
    registry.register_backend("dev", lambda option: DeviceFakeBackend(
        "dev" if option is None else f"dev:{option}"))
    handle = PlugArray(X)
    assert not registry.is_device_array(handle)      # no "dev" backend object yet
    be = clconv.get_backend("dev:1")
    assert registry.is_device_array(handle) and registry.array_owner(handle) == "dev:1"
    assert registry.has_device_memory(be)
    up = clconv.to_device(X, backend="dev:1")
    assert isinstance(up, PlugArray)
    back = registry.to_host(up)
    assert type(back) is np.ndarray and np.array_equal(back, X)
    # Every backend reads another's device arrays through the registry.
    np.testing.assert_array_equal(clconv.conv2d(up, W, backend="numpy"),
                                  clconv.conv2d(X, W, backend="numpy"))
    registry.register_backend("dev", fake_factory("dev"), replace=True)
    assert not registry.is_device_array(handle)      # its owner is gone


def test_device_input_on_a_host_backend_gives_host_output(cl_backend):
    x = np.arange(36.0, dtype=np.float32).reshape(1, 1, 6, 6)
    xd = clconv.to_device(x, backend=cl_backend)
    assert registry.is_device_array(xd) and registry.array_owner(xd) == "opencl"
    np.testing.assert_array_equal(registry.to_host(xd), x)
    want = clconv.conv_transpose2d(x, W, stride=2, output_padding=1, backend="numpy")
    got = clconv.conv_transpose2d(xd, W, stride=2, output_padding=1, backend="numpy")
    assert type(got) is np.ndarray and np.array_equal(got, want)
    got = clconv.ndimage.uniform_filter(xd[0, 0], backend="numpy")
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, clconv.ndimage.uniform_filter(x[0, 0],
                                                                     backend="numpy"))


def test_opencl_arrays_are_recognised_before_any_opencl_backend(cl_backend):
    """A pyopencl array made on the user's own queue, before clconv created any
    OpenCL backend object, is a device array: every backend reads it back."""
    platform, device = (int(i) for i in cl_backend.split(":")[1:])
    code = f"""
        import sys, numpy as np
        import clconv
        from clconv import backends as registry
        assert not registry.is_device_array(np.ones(3)) and "pyopencl" not in sys.modules
        [d for d in clconv.devices() if d.works]     # makes pip-installed runtimes visible
        import pyopencl as cl, pyopencl.array as cla
        dev = cl.get_platforms()[{platform}].get_devices()[{device}]
        context = cl.Context([dev])
        queue = cl.CommandQueue(context)
        x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
        xd = cla.to_device(queue, x)
        assert registry.is_device_array(xd) and registry.array_owner(xd) == "opencl"
        back = registry.to_host(xd)
        assert type(back) is np.ndarray and np.array_equal(back, x)
        y = clconv.conv2d(xd, np.ones((1, 1, 2, 2), np.float32), backend="numpy")
        assert np.array_equal(y, clconv.conv2d(x, np.ones((1, 1, 2, 2), np.float32),
                                               backend="numpy"))
        assert not any(name.startswith("opencl") for name in registry._instances), \\
            registry._instances
        print("OK")
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
