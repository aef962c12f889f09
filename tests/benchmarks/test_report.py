"""``benchmarks/report.py``: the results tables and measured numbers of the documents are the results JSON's."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"


@pytest.fixture(scope="module")
def report():
    """The script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("benchmarks_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_the_committed_documents_say_what_the_results_json_gives(report):
    problems = report.check()
    assert problems == [], "run python benchmarks/report.py:\n" + "\n".join(problems)


def speed_row(median: float, label: str, batches: list[int], calls: int = 2) -> dict:
    """A ``bench_speed.py`` row as its JSON holds it, with ``calls`` equal calls."""
    return {
        "median_s": median,
        "min_s": median * 0.9,
        "max_s": median * 1.1,
        "unet_calls_per_run": len(batches),
        "unet_batches_per_run": batches,
        "unet_full_calls_per_run": len(batches),
        "peak_rss_gib": 2.0,
        "peak_over_before_gib": 0.5,
        "stages_median_s": {
            "unet": median - 3,
            "vae_encode": 1.0,
            "vae_decode": 2.0,
            "reference_encoder": 0.0,
            "rest": 0.0,
        },
        "unet_evaluation_median_s": {"whole b2": (median - 3) / len(batches)},
        "calls": [{"seconds": median}] * calls,
        "variant": "eager",
        "dtype": "float32",
        "label": label,
    }


FAKE = {
    "benchmark": "bench_speed",
    "command": "python benchmarks/bench_speed.py --workloads a",
    "settings": {"workloads": {"a": "plain Paint-by-Example"}, "skipped_rows": {}},
    "machine": {
        "cpu": "Test CPU",
        "usable_cpus": 2,
        "logical_cpus": 4,
        "git": "abc1234",
        "date_utc": "2026-01-02T03:04:05+00:00",
    },
    "workloads": {
        "a": {"original": speed_row(100.0, "PLMS 50", [2] * 51), "fast": speed_row(20.0, "fast preset", [2] * 15)}
    },
    "flops": {},
}
DOCUMENT = """# Results

Prose stays as it is.

<!-- results: fake.json rows -->
an old table
<!-- end results -->

- a list item:
  <!-- results: fake.json speedup fast -->
  <!-- end results -->
"""


@pytest.fixture
def tree(report, tmp_path, monkeypatch):
    """A repository with benchmarks/fake.json and a document whose blocks read it."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "fake.json").write_text(json.dumps(FAKE))
    (tmp_path / "benchmarks" / "README.md").write_text(DOCUMENT)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    monkeypatch.setattr(report, "BENCHMARKS", tmp_path / "benchmarks")
    monkeypatch.setattr(report, "DOCUMENTS", ("benchmarks/README.md",))
    return tmp_path


def test_a_table_and_a_sentence_are_rendered_from_the_json_with_its_run(report, tree):
    assert report.main([]) == 0
    text = (tree / "benchmarks" / "README.md").read_text()
    assert "an old table" not in text and "Prose stays as it is." in text
    row = "| a: plain Paint-by-Example | `fast` | fast preset | 15 (15×b2) | 2 | 20.00 (18.00–22.00) | 0.20 | 2.00 |"
    assert row + " 0.50 |" in text
    # The run beside the table, as the JSON records it (the prose is wrapped: compared with single spaces).
    flat = " ".join(text.split())
    assert "`python benchmarks/bench_speed.py --workloads a`; commit abc1234; 2026-01-02 03:04:05 UTC" in flat
    assert "Test CPU; 2 of 4 CPUs usable" in flat
    # The sentence keeps the list item's indent and names its file.
    sentence = text.split("<!-- results: fake.json speedup fast -->\n")[1].split("  <!-- end results -->")[0]
    assert sentence.startswith("  `fast` paints a whole image 5.0× faster than `original` in a")
    assert all(line.startswith("  ") and len(line) <= report.WIDTH for line in sentence.splitlines())
    assert "(plain Paint-by-Example: 20.0 s against 100.0 s)" in flat
    assert "[`fake.json`](fake.json), commit abc1234" in flat
    assert report.check() == []
    assert report.main([]) == 0 and (tree / "benchmarks" / "README.md").read_text() == text  # idempotent


def test_check_names_every_block_whose_numbers_differ_from_the_json(report, tree, capsys):
    report.write()
    assert report.main(["--check"]) == 0
    changed = copy.deepcopy(FAKE)
    changed["workloads"]["a"]["fast"]["median_s"] = 25.0
    (tree / "benchmarks" / "fake.json").write_text(json.dumps(changed))
    problems = report.check()
    assert len(problems) == 2 and all("is stale" in p for p in problems)
    assert "benchmarks/README.md:5: <!-- results: fake.json rows -->" in problems[0]
    assert "fake.json speedup fast" in problems[1]
    assert report.main(["--check"]) == 1 and "is stale" in capsys.readouterr().err
    report.write()
    assert "4.0× faster" in (tree / "benchmarks" / "README.md").read_text() and report.check() == []


def test_check_names_results_files_no_block_reads_and_broken_markers(report, tree):
    report.write()
    (tree / "benchmarks" / "toy").mkdir()
    (tree / "benchmarks" / "toy" / "superseded.json").write_text("{}")
    assert report.check() == ["benchmarks/toy/superseded.json: no block names it (delete a superseded result)"]
    readme = tree / "benchmarks" / "README.md"
    readme.write_text(DOCUMENT.replace("fake.json rows", "missing.json rows"))
    assert any("missing.json: cannot read it" in p for p in report.check())
    readme.write_text(DOCUMENT.replace("fake.json rows", "fake.json no-such-view"))
    assert any("unknown view 'no-such-view'" in p for p in report.check())


def test_what_a_json_does_not_record_is_said_not_invented(report, tree):
    bare = {
        "model": "a toy model",
        "whole_decode_seconds": 10.0,
        "windows": {
            "margin 8, side 128": {
                "max_difference_inside_region": 3,
                "mean_difference_inside_region": 0.5,
                "seconds": 2.5,
                "share_decoded": 0.25,
            }
        },
    }
    (tree / "benchmarks" / "bare.json").write_text(json.dumps(bare))
    text = report.render_block("bare.json region-full", tree / "benchmarks" / "README.md", {})
    assert "| 8 | 128 | 25 % | 2.50 | 4.0× | 3 | 0.50 |" in text
    assert text.endswith("not recorded in this JSON: command, commit, date and machine.")
    # The ratios of a sentence come from its one file: a sentence of two runs is refused.
    with pytest.raises(report.ReportError, match="reads 1 file"):
        report.render_block("bare.json fake.json region-full", tree / "benchmarks" / "README.md", {})
