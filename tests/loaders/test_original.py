"""Original checkpoints: the full-size key manifests, the tiny checkpoint, and bad files."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import pytest
import torch

from subject_inpainting.loaders import CheckpointError, load_components
from subject_inpainting.loaders.checkpoint_io import read_state_dict
from subject_inpainting.loaders.original import (
    SCHEDULE_BUFFERS,
    load_original,
    map_original_state_dict,
    original_configs,
)
from subject_inpainting.models.build import build_component, state_dict_problems

DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}


def fake_state_dict(manifest_path, extra=None):
    """Zero-cost (meta) tensors with the manifest's shapes and dtypes."""
    manifest = json.loads(manifest_path.read_text())
    sd = {k: torch.empty(shape, dtype=DTYPES[dtype], device="meta") for k, (shape, dtype) in manifest.items()}
    sd.update(extra or {})
    return sd


@pytest.mark.parametrize(("manifest", "detail"), [("pbe-full-keys.json", False), ("subject-full-keys.json", True)])
@pytest.mark.parametrize("old_transformers_ids", [False, True])
def test_full_size_manifest_is_consumed_exactly(reference_dir, manifest, detail, old_transformers_ids):
    """Every key of a real checkpoint goes somewhere or is deliberately ignored; every parameter of every
    component is filled with the right shape (released layout, no config given)."""
    extra = {}
    if old_transformers_ids:  # older transformers wrote these into the checkpoint
        extra["cond_stage_model.transformer.vision_model.embeddings.position_ids"] = torch.empty(
            1, 257, dtype=torch.int64, device="meta"
        )
    sd = fake_state_dict(reference_dir / manifest, extra)
    configs = original_configs(sd)
    assert configs["reference_encoder"]["detail_mapper_layers"] == (5 if detail else 0)
    assert configs["reference_encoder"]["class_token"] == ("hidden" if detail else "pooled")
    assert configs["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    parts, ignored, unused = map_original_state_dict(sd, configs)
    assert unused == []
    assert set(ignored) == SCHEDULE_BUFFERS - {"logvar"} | set(extra)
    consumed = sum(len(p) for p in parts.values())
    assert consumed + len(ignored) == len(sd)
    for name in ("unet", "vae", "reference_encoder"):
        module = build_component(name, configs[name], empty=True)
        state = parts[name]
        if name == "reference_encoder":
            state = module.to_installed_keys(state)
        assert state_dict_problems(module, state) == [], name
    # sizes really are the released ones
    assert parts["reference_encoder"]["class_proj.weight"].shape == (768, 1024)
    assert parts["unet"]["conv_in.weight"].shape == (320, 9, 3, 3)


def test_tiny_checkpoint_fills_every_parameter(reference_dir):
    c = load_components(reference_dir / "pbe-tiny")
    for name in ("unet", "vae", "reference_encoder"):
        tensors = list(c[name].parameters()) + list(c[name].buffers())
        assert not any(t.is_meta for t in tensors), name
    assert c["scheduler"]["beta_schedule"] == "scaled_linear"
    assert c["vae"].config.scaling_factor == pytest.approx(0.18215)


def test_nested_tower_keys_load_the_same(reference_dir, tmp_path):
    """Checkpoints written with transformers < 5 nest the tower under ``vision_model.``."""
    folder = reference_dir / "pbe-tiny"
    sd = torch.load(folder / "model.ckpt", weights_only=True)["state_dict"]
    prefix = "cond_stage_model.transformer."
    nested = {(prefix + "vision_model." + k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in sd.items()}
    path = tmp_path / "nested.ckpt"
    torch.save({"state_dict": nested}, path)
    a = load_original(folder / "model.ckpt", folder / "ldm_config.yaml", folder / "clip_vision_config.json")
    b = load_original(path, folder / "ldm_config.yaml", folder / "clip_vision_config.json")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a["reference_encoder"](x), b["reference_encoder"](x))


class NotATensor:
    pass


def _one_line_error(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_truncated_checkpoint(reference_dir, tmp_path):
    data = (reference_dir / "pbe-tiny" / "model.ckpt").read_bytes()
    path = tmp_path / "model.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_components(path)
    assert "truncated or corrupt" in _one_line_error(e, path)


def test_foreign_file(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError) as e:
        load_components(path)
    assert "not a readable PyTorch checkpoint" in _one_line_error(e, path)


def test_empty_file(tmp_path):
    path = tmp_path / "model.ckpt"
    path.touch()
    with pytest.raises(CheckpointError) as e:
        load_components(path)
    assert "empty" in _one_line_error(e, path)


def test_pickle_with_objects_is_refused_not_run(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "evil": NotATensor()}, path)
    with pytest.raises(CheckpointError) as e:
        load_components(path)
    assert "refused to unpickle" in _one_line_error(e, path)


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"a": NotATensor()}))
    with pytest.raises(CheckpointError) as e:
        load_components(path)
    _one_line_error(e, path)


