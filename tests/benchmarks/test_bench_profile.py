"""``benchmarks/bench_profile.py``: a whole UNet call's time by operator, with and without token merging."""

from __future__ import annotations

import json

import pytest

from conftest import import_benchmark


def bench_profile():
    return import_benchmark("bench_profile")


def test_each_setting_is_profiled_and_its_shares_add_up(tmp_path):
    bench = bench_profile()
    out = tmp_path / "profile.json"
    argv = ["--quick", "--dtypes", "float32", "--batches", "1", "--min-share", "0.05", "--out", str(out)]
    result = bench.main(bench.parse_args(argv))
    plain, merged = result["rows"]["float32 b1 token merging 0"], result["rows"]["float32 b1 token merging 0.5"]
    assert merged["gflop"] < plain["gflop"]  # the merged attention has fewer tokens
    for row in (plain, merged):
        shares = [o["share"] for o in row["operators"].values()]
        assert all(s >= 0.05 for s in shares)
        assert sum(shares) + row["other_operators_share"] == pytest.approx(1)
        assert row["gflop_per_s"] == pytest.approx(row["gflop"] / row["seconds"])
        assert any("conv" in name for name in row["operators"])
    assert json.loads(out.read_text())["rows"].keys() == result["rows"].keys()


def test_int8_rows_run_the_int8_layers_and_time_their_packing(tmp_path):
    from subject_inpainting.models.int8 import int8_unavailable

    if int8_unavailable() is not None:
        pytest.skip(int8_unavailable())
    bench = bench_profile()
    argv = ["--quick", "--dtypes", "float32", "--batches", "1", "--int8", "--out", str(tmp_path / "p.json")]
    result = bench.main(bench.parse_args(argv))
    rows = result["rows"]
    assert [k for k in rows if " int8 " in k] == [f"float32 int8 b1 token merging {r}" for r in ("0", "0.5")]
    plain, int8 = rows["float32 b1 token merging 0"], rows["float32 int8 b1 token merging 0"]
    assert int8["int8"] and not plain["int8"] and int8["gflop"] == plain["gflop"]  # the float call's FLOPs
    assert any("qconv" in name or "qlinear" in name for name in int8["operators"])
    assert not any("qconv" in name for name in plain["operators"])
    assert result["int8_pack_s"]["float32"] > 0
    assert set(result["int8_peak_gflop_per_s"]["float32"]) == {"matmul", "conv"}


def test_bad_arguments_are_refused():
    bench = bench_profile()
    for bad in (["--batches", "0"], ["--batches", "x"], ["--min-share", "1"], ["--dtypes", "int3"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
