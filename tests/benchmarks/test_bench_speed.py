"""``benchmarks/bench_speed.py``: every requested row is timed, its UNet calls are counted, the machine is written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import import_benchmark


@pytest.fixture(scope="module")
def bench_speed():
    """The script as a module (benchmarks/ is not a package: its scripts import each other by name)."""
    return import_benchmark("bench_speed")


@pytest.fixture
def keep_threads():
    """--quick sets torch's threads for the process; the rest of the session keeps its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(bench_speed, argv: list[str]) -> dict:
    out = Path(argv[argv.index("--out") + 1])
    assert bench_speed.main(bench_speed.parse_args(argv)) == 0
    return json.loads(out.read_text())


def test_quick_rows_calls_and_machine(bench_speed, tmp_path, keep_threads):
    rows = ["original", "deep-cache", "guidance-interval"]
    argv = ["--quick", "--repeats", "1", "--workloads", "a", "--rows", ",".join(rows)]
    report = run(bench_speed, [*argv, "--out", str(tmp_path / "speed.json")])
    results = report["workloads"]["a"]
    assert list(results) == rows
    assert all(r["median_s"] > 0 and len(r["calls"]) == 1 for r in results.values())
    # PLMS 50: 51 UNet calls (two at its first step), each a whole UNet at batch 2 (unconditional + conditional)
    original = results["original"]
    assert original["unet_calls_per_run"] == original["unet_full_calls_per_run"] == 51
    assert original["unet_batches_per_run"] == [2] * 51
    # DeepCache: as many evaluations, one whole UNet every `interval` calls, the others its shallow path
    cache = results["deep-cache"]
    interval = report["settings"]["lever_values"]["deep_cache"]
    assert cache["unet_calls_per_run"] == 51 and cache["unet_full_calls_per_run"] == math.ceil(51 / interval) < 51
    # Guidance interval: outside it the unconditional row is skipped (batch 1)
    assert sorted(set(results["guidance-interval"]["unet_batches_per_run"])) == [1, 2]
    # each evaluation timed on its own, by kind: the whole UNet or DeepCache's shallow path, and batch
    assert list(original["unet_evaluation_median_s"]) == ["whole b2"]
    assert list(cache["unet_evaluation_median_s"]) == ["whole b2", "cached b2"]
    assert list(results["guidance-interval"]["unet_evaluation_median_s"]) == ["whole b1", "whole b2"]
    for r in results.values():
        call = r["calls"][0]
        assert len(call["unet_seconds"]) == len(call["unet_whole"]) == call["unet_calls"]
        assert sum(call["unet_whole"]) == r["unet_full_calls_per_run"]
        assert sum(call["unet_seconds"]) == pytest.approx(call["stages_s"]["unet"])
    assert results["original"]["ratio_to_original"] == 1.0
    assert all(r["peak_rss_gib"] > 0 for r in results.values())
    assert all(report["checks"].values()) and "a/original_unet_calls" in report["checks"]
    machine = report["machine"]
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["cpu"] and machine["usable_cpus"] >= 1 and machine["torch_threads"] == 1
    assert machine["versions"]["torch"] and machine["versions"]["diffusers"] and "git" in machine
    flops = report["flops"]
    assert flops["step"]["gflop"] > 0 and flops["step"]["share_of_peak"] > 0
    assert flops["matmul"]["gflop"] == pytest.approx(2 * 2048**3 / 1e9)
    assert all(f"`{name}`" in report["markdown"] for name in rows)


def test_lever_rows_follow_the_fast_preset(bench_speed, monkeypatch):
    from subject_inpainting import presets

    fast = presets.PRESETS["fast"]
    turned_on = {
        "deep_cache": 5,
        "guidance_interval": (200, 700),
        "sampler": "unipc",
        "num_inference_steps": 9,
        "token_merging": 0.25,
    }
    monkeypatch.setitem(presets.PRESETS, "fast", {**fast, **turned_on})
    assert bench_speed.make_row("deep-cache", 50).options["deep_cache"] == 5
    assert bench_speed.make_row("token-merging", 50).options["token_merging"] == 0.25
    assert bench_speed.make_row("guidance-interval", 50).options["guidance_interval"] == (200, 700)
    few = bench_speed.make_row("few-steps", 50).options
    assert (few["sampler"], few["num_inference_steps"]) == ("unipc", 9)
    turned_off = {
        "deep_cache": 1,
        "guidance_interval": None,
        "sampler": "plms",
        "num_inference_steps": 50,
        "token_merging": 0.0,
    }
    monkeypatch.setitem(presets.PRESETS, "fast", {**fast, **turned_off})
    merging = bench_speed.make_row("token-merging-bfloat16", 50)
    assert merging.variant == "bfloat16" and merging.options["token_merging"] == bench_speed.DEFAULT_TOKEN_MERGING
    assert bench_speed.make_row("deep-cache", 50).options["deep_cache"] == bench_speed.DEFAULT_DEEP_CACHE
    assert bench_speed.make_row("guidance-interval", 50).options["guidance_interval"] == bench_speed.DEFAULT_INTERVAL
    few = bench_speed.make_row("few-steps", 50).options
    assert (few["sampler"], few["num_inference_steps"]) == bench_speed.DEFAULT_FEW_STEPS
    # every lever row is the original recipe plus that one lever
    original = bench_speed.make_row("original", 12).options
    assert original == {"preset": "original", "num_inference_steps": 12}
    assert bench_speed.make_row("region-decode", 12).options == {**original, "decode": "region"}
    assert bench_speed.make_row("bfloat16", 12).options == original
    assert bench_speed.make_row("token-merging", 12).options == {**original, "token_merging": 0.5}
    assert bench_speed.make_row("fast", 12).options == {"preset": "fast"}


