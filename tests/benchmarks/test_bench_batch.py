"""``benchmarks/bench_batch.py``: batch and the loop of inpaint calls paint the same pictures, both timed."""

from __future__ import annotations

import json

import pytest

from conftest import import_benchmark


@pytest.mark.slow
def test_batch_and_the_loop_paint_the_same_pictures(tmp_path, capsys):
    bench = import_benchmark("bench_batch")
    out = tmp_path / "result.json"
    argv = ["--jobs", "2", "--steps", "2", "--batch-sizes", "1,2", "--out", str(out)]
    result = bench.main(bench.parse_args(argv))
    differences = result["largest_difference_to_loop"]
    assert differences["batch"] == 0 and differences["batch --batch-size 2"] <= 1  # a batched UNet's rounding
    assert set(result["rows"]) == {"loop of inpaint", "batch", "batch --batch-size 2"}
    assert all(row["pictures_per_minute"] > 0 and len(row["seconds"]) == 1 for row in result["rows"].values())
    assert json.loads(out.read_text())["machine"]["capability"] == result["machine"]["capability"]
    assert "| batch --batch-size 2 | 2 |" in capsys.readouterr().out
    for bad in (["--jobs", "0"], ["--batch-sizes", "0"], ["--batch-sizes", "1,x"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
