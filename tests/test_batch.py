"""The job runner: shares, resuming, records and leftovers, with a paint function that needs no model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from subject_inpainting import batch


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8))


class Painter:
    """Paints a job's pictures from its seed; fails the jobs named in ``bad``; counts what it painted."""

    def __init__(self, bad: tuple[str, ...] = ()):
        self.bad = bad
        self.painted: list[str] = []

    def __call__(self, work: batch.Work):
        if work.id in self.bad:
            raise ValueError(f"scene {work.id}.png: no such file\nsecond line")
        self.painted.append(work.id)
        return [picture(work.seed + i) for i in range(len(work.outputs))]


class BatchPainter(Painter):
    """A ``Painter`` that also paints several jobs at once (``many``), recording each call's ids. A bad job
    gets its error in the returned list, or, with ``raise_all``, fails the whole call (as an error the
    batched pipeline call cannot pin on one job)."""

    def __init__(self, bad: tuple[str, ...] = (), raise_all: bool = False):
        super().__init__(bad)
        self.raise_all = raise_all
        self.calls: list[list[str]] = []

    def many(self, works: list[batch.Work]):
        self.calls.append([w.id for w in works])
        if self.raise_all and any(w.id in self.bad for w in works):
            raise RuntimeError("one of the jobs is bad")
        return [ValueError(f"job {w.id} is bad") if w.id in self.bad else self(w) for w in works]


def jobs_in(out: Path, n: int = 5, pictures: int = 1) -> list[batch.Work]:
    def outputs(i):
        return (out / f"{i}.png",) if pictures == 1 else tuple(out / f"{i}-{k}.png" for k in range(pictures))

    return [batch.Work(str(i), outputs(i), SimpleNamespace(seed=100 + i), group="ab"[i % 2]) for i in range(1, n + 1)]


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_a_run_paints_records_and_goes_on_past_a_bad_job(tmp_path):
    jobs = jobs_in(tmp_path)
    paint = Painter(bad=("3",))
    tally = batch.run_jobs(jobs, paint, tmp_path, progress=False)
    assert (tally.painted, tally.already_done, tally.failed) == (4, 0, 1)
    assert (
        tally.line(tmp_path / "failures.jsonl") == f"4 painted, 0 already done, 1 failed: see {tmp_path}/failures.jsonl"
    )
    assert paint.painted == ["2", "4", "1", "5"]  # one group after the other, each in its order
    assert sorted(pixels(tmp_path)) == ["1.png", "2.png", "4.png", "5.png"]
    assert (np.asarray(Image.open(tmp_path / "2.png")) == np.asarray(picture(102))).all()
    results, failures = batch.write_summaries(tmp_path, jobs)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "4", "5"] and [r["seed"] for r in rows] == [101, 102, 104, 105]
    assert rows[0]["outputs"] == [str(tmp_path / "1.png")] and rows[0]["seconds"] >= 0
    assert [json.loads(line) for line in failures.read_text().splitlines()] == [
        {"id": "3", "error": "scene 3.png: no such file"}  # the first line of the reason
    ]


def test_a_rerun_paints_only_what_is_missing_and_retries_failures(tmp_path):
    jobs = jobs_in(tmp_path)
    batch.run_jobs(jobs, Painter(bad=("3",)), tmp_path, progress=False)
    written = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.png")}
    again = Painter()
    tally = batch.run_jobs(jobs, again, tmp_path, progress=False)
    assert again.painted == ["3"] and (tally.painted, tally.already_done, tally.failed) == (1, 4, 0)
    assert {
        n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in tmp_path.glob("*.png")) if n in written
    } == written
    _, failures = batch.write_summaries(tmp_path, jobs)
    assert failures.read_text() == ""  # the retried job is done: no stale failure


def test_a_job_with_a_missing_picture_is_painted_again_whole(tmp_path):
    jobs = jobs_in(tmp_path, n=2, pictures=2)
    batch.run_jobs(jobs, Painter(), tmp_path, progress=False)
    before = pixels(tmp_path)
    (tmp_path / "2-1.png").unlink()  # as if killed between its two pictures
    again = Painter()
    assert batch.run_jobs(jobs, again, tmp_path, progress=False).painted == 1 and again.painted == ["2"]
    after = pixels(tmp_path)
    assert list(after) == list(before) and all((after[k] == before[k]).all() for k in before)


def test_processes_paint_their_shares_and_together_the_pictures_of_one(tmp_path):
    jobs_one, jobs_two = jobs_in(tmp_path / "one", n=7), jobs_in(tmp_path / "two", n=7)
    batch.run_jobs(jobs_one, Painter(), tmp_path / "one", progress=False)
    painters = [Painter(), Painter()]
    for index in (1, 0):  # the main process last: it sums every process's count
        state = batch.ProcessState(index, 2)
        tally = batch.run_jobs(jobs_two, painters[index], tmp_path / "two", state=state, progress=False)
    assert sorted(painters[0].painted, key=int) == ["1", "3", "5", "7"] and painters[1].painted == ["2", "4", "6"]
    assert tally.painted == 7
    one, two = pixels(tmp_path / "one"), pixels(tmp_path / "two")
    assert list(one) == list(two) and all((one[k] == two[k]).all() for k in one)


