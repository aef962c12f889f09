"""``benchmarks/bench_layout.py``: the VAE and UNet timed in both memory layouts, computing the same."""

from __future__ import annotations

import json

import pytest

from conftest import import_benchmark


def bench_layout():
    return import_benchmark("bench_layout")


def test_both_layouts_are_timed_and_compute_the_same(tmp_path):
    bench = bench_layout()
    out = tmp_path / "layout.json"
    result = bench.main(bench.parse_args(["--quick", "--dtypes", "float32", "--rounds", "1", "--out", str(out)]))
    rows = result["rows"]
    assert {(r["operation"], r["layout"]) for r in rows.values()} == {
        ("vae encode", "contiguous"),
        ("vae encode", "channels-last input"),
        ("vae decode", "contiguous"),
        ("vae decode", "channels-last input"),
        ("unet whole b2", "contiguous"),
        ("unet whole b2", "channels-last input"),
        ("unet whole b2", "channels-last weights"),
    }
    for r in rows.values():
        assert r["seconds"] > 0 and len(r["rounds"]) == 1
        assert r["largest_difference"] < 1e-4  # float32: only the order of the sums differs
        if r["layout"] == "contiguous":
            assert r["largest_difference"] == 0 and r["faster_than_contiguous"] == 1
    assert json.loads(out.read_text())["machine"]["capability"] == result["machine"]["capability"]


def test_bad_arguments_are_refused():
    bench = bench_layout()
    for bad in (["--rounds", "0"], ["--calls", "0"], ["--dtypes", "float8"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
