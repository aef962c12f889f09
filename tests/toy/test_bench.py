"""``subject-inpaint bench toy --quick``: every setting is measured and written as JSON, markdown and a chart."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from subject_inpainting import cli
from subject_inpainting.presets import PRESETS
from subject_inpainting.toy import world
from subject_inpainting.toy.bench import (
    CHANGED_PARTS,
    ToyBenchConfig,
    selected_settings,
    settings,
    with_part_changed,
)


@pytest.mark.slow
def test_quick_benchmark_reports_every_setting(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main(["bench", "toy", "--quick", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "results.json").read_text())
    names = [s.name for s in settings(ToyBenchConfig.quick())]
    rows = {r["setting"]: r for r in result["results"]}
    assert list(rows) == names
    for r in rows.values():
        assert r["cases"] == 2 and len(r["identity_cases"]) == 2 and len(r["outline_cases"]) == 2
        assert 10 < r["psnr_outside_db"] < 100  # the model's own output, before paste-back: not exact
        assert math.isfinite(r["frechet_distance"]) and r["frechet_distance"] >= 0
        assert r["outline_read"] == sum(r["outline_cases"]) / 2  # the share of the cases read right
    # the settings asked for: base with three samplers, three subject variants, four model weights, and the
    # speed levers (deep cache, guidance interval) each alone on PLMS and DPM-Solver++, and the fast preset
    plain_samplers = [r for r in rows.values() if r["setting"].startswith("base,") and r["preset"] == "original"]
    plain_samplers = [r for r in plain_samplers if not r["levers_named"]]
    assert len(plain_samplers) == 3
    levers = [r for r in rows.values() if r["levers_named"] and r["preset"] == "original"]
    assert {r["sampler"] for r in levers} == {"plms", "dpmsolver++"} and len(levers) == 4
    # the fast preset with its tokens merged otherwise (quick: not at all), base and fine-tuned
    merging = [r for r in rows.values() if r["levers_named"] == ["token_merging"]]
    assert {r["setting"] for r in merging} >= {
        "base, fast preset, token merging 0",
        "fine-tuned + detail (1 token), w=0.8, fast preset, token merging 0",
    }
    assert all(r["preset"] == "fast" and r["levers"]["token_merging"] == 0.0 for r in merging)
    assert rows["base, fast preset"]["levers"]["token_merging"] == PRESETS["fast"]["token_merging"]
    assert all(r["levers"]["deep_cache"] == 3 for r in levers if "deep cache" in r["setting"])
    assert all(r["levers"]["guidance_interval"] == [100, 800] for r in levers if "guidance at" in r["setting"])
    fast = rows["base, fast preset"]
    assert (fast["sampler"], fast["steps"]) == (PRESETS["fast"]["sampler"], PRESETS["fast"]["num_inference_steps"])
    for prefix in ("base", "fine-tuned + detail (1 token), w=0.8"):  # the fast preset at fewer steps
        fewer = rows[f"{prefix}, fast preset, 3 steps"]
        assert fewer["steps"] == 3 and fewer["levers"] == rows[f"{prefix}, fast preset"]["levers"]
    low = rows.get("base, fast preset, bfloat16")  # on a CPU with native bfloat16 only
    if low is not None:
        assert low["dtype"] == "bfloat16" and fast["dtype"] == "float32"
        assert (low["sampler"], low["steps"], low["levers"]) == (fast["sampler"], fast["steps"], fast["levers"])
        assert low["identity_cases"] != fast["identity_cases"]  # really computed in the other precision
    held = next(r for r in rows.values() if r["setting"].startswith("base + keep_known"))
    plain = rows[held["setting"].replace(" + keep_known", "")]  # the same sampler without it
    assert held["psnr_outside_db"] > plain["psnr_outside_db"]  # outside the region: held to the scene
    assert {r["model_weight"] for r in rows.values() if r["model_weight"] is not None} == {0.0, 0.5, 0.8, 1.0}
    # the identity score's reference points: the truth with one part changed scores below the truth itself
    points = result["truth_with_one_part_changed"]
    assert list(points) == list(CHANGED_PARTS)
    assert all(p["cases"] == 2 and p["identity_mean"] < 0.999 for p in points.values())
    assert result["truth_outline_read"] == 1.0  # the truths of the quick cases are read right
    table = (out / "results.md").read_text()
    assert all(name in table for name in names) and "| body colour |" in table
    assert "outline read as the subject's shape" in table and "on the truths themselves: 100% of 2" in table
    assert Image.open(out / "identity.png").size[0] > 0
    assert str(out / "results.json") in capsys.readouterr().out


def test_with_part_changed_changes_that_part_only():
    ident = world.split_identities(0, "heldout", 1)[0]
    for part in [*CHANGED_PARTS, "marking_color"]:
        other = with_part_changed(ident, part)
        differs = [
            f
            for f in ("shape", "body", "pattern", "pattern_color", "marking", "marking_color")
            if getattr(other, f) != getattr(ident, f)
        ]
        assert differs == [part] and other.index == ident.index
    # same scene, pose and box: only the subject's pixels differ
    a, b = world.make_case(ident, seed=5), world.make_case(with_part_changed(ident, "body"), seed=5)
    assert (a.scene == b.scene).all() and a.box == b.box and (a.truth != b.truth).any()
    with pytest.raises(ValueError, match="part 'size'"):
        with_part_changed(ident, "size")


def test_a_settings_pattern_runs_only_the_settings_it_finds():
    config = ToyBenchConfig.quick()
    every = [s.name for s in settings(config)]
    assert [s.name for s in selected_settings(config)] == every
    config.only = r"PLMS-10$|fast preset"
    names = [s.name for s in selected_settings(config)]
    assert names == [n for n in every if n.endswith("PLMS-10") or "fast preset" in n]
    assert "base, PLMS-10" in names and "base, fast preset, 3 steps" in names and "base, DDIM-10" not in names
    for bad, message in (("(", "is not a regular expression"), ("no such row", "finds no setting")):
        config.only = bad
        with pytest.raises(ValueError, match=message):
            selected_settings(config)


def test_a_settings_pattern_that_finds_nothing_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main(["bench", "toy", "--quick", "--out", str(out), "--settings", "nothing like it"]) == 2
    err = capsys.readouterr().err
    assert "'nothing like it' finds no setting" in err and "base, PLMS-10" in err and "Traceback" not in err
    assert not out.exists()


def test_the_fast_preset_rows_name_each_step_count_once():
    from subject_inpainting.presets import PRESETS

    own = PRESETS["fast"]["num_inference_steps"]
    config = ToyBenchConfig.quick()
    config.fast_steps = (own, 7)
    names = [s.name for s in settings(config)]
    for prefix in ("base", "fine-tuned + detail (1 token), w=0.8"):
        assert f"{prefix}, fast preset" in names and f"{prefix}, fast preset, 7 steps" in names
        assert f"{prefix}, fast preset, {own} steps" not in names  # the preset's own row already has them
    assert len(names) == len(set(names))


def test_bfloat16_rows_only_where_asked_or_native(monkeypatch):
    from subject_inpainting.toy import bench

    rows = ["base, fast preset, bfloat16", "fine-tuned + detail (1 token), w=0.8, fast preset, bfloat16"]
    config = ToyBenchConfig.quick()
    for native in (True, False):
        monkeypatch.setattr(bench, "native_bf16", lambda native=native: native)
        by_name = {s.name: s for s in settings(config)}
        assert all((name in by_name) == native for name in rows)
    config.bfloat16 = True  # asked for: there whatever the CPU
    by_name = {s.name: s for s in settings(config)}
    assert [by_name[name].dtype for name in rows] == ["bfloat16", "bfloat16"]
    assert by_name[rows[1]].subject == "detail" and by_name[rows[0]].subject is None
    assert {s.dtype for s in settings(config) if ", bfloat16" not in s.name} == {"float32"}
    assert {s.dtype for s in settings(config) if ", bfloat16" in s.name} == {"bfloat16"}
    config.bfloat16 = False
    assert not any(", bfloat16" in s.name for s in settings(config))
