"""The guard every command runs before it writes, and the atomic files and folders behind it."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from subject_inpainting.utils import files
from subject_inpainting.utils.files import (
    InputPathError,
    OutputError,
    atomic_file,
    atomic_folder,
    check_input,
    check_output_files,
    check_output_folder,
    folder_kind,
    mark_folder,
    write_text_atomic,
)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "00.jpg").write_bytes(b"a photo")
    return folder


def test_folder_kinds_come_from_markers_and_the_formats_indexes(tmp_path, user_folder):
    assert folder_kind(user_folder) is None
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_format": "subject-inpainting"}))
    assert folder_kind(model) == "model"
    (model / "model_index.json").write_text(json.dumps({"_class_name": "PaintByExamplePipeline"}))
    assert folder_kind(model) is None  # a diffusers folder is the user's, not ours
    run = tmp_path / "run"
    write_text_atomic(run / "checkpoints" / "run.json", "{}")
    assert folder_kind(run) == "training"  # neither command's
    write_text_atomic(run / "checkpoints" / "run.json", json.dumps({"config": {"mode": "base"}}))
    assert folder_kind(run) == "base-training"
    write_text_atomic(run / "checkpoints" / "run.json", json.dumps({"config": {"mode": "subject"}}))
    assert folder_kind(run) == "subject-training"
    write_text_atomic(run / "checkpoints" / "run.json", json.dumps({"config": {}}))
    write_text_atomic(run / "subject_index.json", json.dumps({"_format": "subject-inpainting-subject"}))
    assert folder_kind(run) == "subject-training"  # a run of unknown mode is what it published
    mark_folder(tmp_path / "world", "toy-world")
    assert folder_kind(tmp_path / "world") == "toy-world"
    (tmp_path / "forged").mkdir()
    (tmp_path / "forged" / files.MARKER).write_text("not json")
    assert folder_kind(tmp_path / "forged") is None


@pytest.mark.parametrize(
    ("out", "inputs", "match"),
    [
        ("photos", [("--photos", "photos")], "is the input --photos"),
        (".", [("--photos", "photos")], "holds the input --photos"),
        ("photos/run", [("--photos", "photos")], "lies inside the input --photos"),
        (".", [("--boxes", "photos/00.jpg")], "holds the input --boxes"),
    ],
)
def test_an_output_never_is_holds_or_lies_inside_an_input(tmp_path, user_folder, monkeypatch, out, inputs, match):
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(OutputError, match=match):
            check_output_folder(out, kinds=("base-training",), inputs=inputs, overwrite=overwrite, resume=True)
    assert tree(tmp_path) == before


def test_a_symlinked_output_is_seen_through(tmp_path, user_folder):
    (tmp_path / "link").symlink_to(user_folder)
    with pytest.raises(OutputError, match="is the input"):
        check_output_folder(tmp_path / "link", kinds=("model",), inputs=[("SOURCE", user_folder)], overwrite=True)


def test_only_a_folder_of_the_commands_own_kind_is_replaced_or_resumed(tmp_path, user_folder):
    assert check_output_folder(tmp_path / "new", kinds=("model",)) == "new"
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty", kinds=("model",)) == "new"
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="not written by subject-inpainting"):
            check_output_folder(user_folder, kinds=("model",), overwrite=overwrite, resume=True)
    mark_folder(tmp_path / "world", "toy-world")
    with pytest.raises(OutputError, match="holds a toy world, not a model"):
        check_output_folder(tmp_path / "world", kinds=("model",), overwrite=True)
    with pytest.raises(OutputError, match=r"already holds a toy world \(add --overwrite"):
        check_output_folder(tmp_path / "world", kinds=("toy-world",))
    assert check_output_folder(tmp_path / "world", kinds=("toy-world",), resume=True) == "resume"
    assert check_output_folder(tmp_path / "world", kinds=("toy-world",), overwrite=True) == "replace"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_output_folder(tmp_path / "file", kinds=("model",))
    with pytest.raises(OutputError, match="is a file"):
        check_output_folder(tmp_path / "file" / "sub", kinds=("model",))


def test_a_base_run_and_a_subject_are_never_replaced_by_each_others_command(tmp_path):
    runs = {}
    for mode, index in (("base", "model_index.json"), ("subject", "subject_index.json")):
        runs[mode] = tmp_path / mode
        write_text_atomic(runs[mode] / "checkpoints" / "run.json", json.dumps({"config": {"mode": mode}}))
        write_text_atomic(runs[mode] / index, "{}")
    before = tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(OutputError, match=r"holds a subject fine-tuning run \(from `finetune`\), not a base-tr"):
            check_output_folder(runs["subject"], kinds=("base-training",), overwrite=overwrite, resume=True)
        with pytest.raises(OutputError, match=r"holds a base-training run \(from `train`\), not a subject fine-t"):
            check_output_folder(runs["base"], kinds=("subject-training",), overwrite=overwrite, resume=True)
    assert tree(tmp_path) == before
    assert check_output_folder(runs["subject"], kinds=("subject-training",), overwrite=True) == "replace"
    assert check_output_folder(runs["base"], kinds=("base-training",), resume=True) == "resume"


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a pseudo file system that refuses new files")
def test_an_unwritable_destination_is_found_by_trying(tmp_path):
    with pytest.raises(OutputError, match="cannot write into /sys"):
        check_output_folder("/sys/subject-inpainting-out", kinds=("model",))
    with pytest.raises(OutputError, match="cannot write into /sys"):
        check_output_files(["/sys/result.png"])
    with pytest.raises(files.WriteError) as e:
        write_text_atomic("/sys/result.txt", "x")
    assert "/sys/result.txt: cannot be written" in str(e.value) and ".tmp" not in str(e.value)


def test_output_files(tmp_path):
    (tmp_path / "scene.png").write_bytes(b"scene")
    (tmp_path / "taken.png").write_bytes(b"taken")
    with pytest.raises(OutputError, match="is the input --scene"):
        check_output_files([tmp_path / "scene.png"], inputs=[("--scene", tmp_path / "scene.png")], overwrite=True)
    with pytest.raises(OutputError, match="already exists"):
        check_output_files([tmp_path / "taken.png"])
    check_output_files([tmp_path / "taken.png"], overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_output_files([tmp_path])
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(OutputError, match="not a regular file"):
        check_output_files([tmp_path / "pipe.png"], overwrite=True)
    assert (tmp_path / "scene.png").read_bytes() == b"scene" and (tmp_path / "taken.png").read_bytes() == b"taken"


def test_inputs_must_be_regular_readable_files(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(InputPathError, match="is not a regular file"):
        check_input(tmp_path / "pipe.png", "scene")  # reading it would wait forever
    with pytest.raises(InputPathError, match="is a folder"):
        check_input(tmp_path, "scene")
    with pytest.raises(InputPathError, match="no such file"):
        check_input(tmp_path / "missing.png", "scene")
    with pytest.raises(InputPathError, match="is not a folder"):
        check_input(tmp_path / "pipe.png", "--photos", folder=True)
    (tmp_path / "ok.png").write_bytes(b"x")
    assert check_input(tmp_path / "ok.png", "scene") == tmp_path / "ok.png"


@pytest.mark.parametrize("interruption", [OSError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_replacement_keeps_the_old_folder_whole(tmp_path, interruption):
    mark_folder(tmp_path / "world", "toy-world")
    (tmp_path / "world" / "old.txt").write_text("old")
    before = tree(tmp_path)
    with pytest.raises(type(interruption)), atomic_folder(tmp_path / "world", overwrite=True) as tmp:
        (tmp / "new.txt").write_text("half")
        raise interruption
    assert tree(tmp_path) == before  # no temporary folder left beside it


@pytest.mark.parametrize("exchange", [True, False])
def test_a_replacement_swaps_the_new_folder_in(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    mark_folder(tmp_path / "world", "toy-world")
    (tmp_path / "world" / "old.txt").write_text("old")
    with atomic_folder(tmp_path / "world", overwrite=True) as tmp:
        mark_folder(tmp, "toy-world")
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in (tmp_path / "world").iterdir()) == [files.MARKER, "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["world"]


def test_a_user_folder_is_never_replaced_by_the_library_either(tmp_path, user_folder):
    with pytest.raises(OutputError, match="not written by subject-inpainting"), atomic_folder(user_folder, True):
        pass
    assert (user_folder / "00.jpg").read_bytes() == b"a photo"


def test_leftovers_of_a_dead_process_are_cleaned_and_a_half_swap_is_undone(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    host = socket.gethostname()
    dest = tmp_path / "model"
    stale = tmp_path / f".model.tmp-{host}-{dead}-abcd"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"half")
    mark_folder(tmp_path / f".model.old-{host}-{dead}-0", "model")  # the old folder, renamed aside
    live = tmp_path / f".model.tmp-{host}-{os.getpid()}-efgh"  # a running writer's: kept
    live.mkdir()
    files.remove_stale_temporaries(dest)
    assert not stale.exists() and live.exists()
    assert folder_kind(dest) == "model"  # the swap that died between its renames is put back


def test_atomic_file_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
