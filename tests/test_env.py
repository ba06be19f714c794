"""clconv's cheap reads of its environment settings agree with ``os.environ``."""

from __future__ import annotations

import os

import numpy as np
import pytest

import clconv
from clconv import _env


@pytest.fixture(params=["dict", "os.environ"])
def reader(request, monkeypatch):
    """Both ways of reading: CPython's dict of encoded pairs and the fallback."""
    if request.param == "os.environ":
        monkeypatch.setattr(_env, "_FAST", False)
    return _env.setting


@pytest.mark.parametrize("value", ["1", "", " 12e6 ", "caf\u00e9", "a=b"])
def test_a_setting_reads_what_os_environ_holds(monkeypatch, reader, value):
    monkeypatch.setenv("CLCONV_TEST_SETTING", value)
    assert reader("CLCONV_TEST_SETTING") == os.environ["CLCONV_TEST_SETTING"] == value
    monkeypatch.setenv("CLCONV_TEST_SETTING", value + "x")  # a change is seen at once
    assert reader("CLCONV_TEST_SETTING") == value + "x"


def test_an_unset_setting_is_none(monkeypatch, reader):
    monkeypatch.setenv("CLCONV_TEST_SETTING", "1")
    monkeypatch.delenv("CLCONV_TEST_SETTING")
    assert reader("CLCONV_TEST_SETTING") is None
    assert reader("CLCONV_NEVER_SET_ANYWHERE") is None


def test_a_setting_changed_between_calls_reaches_the_next_call(monkeypatch):
    x = np.ones((1, 1, 64, 64), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    assert clconv.conv2d(x, w, backend="numpy").shape == (1, 1, 62, 62)
    monkeypatch.setenv("CLCONV_MAX_HOST_BYTES", "1000")
    with pytest.raises(clconv.AllocationError, match="CLCONV_MAX_HOST_BYTES"):
        clconv.conv2d(x, w, backend="numpy")
    monkeypatch.delenv("CLCONV_MAX_HOST_BYTES")
    assert clconv.conv2d(x, w, backend="numpy").shape == (1, 1, 62, 62)
