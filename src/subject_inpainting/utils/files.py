"""Writing files and folders without ever losing a user's data.

- ``atomic_file`` / ``write_text_atomic``: a file appears whole or not at all.
- ``atomic_folder``: a folder is built beside its destination and swapped in whole, so an interruption
  leaves the old folder or the new one.
- ``publish_into``: finished artefacts moved into a folder that holds other things (a training run's
  checkpoints), the marker file last.
- ``mark_folder`` / ``folder_kind``: which folders the project wrote; only those may ever be replaced.
- ``check_output_folder`` / ``check_output_files`` / ``check_input``: the guard every command runs before
  any work. An output never is, holds or lies inside one of the command's inputs; ``--overwrite`` replaces
  only a folder the project wrote; the destination is tried for writing, not guessed.

Nothing here imports torch, so a command can run these checks in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from .. import __version__

MARKER = ".subject-inpainting.json"
MODEL_INDEX = "model_index.json"
SUBJECT_INDEX = "subject_index.json"
RUN_INDEX = "checkpoints/run.json"
PROJECT_FORMAT = "subject-inpainting"

# What a folder the project wrote holds, as said in messages.
KINDS = {
    "model": "a model",
    "subject": "a fine-tuned subject",
    "base-training": "a base-training run (from `train`)",
    "subject-training": "a subject fine-tuning run (from `finetune`)",
    "training": "a training run of unknown kind",
    "evaluator": "an evaluator",
    "toy-world": "a toy world",
    "toy-training": "a toy training run",
    "embedded-weights": "embedded weights",
    "evaluation": "an evaluation",
    "benchmark": "a benchmark run",
    "fid-reference": "an FID reference set",
    "page-results": "the web page's results",
    "batch": "a batch of pictures",
}


class OutputError(ValueError):
    """An output that cannot be written without risking the user's data, or at all (one line)."""


