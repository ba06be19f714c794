"""The autotuner: oracle check of every candidate, the on-disk cache, its use afterwards."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import clconv
import clconv.backends.opencl.paths as paths_mod
import clconv.backends.opencl.tune as tune_mod
import clconv.backends.opencl.tuning as tunecache
from clconv._normalize import normalize_conv


@pytest.fixture
def backend_name(cl_backend):
    """Every OpenCL device under test (conftest's cl_backend)."""
    return cl_backend


PROBLEM = {"input_shape": (1, 4, 9, 11), "weight_shape": (8, 4, 3, 3), "padding": 1}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private tune cache file; the process copy is dropped before and after."""
    path = tmp_path / "tune.json"
    monkeypatch.setenv(tunecache.ENV, str(path))
    monkeypatch.delenv(paths_mod.PATH_ENV, raising=False)
    tunecache.forget()
    yield path
    tunecache.forget()


def _spec(shape=(1, 4, 9, 11), wshape=(8, 4, 3, 3)):
    x = np.zeros(shape, np.float32)
    w = np.zeros(wshape, np.float32)
    return normalize_conv(2, x, w, None, 1, 1, 1, 1, "zeros", "channels_first", False).spec


class FlippedPath(paths_mod.DirectPath):
    """A wrong candidate: packs the kernel flipped (fast, but not the convolution)."""

    name = "flipped"

    def pack(self, dctx, queue, weight, bias, spec, config, allocate, in_place=False):
        flipped = dataclasses.replace(spec, flip=not spec.flip)
        return super().pack(dctx, queue, weight, bias, flipped, config, allocate, in_place)


def test_wrong_candidate_is_rejected(cache, monkeypatch, backend_name):
    flipped = FlippedPath()
    monkeypatch.setattr(paths_mod, "FORWARD_PATHS", (flipped, *paths_mod.FORWARD_PATHS))
    monkeypatch.setitem(paths_mod.PATHS, "flipped", flipped)
    result = tune_mod.tune(**PROBLEM, backend=backend_name, repeat=2)
    flipped = [c for c in result.candidates if c.path == "flipped"]
    assert flipped and not flipped[0].accepted
    assert "wrong numbers" in flipped[0].error
    assert result.winner is not None and result.winner.path != "flipped"
    assert all(c.ms is not None for c in result.candidates if c.accepted)


def test_winner_is_stored_and_used(cache, monkeypatch, backend_name):
    # Make a non-default candidate win, so that using the cache is visible.
    real = tune_mod.candidates
    monkeypatch.setattr(tune_mod, "candidates", lambda *a: [
        c for c in real(*a) if c == ("direct", {"ob": 4})])
    result = tune_mod.tune(**PROBLEM, backend=backend_name, repeat=2)
    assert (result.winner.path, result.winner.params) == ("direct", {"ob": 4})
    data = json.loads(cache.read_text())
    key = tunecache.device_key(clconv.get_backend(backend_name).dctx)
    entry = data["devices"][key][result.problem_class]
    assert (entry["path"], entry["params"]) == ("direct", {"ob": 4})

    tunecache.forget()  # as a fresh process: read from disk
    spec = _spec()
    assert tune_mod.chosen(spec, backend_name) == ("direct", {"ob": 4})
    # The prepared state carries the tuned tile, and results stay right.
    x = np.random.default_rng(1).standard_normal((1, 4, 9, 11)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((8, 4, 3, 3)).astype(np.float32)
    got = clconv.conv2d(x, w, padding=1, backend=backend_name)
    want = clconv.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1,
                         backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Another class (other kernel size) keeps the heuristic.
    other = _spec(wshape=(8, 4, 5, 5))
    assert tune_mod.chosen(other, backend_name)[1] == {}
    # CLCONV_OPENCL_PATH still wins over the cache.
    monkeypatch.setenv(paths_mod.PATH_ENV, "gemm")
    assert tune_mod.chosen(spec, backend_name)[0] == "gemm"


@pytest.mark.parametrize("content", ["{not json", '{"format": 99, "devices": {}}', "[]",
                                     '{"format": 1, "devices": {"DEV": {"c": {"path": "rows", '
                                     '"params": {"rows": 999}}}}}'])
def test_corrupt_cache_is_ignored(cache, content, backend_name):
    cache.write_text(content)
    spec = _spec()
    with pytest.warns(RuntimeWarning, match="tune cache"):
        name, params = tune_mod.chosen(spec, backend_name)
    assert params == {}
    x = np.ones((1, 4, 9, 11), np.float32)
    w = np.ones((8, 4, 3, 3), np.float32)
    assert clconv.conv2d(x, w, padding=1, backend=backend_name)[0, 0, 4, 4] == 36


def test_bad_entry_for_this_device_is_ignored(cache, backend_name):
    dctx = clconv.get_backend(backend_name).dctx
    spec = _spec()
    table = {tunecache.device_key(dctx): {tunecache.problem_class(spec): {
        "path": "gemm", "params": {"fb": 3}}}}
    cache.write_text(json.dumps({"format": 1, "devices": table}))
    with pytest.warns(RuntimeWarning, match="malformed"):
        assert tune_mod.chosen(spec, backend_name)[1] == {}


def test_keys_include_device_driver_version(backend_name):
    dctx = clconv.get_backend(backend_name).dctx
    key = tunecache.device_key(dctx)
    assert dctx.device.name.strip() in key
    assert dctx.device.driver_version.strip() in key
    assert key.endswith("|" + clconv.__version__)
    a, b = _spec(), _spec(shape=(1, 4, 90, 110))
    assert tunecache.problem_class(a) != tunecache.problem_class(b)
    assert tunecache.problem_class(a) == tunecache.problem_class(_spec(shape=(1, 4, 10, 12)))


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv(tunecache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if tunecache.sys.platform.startswith("linux"):
        assert tunecache.cache_file() == tmp_path / "clconv" / "tune.json"


def test_cli_tune(cache, capsys, backend_name):
    from clconv.cli import main

    assert main(["tune", "--input", "1,1,8,8", "--weight", "1,1,3,3", "--padding", "1",
                 "--repeat", "1", "--backend", backend_name]) == 0
    out = capsys.readouterr().out
    assert "problem class" in out and "stored in" in out
    assert cache.exists()
