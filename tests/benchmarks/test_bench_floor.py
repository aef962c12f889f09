"""``benchmarks/bench_floor.py``: each row of a speed run counted in FLOPs and set against this CPU's peak."""

from __future__ import annotations

import json

import pytest

from conftest import BENCHMARKS, import_benchmark


def bench_floor():
    return import_benchmark("bench_floor")


def test_rows_are_counted_from_their_calls_and_set_against_the_peak(tmp_path):
    bench = bench_floor()
    speed = json.loads((BENCHMARKS / "results-speed-default.json").read_text())
    out = tmp_path / "floor.json"
    argv = ["--quick", "--results", str(BENCHMARKS / "results-speed-default.json"), "--out", str(out)]
    result = bench.main(bench.parse_args(argv))
    counted = result["unet_call_gflop_batch_1"]
    whole, cached = (counted[f"{kind} (token merging 0.5, branch 0)"] for kind in ("whole", "cached"))
    assert 0 < cached < whole < counted["whole (token merging 0.0, branch 0)"]  # merging removes work
    for row in result["rows"].values():
        calls = speed["workloads"]["a"][row["row"]]["calls"][0]
        ratio = speed["workloads"]["a"][row["row"]]["settings"]["token_merging"]
        unet = sum(
            batch * counted[f"{'whole' if w else 'cached'} (token merging {ratio}, branch 0)"]
            for batch, w in zip(calls["unet_batches"], calls["unet_whole"], strict=True)
        )
        assert row["gflop"]["unet"] == pytest.approx(unet)
        assert row["gflop"]["total"] == pytest.approx(unet + sum(result["other_gflop"].values()))
        peak = max(result["peak_gflop_per_s"][row["dtype"]].values())
        assert row["floor_s"] == pytest.approx(row["gflop"]["total"] / peak)
        assert row["highest_ratio_to_original"] == pytest.approx(
            result["rows"]["a original"]["measured_s"] / row["floor_s"]
        )
    assert result["rows"]["a default"]["gflop"]["total"] < result["rows"]["a original"]["gflop"]["total"]
    assert json.loads(out.read_text())["rows"].keys() == result["rows"].keys()


def test_a_file_that_is_not_a_speed_run_is_refused(tmp_path, capsys):
    bench = bench_floor()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit):
        bench.parse_args(["--results", str(bad)])
    assert "not a bench_speed.py results file" in capsys.readouterr().err