class MakesAFolder:
    """Unpickling this calls ``os.mkdir(target)``: a stand-in for a checkpoint that runs code."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.mkdir, (self.target,)


def _write_zip_checkpoint(path, payload):
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": payload}, path)


def _write_plain_pickle(path, payload):
    path.write_bytes(pickle.dumps({"state_dict": {"x": 0}, "payload": payload}, protocol=4))


@pytest.mark.parametrize("write", [_write_zip_checkpoint, _write_plain_pickle], ids=["torch-zip", "plain-pickle"])
@pytest.mark.parametrize("payload", ["code", "class"])
def test_refused_pickle_prints_nothing_but_the_error(tmp_path, capfd, write, payload):
    """torch's weights-only reader warns about a plain pickle of protocol 4 (two lines on stderr); the
    refusal is the project's one line only, and the pickled call never runs."""
    target = tmp_path / "pwned"
    path = tmp_path / "model.ckpt"
    write(path, MakesAFolder(target) if payload == "code" else NotATensor())
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as e:
            read_state_dict(path)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr() == ("", "")
    message = _one_line_error(e, path)
    assert message.startswith(f"{path}: refused to unpickle: ")
    assert "\x1b" not in message  # torch's message carries terminal escapes
    if write is _write_plain_pickle:
        assert "plain pickle of protocol 4" in message
    else:
        assert ("posix.mkdir" if payload == "code" else "NotATensor") in message
        assert "holds objects other than tensors" in message
    assert not target.exists()


def test_legacy_pickle_of_protocol_4_is_named(tmp_path, capfd):
    """A plain torch.save of only tensors, but in pickle protocol 4: torch's weights-only reader cannot read
    it, and the error says so instead of blaming objects the file does not hold."""
    path = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(2)}, path, _use_new_zipfile_serialization=False, pickle_protocol=4)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match=r"plain pickle of protocol 4.*torch\.save's defaults"):
            read_state_dict(path)
    assert caught == [] and capfd.readouterr() == ("", "")
    torch.save({"x": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_state_dict(path)["x"], torch.ones(2))


def test_warnings_of_a_load_that_succeeds_still_reach_the_user(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(2)}, path)
    real_load = torch.load

    def warning_load(*args, **kwargs):
        warnings.warn("something torch wants said", UserWarning, stacklevel=2)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", warning_load)
    with pytest.warns(UserWarning, match="something torch wants said"):
        assert set(read_state_dict(path)) == {"x"}


def test_not_a_paint_by_example_checkpoint(reference_dir, tmp_path):
    sd = torch.load(reference_dir / "pbe-tiny" / "model.ckpt", weights_only=True)["state_dict"]
    sd = {k: v for k, v in sd.items() if not k.startswith("proj_out")}
    path = tmp_path / "sd.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as e:
        load_original(path, reference_dir / "pbe-tiny" / "ldm_config.yaml")
    assert "not a Paint-by-Example checkpoint" in _one_line_error(e, path)


def test_missing_keys_are_named(reference_dir, tmp_path):
    folder = reference_dir / "pbe-tiny"
    sd = torch.load(folder / "model.ckpt", weights_only=True)["state_dict"]
    del sd["model.diffusion_model.out.2.weight"]
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as e:
        load_original(path, folder / "ldm_config.yaml", folder / "clip_vision_config.json")
    message = _one_line_error(e, path)
    assert "unet" in message and "1 missing" in message and "conv_out.weight" in message


def test_config_that_does_not_fit(reference_dir, tmp_path):
    """The tiny checkpoint read as the released (full-size) layout: shapes mismatch, said in one line."""
    path = reference_dir / "pbe-tiny" / "model.ckpt"
    with pytest.raises(CheckpointError) as e:
        load_original(path)
    assert "expects context_dim 768" in _one_line_error(e, path)


def test_missing_file_and_unknown_spec(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file or folder"):
        load_components(tmp_path / "nothing-here.ckpt")
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_components(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="not a model file"):
        load_components(tmp_path / "notes.txt")


def test_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError) as e:
        load_components("nobody-here/no-such-model-xyz")
    message = str(e.value)
    assert "HF_HUB_OFFLINE" in message and "nobody-here/no-such-model-xyz" in message and "\n" not in message
