"""Many painting jobs, one process or many: each process paints its share, skips what is already painted,
writes every picture atomically and keeps a record of every job.

``subject-inpaint batch`` and ``subject-inpaint eval cocoee`` both run their jobs through ``run_jobs``. A job
is done when all of its pictures exist; pictures are written beside their destination and renamed into
place, so a picture either exists whole or not at all, and a rerun (or another process) never paints it
again. Job *k* of the list belongs to process ``k % count``; its picture depends only on the job and its
seed, so a run split over processes or resumed after a kill paints the same pictures as one uninterrupted
process.

Under ``accelerate launch`` (``WORLD_SIZE`` > 1) the processes find their place with ``accelerate``'s
``PartialState``; alone, a process is index 0 of 1 and needs no accelerate.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .utils.files import read_index, write_text_atomic

RECORDS = ".batch"  # the job records and the processes' counts, inside the output folder


@dataclass(frozen=True)
class ProcessState:
    """This process's place among the processes painting one job list."""

    index: int = 0
    count: int = 1
    wait: Callable[[], None] = field(default=lambda: None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.index == 0


def process_state() -> ProcessState:
    """This process's place under ``accelerate launch``; a single process otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        s = PartialState()
        return ProcessState(s.process_index, s.num_processes, s.wait_for_everyone)
    return ProcessState()


@dataclass(frozen=True)
class Work:
    """One job as the runner sees it.

    Attributes:
        id: unique among the jobs; names the job's record (a file name: no path separators).
        outputs: the pictures the job writes; the job is done when all exist.
        payload: whatever the paint function needs (a ``PaintRequest``, or what holds one); its ``seed``,
            when it has one, is recorded with the result.
        group: jobs of one group run one after the other in a process (e.g. one subject, loaded once), and
            only jobs of one group are painted together (``run_jobs``' ``paint_many``).
    """

    id: str
    outputs: tuple[Path, ...]
    payload: Any = field(default=None, compare=False, repr=False)
    group: str = ""

    @property
    def seed(self) -> int | None:
        """The payload's seed (None when it has none)."""
        return getattr(self.payload, "seed", None)

    def done(self) -> bool:
        return all(p.is_file() for p in self.outputs)


@dataclass
class Tally:
    """What one run did, over every process; ``elsewhere`` counts the jobs another run (another command on
    the same folder) was painting, which this one left to it."""

    painted: int = 0
    already_done: int = 0
    failed: int = 0
    elsewhere: int = 0

    def line(self, failures: Path | None = None) -> str:
        text = f"{self.painted} painted, {self.already_done} already done, {self.failed} failed"
        if self.elsewhere:
            text += f", {self.elsewhere} left to another run painting them"
        return text + (f": see {failures}" if self.failed and failures is not None else "")


class Claim:
    """A job claimed by this process: an exclusive lock on ``.batch/<id>.lock`` held while the job is
    painted, so that another run on the same folder leaves it alone. The system releases the lock when the
    process ends, however it ends, so a killed run's jobs are free again; the lock files stay (one small
    file per job beside its record), since deleting a lock file that another process has open would let two
    processes hold "the" lock at once."""

    def __init__(self, records: Path, job_id: str):
        self.path = records / f"{job_id}.lock"
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another live process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if _try_lock(fd):
            self.fd = fd
            return True
        os.close(fd)
        return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            return False
        if e.errno == errno.ENOLCK:  # a file system without locks: one run at a time is the user's to keep
            return True
        raise
    return True


def share(items: Sequence[Any], state: ProcessState) -> list[Any]:
    """Process ``state.index``'s share of ``items``: every ``count``-th, from its index."""
    return list(items[state.index :: state.count])


def run_jobs(
    jobs: Sequence[Work],
    paint: Callable[[Work], Sequence[Any]],
    folder: str | os.PathLike,
    *,
    state: ProcessState | None = None,
    failures: tuple[type[BaseException], ...] = (Exception,),
    progress: bool = True,
    desc: str = "painting",
    paint_many: Callable[[Sequence[Work]], Sequence[Sequence[Any] | Exception]] | None = None,
    batch_size: int = 1,
) -> Tally:
    """Paint this process's share of ``jobs`` that is not done yet, and record each job in ``folder``.

    Args:
        jobs: every job of the run, in the same order in every process (the share is taken here).
        paint: returns a job's pictures (PIL images), one per ``job.outputs``; each is saved atomically.
        folder: where the records go (``folder/.batch/``); the pictures go where ``job.outputs`` say.
        state: this process's place (default: ``process_state()``).
        failures: the errors that fail one job and let the run go on (recorded with a one-line reason);
            any other error ends the run. ``()`` ends the run at the first error.
        progress: show a bar (on the main process only) of pictures done over all jobs, with the ETA.
        desc: the bar's label.
        paint_many: with ``batch_size`` > 1, paints up to ``batch_size`` jobs of one group at once and returns,
            per job, its pictures or the error that failed it; if it raises, those jobs are painted one by one
            with ``paint`` (so a bad job fails alone).
        batch_size: at most this many jobs per ``paint_many`` call.

    Returns:
        The tally of every process, after all processes have finished (the same in every process).
    """
    from .imaging import save_image_atomic

    state = state or process_state()
    records = Path(folder) / RECORDS
    ids = [job.id for job in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError("job ids must be unique: each names the job's record")
    state.wait()
    if state.is_main:
        records.mkdir(parents=True, exist_ok=True)
        if state.count > 1:  # the processes' count files, which only this launch writes
            _remove([p for p in records.glob(".process-*.tmp") if p.is_file()])
    state.wait()
    mine = share(jobs, state)
    leftovers = find_leftovers(mine, records)
    tally = Tally()
    todo = []
    for job in mine:
        if job.done():
            tally.already_done += 1
            if job.id in leftovers:  # e.g. its record's, when its process was killed between two writes
                with _claimed(records, job) as claimed:
                    if claimed:
                        _remove(leftovers[job.id])
        else:
            todo.append(job)
    todo.sort(key=lambda job: job.group)  # stable: a group's jobs in their order, each group once
    counts = records / f"process-{state.index}.json"

    def totals() -> Tally:  # a lone process's own tally; the processes of one launch share count files
        return tally if state.count == 1 else _run_tally(records, state.count)

    if state.count > 1:
        _write_counts(counts, tally, state.count)
    state.wait()  # every process has counted what is done: the bar starts from all of it
    show = progress and state.is_main
    before = totals() if show else Tally()
    bar = tqdm(
        total=len(jobs), initial=before.already_done, desc=desc, unit="job", disable=not show, dynamic_ncols=True
    )
    with contextlib.ExitStack() as held:
        for candidates in _chunks(todo, batch_size if paint_many is not None else 1):
            chunk = []
            for job in candidates:
                claim = Claim(records, job.id)
                if not claim.acquire():
                    tally.elsewhere += 1
                elif job.done():  # another run painted it since this one looked
                    claim.release()
                    tally.already_done += 1
                else:
                    held.callback(claim.release)
                    _remove(leftovers.get(job.id, ()))
                    chunk.append((job, claim))
            _paint_chunk(chunk, paint, paint_many, records, tally, failures, save_image_atomic)
            if state.count > 1:
                _write_counts(counts, tally, state.count)
            if show:
                now = totals()
                bar.n = now.already_done + now.painted + now.failed + now.elsewhere
                bar.refresh()
    bar.close()
    state.wait()
    return totals()


@contextlib.contextmanager
def _claimed(records: Path, job: Work) -> Iterator[bool]:
    claim = Claim(records, job.id)
    try:
        yield claim.acquire()
    finally:
        claim.release()


def _paint_chunk(
    chunk: list[tuple[Work, Claim]],
    paint: Callable[[Work], Sequence[Any]],
    paint_many: Callable | None,
    records: Path,
    tally: Tally,
    failures: tuple[type[BaseException], ...],
    save: Callable,
) -> None:
    """Paint the claimed jobs of ``chunk`` (together when there are several), write their pictures and
    records, count them in ``tally`` and release each claim once its job is recorded."""
    if not chunk:
        return
    jobs = [job for job, _ in chunk]
    started = time.perf_counter()
    together = _paint_together(paint_many, jobs) if len(jobs) > 1 else None
    each = (time.perf_counter() - started) / len(jobs)
    for i, (job, claim) in enumerate(chunk):
        if together is None:
            started = time.perf_counter()
        try:
            pictures = together[i] if together is not None else list(paint(job))
            if isinstance(pictures, Exception):
                raise pictures
            assert len(pictures) == len(job.outputs), (len(pictures), job.outputs)
            for picture, path in zip(pictures, job.outputs, strict=True):
                save(picture, path)
        except failures as e:
            tally.failed += 1
            _write_record(records, job, {"id": job.id, "error": _one_line(e)})
        else:
            tally.painted += 1
            seconds = each if together is not None else time.perf_counter() - started
            record = {"id": job.id, "outputs": [str(p) for p in job.outputs], "seed": job.seed}
            _write_record(records, job, {**record, "seconds": round(seconds, 2)})
        claim.release()


def _paint_together(paint_many: Callable, chunk: list[Work]) -> list[list[Any] | Exception] | None:
    """``paint_many``'s pictures (or error) per job of ``chunk``, or None if the call itself raised: then each
    job is painted again on its own, so the one that fails is recorded alone."""
    try:
        return [p if isinstance(p, Exception) else list(p) for p in paint_many(chunk)]
    except Exception:
        return None


def _chunks(jobs: Sequence[Work], size: int) -> Iterator[list[Work]]:
    """Runs of consecutive jobs of one group, at most ``size`` long."""
    chunk: list[Work] = []
    for job in jobs:
        if chunk and (len(chunk) == size or job.group != chunk[0].group):
            yield chunk
            chunk = []
        chunk.append(job)
    if chunk:
        yield chunk


def find_leftovers(jobs: Sequence[Work], records: Path) -> dict[str, list[Path]]:
    """Per job id, the temporary files that writes of its pictures and record left when their process was
    killed outright (``atomic_file`` names them ``.<name>.<random>.tmp`` beside the destination): one listing
    of each folder. Delete a job's only once it is claimed (then no other process writes them)."""
    owner: dict[Path, dict[str, str]] = {}
    for job in jobs:
        for path in (*job.outputs, records / f"{job.id}.json"):
            owner.setdefault(path.parent, {})[path.name] = job.id
    found: dict[str, list[Path]] = {}
    for folder, names in owner.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
                job_id = names.get(name[1:-4].rsplit(".", 1)[0])
                if job_id is not None:
                    found.setdefault(job_id, []).append(Path(entry.path))
    return found


def _remove(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _write_counts(path: Path, tally: Tally, count: int) -> None:
    write_text_atomic(path, json.dumps({**asdict(tally), "count": count}) + "\n")


def _run_tally(records: Path, count: int) -> Tally:
    """The tally of every process of this run, from their count files (a file of an earlier run with more
    processes is left out)."""
    total = Tally()
    for index in range(count):
        counted = read_index(records / f"process-{index}.json") or {}
        if counted.get("count") == count:
            total.painted += counted.get("painted", 0)
            total.already_done += counted.get("already_done", 0)
            total.failed += counted.get("failed", 0)
    return total


def _write_record(records: Path, job: Work, record: dict[str, Any]) -> None:
    write_text_atomic(records / f"{job.id}.json", json.dumps(record) + "\n")


def read_records(folder: str | os.PathLike, jobs: Sequence[Work]) -> Iterator[tuple[Work, dict[str, Any] | None]]:
    """Every job with its record (None when it has none), in the jobs' order."""
    records = Path(folder) / RECORDS
    for job in jobs:
        record = read_index(records / f"{job.id}.json")
        yield job, record if isinstance(record, dict) else None


def write_summaries(folder: str | os.PathLike, jobs: Sequence[Work]) -> tuple[Path, Path]:
    """``folder/results.jsonl`` (every done job: id, outputs, seed, seconds) and ``folder/failures.jsonl``
    (every job whose last try failed and that is still not done: id, the reason), both atomically, in the
    jobs' order. A done job without a record (painted before its record was written) is listed with its
    outputs and seed."""
    results, failed = [], []
    for job, record in read_records(folder, jobs):
        if job.done():
            if record is None or "outputs" not in record:
                record = {"id": job.id, "outputs": [str(p) for p in job.outputs], "seed": job.seed, "seconds": None}
            results.append(record)
        elif record is not None and "error" in record:
            failed.append(record)
    folder = Path(folder)
    paths = folder / "results.jsonl", folder / "failures.jsonl"
    for path, rows in zip(paths, (results, failed), strict=True):
        write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
    return paths


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    text = text.splitlines()[0] if text else ""
    if isinstance(e, (ValueError, OSError)):  # the package's input errors: the message says it all
        return text or type(e).__name__
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