def test_an_interrupted_run_leaves_no_partial_file_and_resumes(tmp_path):
    jobs = jobs_in(tmp_path)

    class Interrupted(Painter):
        def __call__(self, work):
            if len(self.painted) == 2:
                raise KeyboardInterrupt
            return super().__call__(work)

    with pytest.raises(KeyboardInterrupt):
        batch.run_jobs(jobs, Interrupted(), tmp_path, progress=False)
    assert sorted(pixels(tmp_path)) == ["2.png", "4.png"]
    (tmp_path / ".1.png.x1y2z3.tmp").write_bytes(b"half a picture")  # what a killed writer leaves
    (tmp_path / ".batch" / ".1.json.abc.tmp").write_text("{")
    (tmp_path / ".mine.png.abc.tmp").write_text("not the batch's")
    again = Painter()
    tally = batch.run_jobs(jobs, again, tmp_path, progress=False)
    assert sorted(again.painted) == ["1", "3", "5"] and (tally.painted, tally.already_done) == (3, 2)
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == [".mine.png.abc.tmp"]
    assert not list((tmp_path / ".batch").glob(".*.tmp"))


def test_any_error_ends_the_run_when_asked(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        batch.run_jobs(jobs_in(tmp_path), Painter(bad=("1",)), tmp_path, failures=(), progress=False)


@pytest.mark.parametrize("raise_all", [False, True], ids=["error-per-job", "the-call-raises"])
def test_paint_many_takes_runs_of_one_group_and_records_a_bad_job_alone(tmp_path, raise_all):
    jobs = jobs_in(tmp_path, n=9)  # groups: odd ids "b", even ids "a"
    painter = BatchPainter(bad=("5",), raise_all=raise_all)
    tally = batch.run_jobs(jobs, painter, tmp_path, progress=False, paint_many=painter.many, batch_size=3)
    assert painter.calls == [["2", "4", "6"], ["1", "3", "5"], ["7", "9"]]  # a run of one ("8") is painted alone
    assert (tally.painted, tally.failed) == (8, 1)
    # the call that raised is painted again job by job: 1 and 3 alone, and 5 fails alone
    assert painter.painted == ["2", "4", "6", "8", "1", "3", "7", "9"]
    one = tmp_path / "one"
    batch.run_jobs(jobs_in(one, n=9), Painter(bad=("5",)), one, progress=False)
    alone, together = pixels(one), pixels(tmp_path)
    assert list(alone) == list(together) and all((alone[k] == together[k]).all() for k in alone)
    _, failures = batch.write_summaries(tmp_path, jobs)
    reason = "scene 5.png: no such file" if raise_all else "job 5 is bad"  # the single paint's, or the batch's
    assert [json.loads(line) for line in failures.read_text().splitlines()] == [{"id": "5", "error": reason}]
    records = [json.loads((tmp_path / ".batch" / f"{i}.json").read_text()) for i in ("2", "4", "6")]
    assert len({r["seconds"] for r in records}) == 1  # a batch's time is shared by its jobs


def test_a_second_run_on_the_folder_leaves_the_jobs_the_first_has_claimed(tmp_path):
    jobs = jobs_in(tmp_path, n=4)
    inner = Painter()

    class First(Painter):
        def __call__(self, work):
            if not self.painted:  # while this job is claimed, another run starts on the same folder
                self.inner_tally = batch.run_jobs(jobs, inner, tmp_path, progress=False)
            return super().__call__(work)

    first = First()
    tally = batch.run_jobs(jobs, first, tmp_path, progress=False)
    assert len(first.painted) == 1 and sorted(inner.painted + first.painted) == ["1", "2", "3", "4"]
    assert first.inner_tally == batch.Tally(painted=3, elsewhere=1)
    assert first.inner_tally.line().endswith("1 left to another run painting them")
    assert tally == batch.Tally(painted=1, already_done=3)  # the others were done when their turn came


RUN_IN_A_PROCESS = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_batch import jobs_in, picture
from subject_inpainting import batch

out, log = Path(sys.argv[1]), Path(sys.argv[2])
def paint(work):
    with open(log, "a") as f:
        f.write(work.id + "\\n")
    time.sleep(0.3)  # long enough for the two runs to overlap
    return [picture(work.seed)]
print(batch.run_jobs(jobs_in(out, n=12), paint, out, progress=False).line())
"""


def test_two_processes_on_one_folder_paint_each_job_once(tmp_path):
    log = tmp_path / "painted.log"
    argv = [sys.executable, "-c", RUN_IN_A_PROCESS, str(tmp_path / "out"), str(log), str(Path(__file__).parent)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    lines = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), lines
    painted = log.read_text().split()
    assert sorted(painted, key=int) == [str(i) for i in range(1, 13)]  # each job once, by one of them
    counts = [int(line.split(" painted")[0]) for line in lines]
    assert sum(counts) == 12, lines
    assert len(list((tmp_path / "out").glob("*.png"))) == 12