class WriteError(OSError):
    """Writing failed (a full disk, a lost permission ...): the message names the destination, never the
    temporary file, and ``errno`` is the system's."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(f"{path}: cannot be written ({_reason(error)})")
        self.errno = error.errno


def current_umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; when the block ends without error, the temporary file
    replaces ``path`` (with the user's usual permissions), else it is deleted. A crash or a full disk leaves
    the old file or the new one, never half of one. Errors name ``path``, not the temporary file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteError(path, e) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes the file private
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically (``atomic_file``)."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


# ---------------------------------------------------------------------------------------------------
# Atomic folders
# ---------------------------------------------------------------------------------------------------
def _temp_prefix(dest: Path, what: str) -> str:
    return f".{dest.name}.{what}-"


def _owner_tag() -> str:
    # Host and process id in a temporary folder's name: a later run on this host can tell a dead run's
    # leftovers from a live run's work in progress.
    return f"{socket.gethostname()}-{os.getpid()}-"


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(dest: Path) -> None:
    """Delete what interrupted writes of ``dest`` by dead processes of this host left beside it."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return
    host = socket.gethostname()
    for what in ("tmp", "old"):
        prefix = _temp_prefix(dest, what)
        for entry in dest.parent.glob(f"{prefix}*"):
            owner = entry.name[len(prefix) :].rsplit("-", 2)
            if len(owner) == 3 and owner[0] == host and owner[1].isdigit() and not _is_alive(int(owner[1])):
                if what == "old" and not dest.exists():
                    os.replace(entry, dest)  # a swap interrupted between its two renames: put the old one back
                else:
                    shutil.rmtree(entry, ignore_errors=True)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def swap_in(staged: Path, dest: Path) -> None:
    """Make the folder ``staged`` become ``dest``, replacing what ``dest`` held. Where the system can swap
    two folders in one step it does; otherwise the old folder is renamed aside first, and
    ``remove_stale_temporaries`` restores it if the process dies between the two renames."""
    staged, dest = Path(staged), Path(dest)
    _apply_umask(staged)
    if dest.exists() and _exchange(staged, dest):
        shutil.rmtree(staged, ignore_errors=True)  # now the old folder
        return
    backup = None
    if dest.exists():
        backup = dest.with_name(_temp_prefix(dest, "old") + _owner_tag() + "0")
        os.replace(dest, backup)
    os.replace(staged, dest)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(destination: str | os.PathLike, overwrite: bool = False, guard: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``destination`` that replaces it when the block ends without error
    (deleted otherwise, Ctrl-C included).

    Args:
        destination: the folder to write; it must not exist or be empty unless ``overwrite``.
        overwrite: replace an existing folder.
        guard: with ``overwrite``, replace only a folder the project wrote (``folder_kind``); False for
            folders inside the project's own (a training run's checkpoints).

    Raises:
        OutputError: the destination exists and may not be replaced.
        WriteError: the destination cannot be written.
    """
    dest = Path(destination)
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest}: exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        if not overwrite:
            raise OutputError(f"{dest}: already exists (pass overwrite=True / --overwrite to replace it)")
        if guard and folder_kind(dest) is None:
            raise OutputError(f"{dest}: exists, is not empty and {NOT_OURS}")
    remove_stale_temporaries(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest, "tmp") + _owner_tag(), dir=dest.parent))
    except OSError as e:
        raise WriteError(dest, e) from None
    try:
        yield tmp
        swap_in(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _apply_umask(folder: Path) -> None:
    # mkdtemp/mkstemp create private (0700/0600) entries; a saved folder gets the user's usual permissions.
    umask = current_umask()
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def publish_into(staged: Path, destination: Path, marker: str) -> Path:
    """Move a finished model from the folder ``staged`` into ``destination``, which may hold other things
    (a training run's checkpoints, previews and logs). ``marker`` — the file that makes a folder a model —
    is removed first and moved last, so an interruption leaves no half-updated model that looks whole."""
    staged, destination = Path(staged), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    (destination / marker).unlink(missing_ok=True)
    for entry in sorted(staged.iterdir()):
        if entry.name == marker:
            continue
        target = destination / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    os.replace(staged / marker, destination / marker)
    shutil.rmtree(staged, ignore_errors=True)
    return destination


def staged_publish(out: Path, marker: str, write) -> None:
    """Write the final artefacts with ``write(folder)`` into a temporary folder, then move them into ``out``
    (``publish_into``: the marker file last)."""
    staged = Path(tempfile.mkdtemp(prefix=".publish-", dir=out))
    try:
        write(staged)
        publish_into(staged, out, marker)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# Which folders the project wrote
# ---------------------------------------------------------------------------------------------------
NOT_OURS = (
    "was not written by subject-inpainting (no model, subject or run index, no .subject-inpainting.json); "
    "refusing to write into it: choose another folder, or empty it yourself"
)


def read_index(path: str | os.PathLike):
    """The JSON in ``path``, or None when it is absent or not JSON (no error: callers decide)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def mark_folder(folder: str | os.PathLike, kind: str) -> Path:
    """Write the marker that says the project wrote ``folder`` and what it holds (a key of ``KINDS``)."""
    assert kind in KINDS, kind
    return write_text_atomic(
        Path(folder) / MARKER, json.dumps({"kind": kind, "written_by": f"subject-inpainting {__version__}"}) + "\n"
    )


def folder_kind(folder: str | os.PathLike) -> str | None:
    """What the project wrote in ``folder`` (a key of ``KINDS``), from its marker or the index file of one
    of its formats; None for a folder the project did not write."""
    folder = Path(folder)
    marker = read_index(folder / MARKER)
    if isinstance(marker, dict) and marker.get("kind") in KINDS:
        return marker["kind"]
    run = read_index(folder / RUN_INDEX)
    if isinstance(run, dict):
        return _training_kind(run, folder)
    subject = read_index(folder / SUBJECT_INDEX)
    if isinstance(subject, dict) and str(subject.get("_format", "")).startswith(PROJECT_FORMAT):
        return "subject"
    model = read_index(folder / MODEL_INDEX)
    if isinstance(model, dict) and model.get("_format") == PROJECT_FORMAT:
        return "model"
    config = read_index(folder / "config.json")
    if isinstance(config, dict) and config.get("_class_name") == "IdentityEncoder":
        return "evaluator"
    return None


def _training_kind(run: dict, folder: Path) -> str:
    """A training run is base training (``train``: its product is a model) or subject fine-tuning
    (``finetune``: a subject); the two are never written into or replaced by each other's command."""
    config = run.get("config")
    mode = config.get("mode") if isinstance(config, dict) else None
    if mode in ("base", "subject"):
        return f"{mode}-training"
    if (folder / SUBJECT_INDEX).is_file():
        return "subject-training"
    if (folder / MODEL_INDEX).is_file():
        return "base-training"
    return "training"  # neither command's: both refuse it


# ---------------------------------------------------------------------------------------------------
# The guard
# ---------------------------------------------------------------------------------------------------
def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


class InputPathError(ValueError):
    """An input path that cannot be read (one line)."""


def check_input(path: str | os.PathLike, what: str, folder: bool = False) -> Path:
    """An input that exists and can be read: a regular file (never a pipe or device, which could block a
    read forever), or with ``folder`` a folder.

    Raises:
        InputPathError: one line naming ``what`` and the path.
    """
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputPathError(f"{what} {path}: no such {'folder' if folder else 'file'}") from None
    except OSError as e:
        raise InputPathError(f"{what} {path}: cannot be read ({_reason(e)})") from None
    if folder:
        if not stat.S_ISDIR(mode):
            raise InputPathError(f"{what} {path}: is not a folder")
        if not os.access(p, os.R_OK | os.X_OK):
            raise InputPathError(f"{what} {path}: cannot be read (permission denied)")
        return p
    if stat.S_ISDIR(mode):
        raise InputPathError(f"{what} {path}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise InputPathError(f"{what} {path}: is not a regular file (a pipe, socket or device); give a file")
    if not os.access(p, os.R_OK):
        raise InputPathError(f"{what} {path}: cannot be read (permission denied)")
    return p


def _check_conflicts(out: Path, flag: str, inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    target = _resolved(out)
    for name, value in inputs:
        if value is None or not Path(value).expanduser().exists():
            continue  # a hub id, or an input that another check reports
        source = _resolved(value)
        if source == target:
            raise OutputError(f"{flag} {out}: is the input {name} {value}; write the output elsewhere")
        if _within(source, target):
            raise OutputError(f"{flag} {out}: holds the input {name} {value}; write the output elsewhere")
        if _within(target, source):
            raise OutputError(f"{flag} {out}: lies inside the input {name} {value}; write the output elsewhere")


def _probe(folder: Path, flag: str, out: Path) -> None:
    """Create and delete a file in ``folder``: permissions, read-only mounts and pseudo file systems all
    answer this, where ``os.access`` can be wrong (for root, or under /sys)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".subject-inpainting-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise OutputError(f"{flag} {out}: cannot write into {folder} ({_reason(e)})") from None


# What ``atomic_file`` adds to a name for its temporary file: ``.<name>.XXXXXXXX.tmp``.
TEMP_FILE_EXTRA = len("..XXXXXXXX.tmp")


def name_limit(folder: str | os.PathLike) -> int:
    """The longest file name, in bytes, that the file system holding ``folder`` (or its nearest existing
    ancestor) accepts: ``NAME_MAX``, 255 on the usual Linux, macOS and Windows file systems."""
    try:
        return int(os.pathconf(nearest_existing(Path(folder)), "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the system does not say
        return 255


def check_name_lengths(path: str | os.PathLike, flag: str, extra: int = TEMP_FILE_EXTRA) -> None:
    """Refuse an output whose name, or the temporary name it is first written under (``extra`` bytes
    longer), or a folder on its way, is longer than the file system allows: found now rather than as
    "File name too long" after the work. Run it before anything else looks at ``path`` (the system refuses
    even to say whether such a path exists).

    Raises:
        OutputError: one line naming ``flag``, the name's length in bytes and the limit.
    """
    absolute = Path(os.path.abspath(Path(path).expanduser()))
    folder = Path(absolute.anchor)
    limit = name_limit(folder)
    *folders, name = absolute.parts[1:] or ("",)
    for part in folders:
        size = len(os.fsencode(part))
        if size > limit:
            raise OutputError(
                f"{flag} {path}: the folder name {part[:16]}… is {size} bytes long; this disk takes names of at "
                f"most {limit} bytes"
            )
        folder = folder / part
        if folder.is_dir():
            limit = name_limit(folder)  # another file system may be mounted here
    size = len(os.fsencode(name))
    if size + extra > limit:
        raise OutputError(
            f"{flag} {path}: the file name is {size} bytes long; this disk takes at most {limit - extra} bytes "
            f"here ({limit} less {extra} for the temporary name it is written under first)"
        )


def nearest_existing(path: Path) -> Path:
    """``path`` (absolute) or its nearest existing ancestor: where a new file or folder there would go."""
    path = Path(os.path.abspath(path.expanduser()))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(
    out: str | os.PathLike,
    *,
    kinds: Collection[str],
    flag: str = "--out",
    inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
    overwrite: bool = False,
    resume: bool = False,
) -> str:
    """Decide, before any work, what writing the folder ``out`` will do; refuse what could lose data.

    Args:
        out: the output folder.
        kinds: what the command writes (keys of ``KINDS``); an existing folder of another kind, or one the
            project did not write, is never written into or replaced.
        flag: the option naming ``out``, for messages.
        inputs: ``(option, path)`` of every input of the command; hub ids and absent paths are skipped.
        overwrite: the user asked to replace an existing folder.
        resume: the command continues an existing folder of its kind (without ``overwrite``).

    Returns:
        ``"new"`` (absent or empty), ``"resume"`` or ``"replace"`` (build the new folder beside, then swap).

    Raises:
        OutputError: ``out`` is, holds or lies inside an input; exists and is not a folder; holds something
            else; exists and may not be replaced; or cannot be written.
    """
    path = Path(out).expanduser()
    # the longest name written beside ``out``: atomic_folder's temporary folder
    check_name_lengths(path, flag, extra=len(_temp_prefix(Path(""), "tmp") + _owner_tag() + "XXXXXXXX"))
    _check_conflicts(path, flag, inputs)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {out}: exists and is not a folder")
    if not path.exists() or not any(path.iterdir()):
        nearest = nearest_existing(path)
        if not nearest.is_dir():
            raise OutputError(f"{flag} {out}: cannot be created, {nearest} is a file")
        _probe(nearest, flag, path)
        return "new"
    kind = folder_kind(path)
    if kind is None:
        raise OutputError(f"{flag} {out}: exists, is not empty and {NOT_OURS}")
    if kind not in kinds:
        wanted = " or ".join(KINDS[k] for k in kinds)
        raise OutputError(f"{flag} {out}: holds {KINDS[kind]}, not {wanted}; choose another folder")
    if overwrite:
        _probe(path.parent, flag, path)  # the new folder is built beside the old one
        return "replace"
    if resume:
        _probe(path, flag, path)
        return "resume"
    raise OutputError(f"{flag} {out}: already holds {KINDS[kind]} (add --overwrite to replace it)")


def check_output_files(
    paths: Iterable[str | os.PathLike],
    *,
    flag: str = "--out",
    inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
    overwrite: bool = False,
) -> None:
    """Refuse output files that are an input (always), a folder, or an existing file (without
    ``overwrite``), and try writing into their folder.

    Raises:
        OutputError: one line naming the output and the conflict.
    """
    inputs = list(inputs)
    for raw in paths:
        path = Path(raw).expanduser()
        check_name_lengths(path, flag)
        target = _resolved(path)
        for name, value in inputs:
            if value is not None and Path(value).expanduser().exists() and _resolved(value) == target:
                raise OutputError(f"{flag} {raw}: is the input {name} {value}; refusing to overwrite it")
        if path.is_dir():
            raise OutputError(f"{flag} {raw}: is a folder; give a file name such as result.png")
        if path.exists() and not overwrite:
            raise OutputError(f"{flag} {raw}: already exists (add --overwrite to replace it)")
        if path.exists() and not path.is_file():
            raise OutputError(f"{flag} {raw}: is not a regular file; refusing to replace it")
        nearest = nearest_existing(path.parent)
        if not nearest.is_dir():
            raise OutputError(f"{flag} {raw}: cannot be created, {nearest} is a file")
        _probe(nearest, flag, path)


@contextlib.contextmanager
def replacing(work: str | os.PathLike, out: str | os.PathLike, is_main: bool = True, barrier=None) -> Iterator[None]:
    """The block writes the folder ``work`` (``replacement_folder(out)``) for a run that replaces ``out``:
    when the block ends without error, ``work`` is swapped in for ``out``; on any error or interruption
    ``work`` is deleted and ``out`` stays as it was. Nothing is done when ``work`` is ``out``. With several
    processes, ``barrier`` makes every process finish first and only the main one (``is_main``) swaps."""
    if Path(work) == Path(out):
        yield
        return
    try:
        yield
    except BaseException:
        if is_main:
            shutil.rmtree(work, ignore_errors=True)
        raise
    if barrier is not None:
        barrier()
    if is_main:
        swap_in(Path(work), Path(out))


def replacement_folder(out: str | os.PathLike) -> Path:
    """Where a long run that replaces ``out`` builds its new folder (beside ``out``, the same name for every
    process of the run), to be swapped in by ``swap_in`` when it finishes."""
    out = Path(out)
    return out.with_name(f".{out.name}.replacing")
