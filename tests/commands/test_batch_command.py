"""``subject-inpaint batch``: good and bad jobs, resuming, CSV, subjects and ``accelerate launch``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import accelerate_launch, run_launched, save_scene
from subject_inpainting import cli
from subject_inpainting.commands.options import CommandError

FAST = ["--steps", "3", "--dtype", "float32", "--quiet"]  # float32 whatever the CPU: pictures compared to a level


@pytest.fixture
def job_files(tmp_path):
    """A scene, a mask and a reference in ``tmp_path/in``, named relative to the jobs file there."""
    folder = tmp_path / "in"
    folder.mkdir()
    save_scene(folder / "scene.png", size=(48, 40), seed=0)
    save_scene(folder / "reference.png", size=(30, 30), seed=1)
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[10:30, 12:36] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    return folder


def write_jobs(folder: Path, lines: list, name: str = "jobs.jsonl") -> Path:
    path = folder / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


GOOD = [
    {"id": "masked", "scene": "scene.png", "mask": "mask.png", "reference": "reference.png"},
    {"scene": "scene.png", "box": [5, 5, 30, 30], "reference": "reference.png", "seed": 7, "num_images": 2},
    {"id": "cropped", "scene": "scene.png", "box": "4,6,40,30", "reference": "reference.png", "region": "crop"},
]
BAD = [
    {"id": "no-scene", "scene": "missing.png", "mask": "mask.png", "reference": "reference.png"},
    {"id": "outside", "scene": "scene.png", "box": [40, 30, 90, 90], "reference": "reference.png"},
    {"id": "stranger", "scene": "scene.png", "box": [5, 5, 30, 30], "subject": "no-such-subject"},
    "{not json",
    {"id": "typo", "scene": "scene.png", "box": [5, 5, 30, 30], "refrence": "reference.png"},
    {"id": "steps", "scene": "scene.png", "box": [5, 5, 30, 30], "reference": "reference.png", "steps": 0},
]


def test_good_jobs_are_painted_and_bad_ones_recorded(job_files, tiny_model_dir, tmp_path, capsys):
    jobs = write_jobs(job_files, [*GOOD, *BAD])
    out = tmp_path / "out"
    code = cli.main(["batch", str(jobs), "--out-dir", str(out), "--model", str(tiny_model_dir), *FAST])
    summary = capsys.readouterr().out.strip()
    assert code == 1 and summary == f"3 painted, 0 already done, 6 failed: see {out / 'failures.jsonl'}"
    assert sorted(p.name for p in out.glob("*.png")) == ["2-0.png", "2-1.png", "cropped.png", "masked.png"]
    assert Image.open(out / "masked.png").size == (48, 40)
    results = lines_of(out / "results.jsonl")
    assert [r["id"] for r in results] == ["masked", "2", "cropped"]
    assert [r["seed"] for r in results] == [1, 7, 3]  # --seed 0 + the job's number, or its own
    assert results[1]["outputs"] == [str(out / "2-0.png"), str(out / "2-1.png")]
    failures = {r["id"]: r["error"] for r in lines_of(out / "failures.jsonl")}
    assert list(failures) == ["no-scene", "outside", "stranger", "7", "typo", "steps"]
    assert "missing.png" in failures["no-scene"] and "no such file" in failures["no-scene"]
    assert "outside" in failures["outside"] or "box" in failures["outside"]
    assert "no-such-subject" in failures["stranger"]
    assert failures["7"].startswith("not a JSON object")
    assert failures["typo"].startswith("unknown field 'refrence'")
    assert failures["steps"] == "steps must be a whole number between 1 and 1,000, got 0"
    assert all("\n" not in reason for reason in failures.values())


def test_a_line_no_reader_takes_fails_alone_and_the_next_job_is_painted(job_files, tiny_model_dir, tmp_path, capsys):
    good = {"id": "after", "scene": "scene.png", "box": [5, 5, 30, 30], "reference": "reference.png"}
    jobs = write_jobs(job_files, ["[" * 100_000, '{"id": 1' + "0" * 5000 + "}", good])
    out = tmp_path / "out"
    code = cli.main(["batch", str(jobs), "--out-dir", str(out), "--model", str(tiny_model_dir), *FAST])
    assert code == 1 and capsys.readouterr().out.startswith("1 painted, 0 already done, 2 failed")
    assert (out / "after.png").is_file()
    failures = {r["id"]: r["error"] for r in lines_of(out / "failures.jsonl")}
    assert failures["1"] == "not a JSON object this reader takes (nested too deeply)"
    assert failures["2"].startswith("not a JSON object this reader takes (Exceeds the limit")


def test_a_job_paints_what_inpaint_paints_with_its_seed(job_files, tiny_model_dir, tmp_path, capsys):
    jobs = write_jobs(job_files, [{**GOOD[0], "seed": 11, "guidance": 3, "sampler": "ddim"}])
    out = tmp_path / "out"
    model = ["--model", str(tiny_model_dir)]
    assert cli.main(["batch", str(jobs), "--out-dir", str(out), *model, *FAST]) == 0
    single = tmp_path / "single.png"
    argv = ["inpaint", "--scene", str(job_files / "scene.png"), "--mask", str(job_files / "mask.png")]
    argv += ["--reference", str(job_files / "reference.png"), "--out", str(single), "--seed", "11"]
    assert cli.main([*argv, "--guidance", "3", "--sampler", "ddim", *model, *FAST]) == 0
    assert np.array_equal(pixels(out / "masked.png"), pixels(single))


def test_a_rerun_paints_nothing_twice(job_files, tiny_model_dir, tmp_path, capsys):
    jobs = write_jobs(job_files, [*GOOD, BAD[0]])
    out = tmp_path / "out"
    argv = ["batch", str(jobs), "--out-dir", str(out), "--model", str(tiny_model_dir), *FAST]
    assert cli.main(argv) == 1
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    capsys.readouterr()
    assert cli.main(argv) == 1
    assert capsys.readouterr().out.startswith("0 painted, 3 already done, 1 failed")
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == written
    shutil.copy(job_files / "scene.png", job_files / "missing.png")  # the bad job's file appears
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == "1 painted, 3 already done, 0 failed"
    assert (out / "failures.jsonl").read_text() == "" and len(lines_of(out / "results.jsonl")) == 4


def test_a_csv_file_paints_the_same_pictures(job_files, tiny_model_dir, tmp_path, capsys):
    write_jobs(job_files, GOOD[:1] + GOOD[2:])
    (job_files / "jobs.csv").write_text(
        "id,scene,mask,box,reference,region,paste_back\n"
        "masked,scene.png,mask.png,,reference.png,,\n"
        '2,scene.png,,"4,6,40,30",reference.png,crop,true\n'
    )
    model = ["--model", str(tiny_model_dir), *FAST]
    assert cli.main(["batch", str(job_files / "jobs.jsonl"), "--out-dir", str(tmp_path / "a"), *model]) == 0
    assert cli.main(["batch", str(job_files / "jobs.csv"), "--out-dir", str(tmp_path / "b"), *model]) == 0
    assert np.array_equal(pixels(tmp_path / "a" / "masked.png"), pixels(tmp_path / "b" / "masked.png"))
    # the same job and seed (--seed 0 + its number 2), in either file
    assert np.array_equal(pixels(tmp_path / "a" / "cropped.png"), pixels(tmp_path / "b" / "2.png"))


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "JOBS .*missing.jsonl: no such file"),
        ("duplicate", "jobs 1 and 2 have the same id 'a'"),
        ("bad id", "id '../a' cannot name a file"),
        ("user folder", "exists, is not empty"),
        ("bad option", "--steps: .*between 1 and 1,000"),
    ],
)
def test_a_bad_command_line_or_jobs_file_stops_before_any_work(case, match, job_files, tmp_path, capsys):
    job = {"scene": "scene.png", "box": [5, 5, 30, 30], "reference": "reference.png"}
    lines = {"duplicate": [{**job, "id": "a"}, {**job, "id": "a"}], "bad id": [{**job, "id": "../a"}]}
    jobs = write_jobs(job_files, lines.get(case, [job]))
    out = tmp_path / "out"
    if case == "user folder":
        out.mkdir()
        (out / "mine.txt").write_text("keep")
    argv = ["batch", str(tmp_path / "missing.jsonl" if case == "missing" else jobs), "--out-dir", str(out)]
    assert cli.main([*argv, *(["--steps", "0"] if case == "bad option" else [])]) == 2
    assert re.search(match, capsys.readouterr().err)
    if case == "user folder":
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    else:
        assert not out.exists()


def test_subject_jobs_load_their_subject_and_paint_as_inpaint(job_files, tiny_lora_subject, tmp_path, capsys):
    subject = tiny_lora_subject
    plain = {"scene": "scene.png", "mask": "mask.png", "reference": "reference.png"}
    lines = [
        {**plain, "id": "plain-1"},
        {"id": "bear", "scene": "scene.png", "mask": "mask.png", "subject": str(subject)},
    ]
    lines += [{**plain, "id": "plain-2", "seed": 1}]  # after the subject's job: the plain model again
    jobs = write_jobs(job_files, lines)
    out = tmp_path / "out"
    assert cli.main(["batch", str(jobs), "--out-dir", str(out), *FAST]) == 0  # the model: the subject's base
    assert np.array_equal(pixels(out / "plain-1.png"), pixels(out / "plain-2.png"))
    single = tmp_path / "single.png"
    argv = ["inpaint", "--scene", str(job_files / "scene.png"), "--mask", str(job_files / "mask.png")]
    assert cli.main([*argv, "--subject", str(subject), "--out", str(single), "--seed", "2", *FAST]) == 0
    assert np.array_equal(pixels(out / "bear.png"), pixels(single))
    assert not np.array_equal(pixels(out / "bear.png"), pixels(out / "plain-1.png"))


def test_batch_size_paints_the_same_pictures_and_failures(
    job_files, tiny_lora_subject, tmp_path, capsys, scenes_per_call
):
    boxes = [
        {"id": f"box-{i}", "scene": "scene.png", "box": [2 + i, 5, 30, 30], "reference": "reference.png"}
        for i in range(4)
    ]
    bears = [
        {"id": f"bear-{i}", "scene": "scene.png", "mask": "mask.png", "subject": str(tiny_lora_subject)}
        for i in range(2)
    ]
    # runs of 3 jobs of one group: [masked, no-scene, box-0] and [outside, box-1, box-2], each with a bad job
    # that is recorded alone while the other two are painted together; box-3; the subject's jobs
    jobs = write_jobs(job_files, [*GOOD, BAD[0], boxes[0], BAD[1], *boxes[1:], *bears])
    runs, calls = {}, {}
    for size in (1, 3):
        scenes_per_call.clear()
        out = tmp_path / f"size-{size}"
        assert cli.main(["batch", str(jobs), "--out-dir", str(out), "--batch-size", str(size), *FAST]) == 1
        assert capsys.readouterr().out.startswith("9 painted, 0 already done, 2 failed")
        runs[size] = {p.name: pixels(p).astype(int) for p in sorted(out.glob("*.png"))}
        assert [r["id"] for r in lines_of(out / "failures.jsonl")] == ["no-scene", "outside"]
        calls[size] = sorted(scenes_per_call)
    assert list(runs[1]) == list(runs[3]) and len(runs[1]) == 10
    assert all(np.abs(runs[1][k] - runs[3][k]).max() <= 1 for k in runs[1])
    assert not np.array_equal(runs[3]["box-0.png"], runs[3]["box-1.png"])
    assert calls[1] == [1] * 9
    # [masked, box-0], [box-1, box-2] and the subject's two jobs together; box-3 and the jobs with options of
    # their own (2, cropped) alone; the bad jobs never reach the sampler
    assert calls[3] == [1, 1, 1, 2, 2, 2]


def launch(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "subject_inpainting.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def many_jobs(folder: Path, n: int) -> Path:
    return write_jobs(
        folder, [{"scene": "scene.png", "box": [2 + i, 5, 30, 30], "reference": "reference.png"} for i in range(n)]
    )


@pytest.mark.slow
def test_a_killed_run_resumes_without_painting_anything_twice(job_files, tmp_path):
    jobs, out = many_jobs(job_files, 12), tmp_path / "out"
    argv = ["batch", str(jobs), "--out-dir", str(out), "--steps", "20", "--quiet"]  # the embedded model
    proc = launch(argv)
    end = time.monotonic() + 300
    while len(list(out.glob("*.png"))) < 2 and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert 2 <= len(done) < 12
    rerun = launch(argv)
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr.decode()[-2000:]
    assert stdout.decode().strip() == f"{12 - len(done)} painted, {len(done)} already done, 0 failed"
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in out.glob("*.png")) if n in done} == done
    assert len(list(out.glob("*.png"))) == 12 and not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_two_processes_paint_the_same_pictures_as_one(job_files, tmp_path):
    jobs = many_jobs(job_files, 5)
    one = launch(["batch", str(jobs), "--out-dir", str(tmp_path / "one"), "--steps", "4", "--quiet"])
    assert one.wait(timeout=600) == 0, one.stderr.read().decode()[-2000:]
    cmd = [*accelerate_launch(2), "batch", str(jobs), "--out-dir", str(tmp_path / "two"), "--steps", "4", "--quiet"]
    proc = run_launched(cmd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "5 painted, 0 already done, 0 failed"
    assert len(lines_of(tmp_path / "two" / "results.jsonl")) == 5
    for i in range(1, 6):
        assert np.array_equal(pixels(tmp_path / "one" / f"{i}.png"), pixels(tmp_path / "two" / f"{i}.png")), i


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text("aA-01é", min_size=1, max_size=4), st.integers(1, 3)), min_size=1, max_size=6))
def test_a_run_that_is_accepted_writes_every_picture_under_a_name_of_its_own(rows):
    from subject_inpainting.commands.batch import Job, check_picture_names
    from subject_inpainting.commands.options import output_paths
    from subject_inpainting.settings import PaintSettings

    ids = [i for i, _ in rows]
    if len(set(ids)) != len(ids):
        return  # ids are unique by an earlier check
    out = Path("/nonexistent/out")
    jobs = [Job(k, i, PaintSettings(num_images=n)) for k, (i, n) in enumerate(rows, start=1)]
    for job, (_, n) in zip(jobs, rows, strict=True):
        job.outputs = tuple(output_paths(str(out / f"{job.id}.png"), n))
    names = [unicodedata.normalize("NFC", p.name).casefold() for job in jobs for p in job.outputs]
    try:
        check_picture_names(jobs, out)
    except CommandError as e:
        assert len(set(names)) < len(names), e  # refused only for a real clash
        assert re.search(r"jobs \d+ \(id .*\) and \d+ \(id .*\) would", str(e))
    else:
        assert len(set(names)) == len(names)
