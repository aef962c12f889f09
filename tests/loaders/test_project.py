"""The project's own format: exact round trip, atomic writes, clear errors."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from conftest import tiny_components
from subject_inpainting.loaders import CheckpointError, load_components, save_components
from subject_inpainting.loaders import project as project_module
from subject_inpainting.utils.files import OutputError, current_umask


def _same_modules(a, b):
    for name in ("unet", "vae", "reference_encoder"):
        sa, sb = a[name].state_dict(), b[name].state_dict()
        assert sa.keys() == sb.keys(), name
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)
        public = [{k: v for k, v in dict(m[name].config).items() if not k.startswith("_")} for m in (a, b)]
        assert public[0] == public[1], name
    assert a["scheduler"] == b["scheduler"]


@pytest.mark.parametrize("detail", [0, 2])
def test_round_trip_is_exact(tmp_path, detail):
    original = tiny_components(seed=3, detail_layers=detail, detail_grid=2 if detail else 1)
    save_components(original, tmp_path / "model")
    loaded = load_components(tmp_path / "model")
    _same_modules(original, loaded)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(original["reference_encoder"](x), loaded["reference_encoder"](x))


def test_original_checkpoint_round_trip(reference_dir, tmp_path):
    original = load_components(reference_dir / "pbe-tiny")
    save_components(original, tmp_path / "converted")
    _same_modules(original, load_components(tmp_path / "converted"))


def test_saved_folder_has_usual_permissions(tmp_path):
    save_components(tiny_components(), tmp_path / "model")
    mask = current_umask()
    assert stat.S_IMODE(os.stat(tmp_path / "model").st_mode) == 0o777 & ~mask
    weights = tmp_path / "model" / "unet" / project_module.WEIGHTS_NAME
    assert stat.S_IMODE(os.stat(weights).st_mode) == 0o666 & ~mask


def test_existing_folder_is_kept_unless_overwrite(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "precious.txt").write_text("user data")
    with pytest.raises(OutputError, match="already exists"):
        save_components(tiny_components(), dest)
    with pytest.raises(OutputError, match="not written by subject-inpainting"):
        save_components(tiny_components(), dest, overwrite=True)  # a user's folder is never replaced
    assert (dest / "precious.txt").read_text() == "user data"
    (dest / "precious.txt").unlink()
    save_components(tiny_components(seed=1), dest)
    before = (dest / "unet" / project_module.WEIGHTS_NAME).read_bytes()
    save_components(tiny_components(seed=2), dest, overwrite=True)  # a model of the project's may be
    assert (dest / "unet" / project_module.WEIGHTS_NAME).read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary or backup folder left


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(project_module, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_components(tiny_components(), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_model(tmp_path, monkeypatch):
    save_components(tiny_components(seed=1), tmp_path / "model")
    before = (tmp_path / "model" / "unet" / project_module.WEIGHTS_NAME).read_bytes()
    monkeypatch.setattr(project_module, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_components(tiny_components(seed=2), tmp_path / "model", overwrite=True)
    assert (tmp_path / "model" / "unet" / project_module.WEIGHTS_NAME).read_bytes() == before


def test_folder_missing_a_part(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(CheckpointError, match=r"missing its vae part"):
        load_components(broken)


def test_truncated_weights(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "unet" / project_module.WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as e:
        load_components(broken)
    assert str(weights) in str(e.value) and "\n" not in str(e.value)


def test_weights_of_another_model(tiny_model_dir, tmp_path):
    """A component's weights from a different architecture: named, not loaded."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    other = tmp_path / "other"
    save_components(tiny_components(detail_layers=1), other)
    shutil.copy(other / "reference_encoder" / project_module.WEIGHTS_NAME, broken / "reference_encoder")
    with pytest.raises(CheckpointError, match="unexpected"):
        load_components(broken)


def test_newer_format_is_refused(tiny_model_dir, tmp_path):
    import json
    import shutil

    newer = tmp_path / "newer"
    shutil.copytree(tiny_model_dir, newer)
    index = json.loads((newer / "model_index.json").read_text())
    index["_format_version"] = 99
    (newer / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="newer subject-inpainting"):
        load_components(newer)
