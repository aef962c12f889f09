"""``subject-inpaint batch``: paint every job of a JSON Lines or CSV file into one folder.

A job names a scene, a region (``mask`` or ``box``) and a subject (``reference`` and/or ``reference_box``, or a
fine-tuned ``subject``), optionally its ``id`` (default: its number in the file, from 1), its ``seed``
(default: ``--seed`` + its number) and any of the painting options, which override the command line's for that
job. Relative paths are relative to the jobs file. Pictures go to ``DIR/<id>.png`` (``<id>-0.png`` … for
several), every job's outcome to ``DIR/results.jsonl`` and ``DIR/failures.jsonl``. The model loads once per
process and the jobs of one subject run together; a rerun paints only what is missing, and ``accelerate
launch`` splits the jobs over processes (``subject_inpainting.batch`` runs them).
"""

from __future__ import annotations

import argparse
import csv
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings
from ..batch import RECORDS
from ..loaders.layout import check_model
from ..session import PaintRequest
from ..utils.files import (
    SUBJECT_INDEX,
    OutputError,
    check_name_lengths,
    check_output_folder,
    mark_folder,
    read_index,
)
from ..utils.parse import ParseError, int_option, parse_box, parse_seed
from . import inpaint, options
from .options import CommandError

# The fields of a job besides the painting options: (name, what it holds).
JOB_FIELDS = {
    "id": "the job's name: its pictures are DIR/<id>.png (default: its number in the file, from 1)",
    "scene": "the scene photo",
    "mask": "mask image, white = region to edit",
    "box": "the region as x0,y0,x1,y1 (a list or text)",
    "reference": "photo of the subject",
    "reference_box": "crop the reference to x0,y0,x1,y1 first",
    "subject": "a fine-tuned subject folder (its base must be the batch's model)",
    "seed": "the job's seed (default: --seed + the job's number)",
}
PATHS = ("scene", "mask", "reference", "subject")
MAX_ID = 200
MAX_BATCH_SIZE = 64


def register(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="paint every job of a JSON Lines or CSV file (resumable; accelerate launch splits it)",
        description="Paint every job of JOBS into --out-dir: one JSON object per line (or a CSV with the same "
        "columns) with scene, mask or box, reference and/or reference_box, or subject, and optionally id, seed "
        "and any painting option below by its name with underscores (steps, guidance, model_weight, preset, "
        "region, paste_back ...), which overrides the command line's for that job. Relative paths are relative "
        "to JOBS. A bad job is recorded in DIR/failures.jsonl and the others go on; a rerun paints only what "
        "is missing. Under `accelerate launch -m subject_inpainting.cli batch ...` each process paints its "
        "share. Exit code 0 when every job is painted, 1 when any failed.",
    )
    p.add_argument("jobs", metavar="JOBS", help="the jobs: a .jsonl file (one JSON object per line) or a .csv file")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="where the pictures and the job records go")
    options.add_model(p)
    options.add_original_config(p)
    subject = p.add_argument_group("fine-tuned subjects (modified guidance)")
    painting = inpaint.add_painting_options(p, subject)
    p.add_argument(
        "--seed",
        type=options.seed_option,
        default=0,
        help="a job without a seed of its own gets this + its number in the file (default 0)",
    )
    p.add_argument(
        "--batch-size",
        type=int_option(1, MAX_BATCH_SIZE),
        default=1,
        metavar="N",
        help="sample up to N jobs with the same subject and options in one UNet batch: the same pictures to float "
        "rounding, more per minute, more memory; a stochastic sampler (ddim "
        f"with eta > 0, dpmsolver++-sde, euler-a) paints one job at a time (1-{MAX_BATCH_SIZE}, default 1)",
    )
    options.add_device(p)
    options.add_dtype(p)
    options.add_quiet(p, "no progress bar, only the summary line")
    # a job names an option by its batch key (``steps``) or its Python name (``num_inference_steps``)
    job_options = {settings.key(name): name for name in painting} | {name: name for name in painting}
    p.set_defaults(command_check=check, command_run=run, job_options=job_options)


@dataclass
class Job:
    """One line of the jobs file, read and checked: what to paint (``request``), or why it cannot be painted
    (``error``)."""

    number: int
    id: str
    request: PaintRequest | None = None
    error: str | None = None
    outputs: tuple[Path, ...] = field(default=())

    @property
    def seed(self) -> int | None:
        return None if self.request is None else self.request.seed


