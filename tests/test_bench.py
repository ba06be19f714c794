"""Smoke test of the benchmark harness (clconv.bench) in --quick mode on the NumPy backend."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from clconv import bench


def _args(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(["--quick", "--backend", "numpy", "--repeat", "2",
                              "--json", str(tmp_path / "out.json"), *extra])


def test_quick_run_reports_gflops_and_ratios(tmp_path, capsys):
    # torch and scipy.signal are left out: importing them alone takes seconds
    args = _args(tmp_path, "--cases", "conv3x3_64", "depthwise", "--peers", "numpy",
                 "--backend", "nosuchbackend")
    assert bench.run(args) == 0
    table = capsys.readouterr().out
    assert "clconv:numpy" in table and "GFLOP/s" in table
    assert "n/a (BackendUnavailable" in table  # a failing backend is reported, not fatal

    data = json.loads((tmp_path / "out.json").read_text())
    assert [c["name"] for c in data["cases"]] == ["conv3x3_64", "depthwise"]
    for case in data["cases"]:
        assert case["flops"] > 0
        rows = {r["impl"]: r for r in case["results"]}
        own = rows["clconv:numpy"]
        assert own["correct"] is True
        assert own["ms"] > 0 and own["gflops"] > 0
        assert own["ratio"] > 0 and own["ratio_vs"] in rows
        peers = [r for r in rows.values() if r["kind"] == "peer" and r["ms"] is not None]
        assert peers and all(r["correct"] for r in peers), peers
        assert rows["clconv:nosuchbackend"]["ms"] is None


def test_unknown_case_is_an_error(tmp_path, capsys):
    assert bench.run(_args(tmp_path, "--cases", "nope")) == 2
    assert "unknown case" in capsys.readouterr().err


def test_quick_cases_are_valid_convolutions():
    for case in bench.select_cases(None, quick=True):
        assert case.macs > 0 and all(o >= 1 for o in case.out_size)
    assert bench.select_cases(["conv3x3_64"])[0].name == "conv3x3_64"


def test_import_is_light():
    code = ("import sys, clconv.bench; "
            "print(any(m in sys.modules for m in ('torch', 'scipy', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_case_table_imports_without_the_harness():
    # the autotuner and the benchmarks/ scripts read the cases, not the harness
    code = ("import sys, clconv._cases as c; "
            "print('clconv.bench' in sys.modules, len(c.CASES), "
            "any(m in sys.modules for m in ('torch', 'scipy', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", str(len(bench.CASES)), "False"]


def test_bench_still_exports_the_case_table():
    from clconv import _cases

    assert bench.CASES is _cases.CASES and bench.Case is _cases.Case
    names = {c.name for c in bench.CASES}
    assert len(names) == len(bench.CASES)


def test_plot_writes_png(tmp_path):
    import matplotlib  # noqa: F401  (the dev extra; --plot needs it)
    args = _args(tmp_path, "--cases", "latency8x8", "--no-peers",
                 "--plot", str(tmp_path / "out.png"))
    assert bench.run(args) == 0
    assert (tmp_path / "out.png").stat().st_size > 0


def test_blocks_time_all_but_the_first_call_of_each_block(monkeypatch):
    """Each round gives an implementation ``block`` consecutive calls and times
    ``block - 1`` of them, until ``repeat`` timed calls; block 1 times every call."""
    calls: list[str] = []

    def counting(case, x, w):
        return lambda: calls.append("peer") or x

    monkeypatch.setitem(bench.PEERS, "counting", counting)
    case = bench.select_cases(["latency8x8"], quick=True)[0]
    for block, repeat, want_calls in ((4, 7, 1 + 7 + 3), (1, 5, 1 + 5), (2, 3, 1 + 6)):
        calls.clear()
        result = bench._time_case(case, [], repeat, 60.0, ["counting"], block, 0.0)
        (row,) = result["results"]
        assert len(row["times_ms"]) == repeat
        assert len(calls) == want_calls  # warm-up + timed + one untimed per block


def test_blocks_warm_up_for_a_time_before_timing(monkeypatch):
    """With ``warmup`` each block's untimed calls go on until that much time has
    passed since the block started (at least the first call)."""
    calls: list[float] = []

    def slow(case, x, w):
        def call():
            time.sleep(0.004)
            calls.append(time.perf_counter())
            return x
        return call

    monkeypatch.setitem(bench.PEERS, "slow", slow)
    case = bench.select_cases(["latency8x8"], quick=True)[0]
    result = bench._time_case(case, [], 4, 60.0, ["slow"], 3, 0.0, 0.03)
    (row,) = result["results"]
    assert len(row["times_ms"]) == 4
    # The warm-up call, then 2 blocks of (untimed calls for >= 0.03 s, 2 timed):
    # each block needs more than one 4 ms call to fill 0.03 s and at most 8
    # (sleeps never return early), however slow the machine.
    untimed = len(calls) - 1 - 4
    assert 2 * 2 <= untimed <= 2 * 8, len(calls)
    assert calls[-1] - calls[0] >= 2 * 0.03


def test_bad_block_settle_or_warmup_is_a_usage_error(tmp_path, capsys):
    assert bench.run(_args(tmp_path, "--block", "0")) == 2
    assert "--block 0; expected at least 1" in capsys.readouterr().err
    assert bench.run(_args(tmp_path, "--settle", "-1")) == 2
    assert "--settle -1.0; expected at least 0" in capsys.readouterr().err
    assert bench.run(_args(tmp_path, "--warmup", "nan")) == 2
    assert "--warmup nan; expected at least 0" in capsys.readouterr().err


def test_filter_rows_run_and_check_against_the_peers(tmp_path, capsys):
    """``clconv bench --filters --quick``: every row timed against OpenCV / scipy.ndimage
    and equal to the peer's result."""
    args = _args(tmp_path, "--filters")
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "photo u8 filter2D 3x3" in out and "volume 16^3 gaussian_filter s2" in out
    data = json.loads((tmp_path / "out.json").read_text())
    rows = {r["row"]: r for r in data["filters"]}
    assert len(rows) == 14
    for name, row in rows.items():
        own = row["clconv"]["numpy"]
        assert row["peer_ms"] > 0 and own["ms"] > 0
        # OpenCV's GaussianBlur on uint8 uses fixed-point weights: a level or two off.
        assert own["correct"] or name.startswith("photo u8 GaussianBlur"), (name, own)