def test_the_default_rows_follow_int8_auto(bench_speed, monkeypatch, tiny_pipeline):
    from subject_inpainting import devices

    monkeypatch.setattr(devices, "resolve_dtype", lambda name, device: torch.bfloat16)
    assert bench_speed.make_row("default", 15, default_int8=True).variant == "int8-bfloat16"
    assert bench_speed.make_row("default", 15, default_int8=False).variant == "bfloat16"
    assert bench_speed.make_row("default-float", 15, default_int8=True).variant == "bfloat16"
    assert bench_speed.make_row("default-int8", 15).variant == "int8-bfloat16"
    assert bench_speed.split_variant("int8-bfloat16") == (None, "bfloat16") and bench_speed.int8_variant("int8")
    monkeypatch.setattr(devices, "resolve_dtype", lambda name, device: torch.float32)
    assert bench_speed.make_row("default-int8", 15).variant == "int8"
    assert bench_speed.split_variant("int8") == (None, "float32")
    # --int8 auto as the CLI decides it, for the full-size UNet and the embedded toy one (too small)
    seen = []
    monkeypatch.setattr(devices, "int8_auto", lambda device, dtype, work: seen.append(work) or True)
    assert bench_speed.auto_int8(quick=False) and seen[0] >= devices.SMALL_UNET
    # an int8 twin leaves the float pipeline's layers as they were
    from subject_inpainting.models.int8 import int8_layers, int8_unavailable

    if int8_unavailable() is None:
        twin = bench_speed.int8_pipeline(tiny_pipeline)
        assert int8_layers(twin.unet) and int8_layers(tiny_pipeline.unet) == []


def test_options_are_checked(bench_speed, capsys):
    for argv in (["--rows", "original,warp-speed"], ["--workloads", "a,d"], ["--repeats", "0"], ["--dtypes", "int8"]):
        with pytest.raises(SystemExit):
            bench_speed.parse_args(argv)
    assert "warp-speed" in capsys.readouterr().err
    quick = bench_speed.parse_args(["--quick"])
    assert quick.workloads == ["a"] and quick.repeats == 3 and quick.threads == 1
    full = bench_speed.parse_args([])
    assert full.workloads == ["a", "b", "c"] and full.repeats == 1 and full.threads == 0
    assert "compile-inductor" not in bench_speed.default_rows(full)
    assert {"compile-inductor", "compile-openvino", "fast-openvino"} <= set(
        bench_speed.default_rows(bench_speed.parse_args(["--compile"]))
    )
    assert bench_speed.make_row("fast-openvino-bfloat16", 50).options == {"preset": "fast"}


@pytest.mark.fresh_process  # OpenVINO's runtime stays loaded once imported
def test_the_fast_preset_under_openvino_keeps_deep_cache_in_graphs(bench_speed, tmp_path, keep_threads):
    pytest.importorskip("openvino")
    argv = ["--quick", "--repeats", "1", "--workloads", "a", "--rows", "fast,fast-openvino", "--no-warmup"]
    results = run(bench_speed, [*argv, "--out", str(tmp_path / "speed.json")])["workloads"]["a"]
    eager, compiled = results["fast"], results["fast-openvino"]
    assert compiled["settings"] == eager["settings"] and compiled["settings"]["deep_cache"] > 1
    # the graphs' calls are counted and timed as the eager UNet's are: the same calls, whole and cached
    for key in ("unet_calls_per_run", "unet_batches_per_run", "unet_full_calls_per_run"):
        assert compiled[key] == eager[key]
    assert set(compiled["unet_evaluation_median_s"]) == set(eager["unet_evaluation_median_s"])
    assert compiled["compile"]["steps"] == 4 and compiled["compile"]["first_call_s"] > 0
    call = compiled["calls"][0]
    assert sum(call["unet_seconds"]) == pytest.approx(call["stages_s"]["unet"])


@pytest.mark.slow
def test_quick_every_workload_and_diffusers(bench_speed, tmp_path, keep_threads):
    argv = ["--quick", "--repeats", "1", "--workloads", "a,b,c", "--rows", "original,diffusers-50,fast"]
    report = run(bench_speed, [*argv, "--out", str(tmp_path / "speed.json")])
    results = report["workloads"]
    assert list(results["a"]) == ["original", "diffusers-50", "fast"]
    assert list(results["b"]) == list(results["c"]) == ["original", "fast"]  # diffusers: plain only
    # diffusers' PNDM 50 makes PLMS's 51 calls, on our very UNet
    assert (
        results["a"]["diffusers-50"]["unet_calls_per_run"] == 51 and report["checks"]["diffusers_shares_unet_and_vae"]
    )
    assert set(results["b"]["original"]["unet_batches_per_run"]) == {3}  # LoRA: subject, unconditional, class rows
    assert results["c"]["original"]["unet_calls_per_run"] == 102  # full subject: its UNet and the pretrained one
    assert "`fast` over `diffusers-50`" in report["markdown"]


@pytest.mark.parametrize(("native", "variant"), [(True, "bfloat16"), (False, "eager")])
def test_the_default_row_is_what_inpaint_runs_here(bench_speed, monkeypatch, native, variant):
    from subject_inpainting import presets, utils

    monkeypatch.setattr(utils, "native_bf16", lambda: native)
    row = bench_speed.make_row("default", 50)
    assert row.variant == variant and row.options == {"preset": presets.DEFAULT_PRESET}