def read_jobs(path: str, args: argparse.Namespace) -> list[Job]:
    """Every job of the file ``path`` (JSON Lines, or CSV by its ``.csv`` suffix), in order.

    A line that cannot be painted becomes a job with an ``error``; a file that cannot be read, or ids that
    are not unique or cannot name a file, are a ``CommandError`` (nothing is painted).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CommandError(f"JOBS {path}: not a UTF-8 text file") from None
    except OSError as e:
        raise CommandError(f"JOBS {path}: cannot be read ({e.strerror or e})") from None
    if file.suffix.lower() == ".csv":
        rows = _csv_rows(text, path)
    else:
        rows = [(n, line) for n, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1)]
    jobs = [_job(number, row, file.parent, args, args.job_options) for number, row in rows]
    seen: dict[str, int] = {}
    for job in jobs:
        if job.id in seen:
            raise CommandError(f"JOBS {path}: jobs {seen[job.id]} and {job.number} have the same id {job.id!r}")
        seen[job.id] = job.number
    return jobs


def _csv_rows(text: str, path: str) -> list[tuple[int, dict[str, str]]]:
    try:
        reader = csv.DictReader(text.splitlines())
        rows = [row for row in reader if any((v or "").strip() for v in row.values())]
    except csv.Error as e:
        raise CommandError(f"JOBS {path}: not a readable CSV file ({e})") from None
    if reader.fieldnames is None:
        return []
    if any(None in row for row in rows):
        n = next(i for i, row in enumerate(rows, start=1) if None in row)
        raise CommandError(f"JOBS {path}: row {n} has more cells than the header has columns")
    return [(n, {k: v.strip() for k, v in row.items() if v is not None and v.strip()}) for n, row in enumerate(rows, 1)]


def _job(number: int, row: str | dict, folder: Path, args: argparse.Namespace, overrides: dict) -> Job:
    job = Job(number, str(number))
    if isinstance(row, str):
        try:
            row = json.loads(row)
        except json.JSONDecodeError as e:
            job.error = f"not a JSON object ({e.msg} at column {e.colno})"
            return job
        except RecursionError:
            job.error = "not a JSON object this reader takes (nested too deeply)"
            return job
        except ValueError as e:  # e.g. an integer of more digits than Python converts
            job.error = f"not a JSON object this reader takes ({e})"
            return job
        if not isinstance(row, dict):
            job.error = f"expected a JSON object, got {type(row).__name__}"
            return job
    if "id" in row:
        job.id = _job_id(row["id"], number)
    try:
        job.request = _request(job, row, folder, args, overrides)
    except (ParseError, CommandError) as e:
        job.error = str(e)
    return job


def _job_id(value: Any, number: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CommandError(f"job {number}: id must be text or a whole number, got {value!r}")
    text = str(value).strip()
    bad = not text or len(text) > MAX_ID or text.startswith(".") or any(c in text for c in '/\\\0:*?"<>|')
    if bad or any(ord(c) < 32 for c in text):
        raise CommandError(
            f"job {number}: id {value!r} cannot name a file (1-{MAX_ID} characters, no path separators, control "
            'characters or :*?"<>|, not starting with a dot)'
        )
    return text


def _request(job: Job, row: dict, folder: Path, args: argparse.Namespace, overrides: dict) -> PaintRequest:
    """The job's ``PaintRequest``: its fields (paths relative to ``folder``), its seed (default ``--seed`` +
    its number) and the command line's settings with the job's options over them."""
    unknown = sorted(set(row) - set(JOB_FIELDS) - set(overrides))
    if unknown:
        raise CommandError(
            f"unknown field {unknown[0]!r} (expected {', '.join(JOB_FIELDS)} or a painting option: "
            f"{', '.join(sorted(overrides))})"
        )
    fields: dict[str, Any] = {}
    for name in PATHS:
        value = row.get(name)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise CommandError(f"{name}: expected a path, got {value!r}")
            fields[name] = str(folder / Path(value).expanduser())
    for name in ("box", "reference_box"):
        if row.get(name) is not None:
            fields[name] = parse_box(row[name], name)
    seed = parse_seed(row["seed"], "seed") if row.get("seed") is not None else args.seed + job.number
    if "scene" not in fields:
        raise CommandError("scene: missing (every job needs a scene)")
    if ("mask" in fields) == ("box" in fields):
        raise CommandError("give a mask or a box (one of them)")
    if "reference" not in fields and "subject" not in fields:
        raise CommandError("reference: missing (give a reference photo or a subject)")
    changes = {}
    for field_key, name in overrides.items():
        if field_key in row:
            if name in changes:
                raise CommandError(f"{field_key}: given twice (as {settings.key(name)} and {name}); give one")
            try:
                changes[name] = settings.parse_value(name, row[field_key])
            except settings.SettingsError as e:
                raise CommandError(e.named(field_key)) from None
    try:
        job_settings = args.settings.replace(**changes)
    except settings.SettingsError as e:
        raise CommandError(settings.with_keys(str(e))) from None
    return PaintRequest(**fields, seed=seed, settings=job_settings, id=job.id)


def batch_model(args: argparse.Namespace, jobs: list[Job]) -> str:
    """``--model``, else the one base every subject job names, else the embedded model."""
    if args.model:
        return args.model
    bases = set()
    for job in jobs:
        subject = job.request.subject if job.request is not None else None
        if subject and Path(subject).is_dir():
            bases.add((read_index(Path(subject) / SUBJECT_INDEX) or {}).get("base"))
    bases.discard(None)
    return bases.pop() if len(bases) == 1 else options.default_model_or_error()


def check(args: argparse.Namespace) -> None:
    """Read the jobs file and try the output folder before the model is loaded."""
    options.check_device_name(args.device)
    options.require_model(args.model)
    for flag, value in (("--ldm-config", args.ldm_config), ("--vision-config", args.vision_config)):
        options.require_file(value, flag)
    options.require_file(args.jobs, "JOBS")
    args.settings = options.settings_from_args(args)
    check_output_folder(args.out_dir, flag="--out-dir", kinds=("batch",), inputs=[("JOBS", args.jobs)], resume=True)
    args.job_list = read_jobs(args.jobs, args)
    out = Path(args.out_dir)
    requests = [(j, j.request) for j in args.job_list if j.request is not None]
    inputs = {
        Path(getattr(r, n)).resolve(): j for j, r in requests for n in ("scene", "mask", "reference") if getattr(r, n)
    }
    for job in args.job_list:
        count = (job.request.settings if job.request is not None else args.settings).num_images
        job.outputs = tuple(options.output_paths(str(out / f"{job.id}.png"), count))
        clash = next((p for p in job.outputs if p.resolve() in inputs), None)
        if clash is not None and job.error is None:
            job.error = f"its picture {clash} is an input of job {inputs[clash.resolve()].id}; refusing to overwrite it"
    check_picture_names(args.job_list, out)
    args.model = batch_model(args, args.job_list)
    options.require_model(args.model)
    check_model(args.model)


def check_picture_names(jobs: list[Job], out: Path) -> None:
    """Every file a run writes has a name of its own: no two jobs' pictures share a name (``a`` with two
    images writes ``a-0.png``, as does a job with id ``a-0``), not even up to case and Unicode
    normalisation (one file on macOS and Windows disks), and every name, with the temporary name it is
    written under first, fits the file system.

    Raises:
        CommandError: naming both jobs, or the job whose name is too long.
    """
    owners: dict[str, tuple[Job, str]] = {}
    for job in jobs:
        for path in job.outputs:
            key = unicodedata.normalize("NFC", path.name).casefold()
            other, name = owners.setdefault(key, (job, path.name))
            if other is not job:
                written = (
                    f"both write {name}"
                    if name == path.name
                    else f"write {name} and {path.name} (one file where case is ignored)"
                )
                raise CommandError(
                    f"JOBS: jobs {other.number} (id {other.id!r}) and {job.number} (id {job.id!r}) would {written}; "
                    "give them ids that name different pictures"
                )
        # the longest names a job writes: its pictures, and its record and claim beside the others
        for path in (*job.outputs, out / RECORDS / f"{job.id}.lock"):
            try:
                check_name_lengths(path, f"job {job.number}:")
            except OutputError as e:
                raise CommandError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from .. import batch

    state = batch.process_state()
    out = Path(args.out_dir)
    state.wait()  # every process has checked the folder before the main one marks it (run_jobs waits next)
    if state.is_main:
        out.mkdir(parents=True, exist_ok=True)
        mark_folder(out, "batch")
    jobs = [batch.Work(j.id, j.outputs, j, j.request.group() if j.request else f"\n{j.id}") for j in args.job_list]
    session = options.session(args)

    def paint_many(works: list[batch.Work]) -> list[list | Exception]:
        """Per job, its pictures or the error that failed it; the jobs (of one group) in one batch."""
        good = [w.payload.request for w in works if w.payload.error is None]
        painted = iter(session.paint(good, batch_size=max(len(good), 1)))
        results = []
        for work in works:
            result = next(painted) if work.payload.error is None else None
            results.append(CommandError(work.payload.error) if result is None else result.images or result.error)
        return results

    def paint(work: batch.Work) -> list:
        (pictures,) = paint_many([work])
        if isinstance(pictures, Exception):
            raise pictures
        return pictures

    tally = batch.run_jobs(
        jobs,
        paint,
        out,
        state=state,
        progress=not args.quiet,
        desc="painting jobs",
        paint_many=paint_many,
        batch_size=args.batch_size,
    )
    if state.is_main:
        _, failures = batch.write_summaries(out, jobs)
        print(tally.line(failures))
    return 1 if tally.failed else 0
