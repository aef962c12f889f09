"""The toy world's training examples (another render as the reference, tilts, poses, cut-out references) and
base training on them (``train --toy-world``)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from subject_inpainting import cli
from subject_inpainting.commands import train as train_command
from subject_inpainting.models.reference_encoder import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD
from subject_inpainting.toy import dataset, world


def _placed(pose: world.Pose) -> tuple:
    return pose.side, pose.x, pose.y, pose.flip


def test_training_examples_use_another_render_as_reference():
    ids = world.split_identities(0, "train", 10)
    data = dataset.ToyWorldExamples(ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, dataset.toy_augment(), seed=0)
    a, b = data[7], data[7]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["identity"]) == 7
    assert a["pixel_values"].shape == (3, 64, 64) and a["reference"].shape == (3, 32, 32)
    assert (a["keep_mask"] == 0).any() and (a["keep_mask"] == 1).any()
    assert not torch.equal(data[8]["pixel_values"], a["pixel_values"])
    assert data.procedural


def test_upright_examples_show_both_renders_upright_and_draw_the_rest_alike():
    ids = world.split_identities(0, "train", 10)
    args = (ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, dataset.toy_augment())
    upright, tilted = dataset.ToyWorldExamples(*args, seed=0, tilt=0), dataset.ToyWorldExamples(*args, seed=0)
    for i in range(4):
        for a, b in ((upright.scene(i), tilted.scene(i)), (upright._other(i), tilted._other(i))):
            assert a.pose.angle == 0 and b.pose.angle != 0
            assert _placed(a.pose) == _placed(b.pose)
        assert upright[i]["reference_pose"][0] == world.pose_labels(0.0, False)["tilt"]  # the middle tilt bin
    same = dataset.ToyWorldExamples(*args, seed=0, tilt=0, same_pose=True)
    assert all(same.scene(i).pose.angle == 0 == same._other(i).pose.angle for i in range(4))
    default = dataset.ToyWorldExamples(*args, seed=0, tilt=world.TILT_RANGE)[3]
    assert all(torch.equal(v, tilted[3][k]) for k, v in default.items())
    with pytest.raises(ValueError, match="tilt -5: expected a rotation range of 0-180 degrees"):
        dataset.ToyWorldExamples(*args, tilt=-5)


def test_same_pose_examples_show_the_reference_in_the_scenes_pose():
    ids = world.split_identities(0, "train", 10)
    args = (ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, dataset.toy_augment())
    same, free = dataset.ToyWorldExamples(*args, seed=0, same_pose=True), dataset.ToyWorldExamples(*args, seed=0)
    matched = 0
    for i in range(8):
        scene, other = same.scene(i), same._other(i)
        assert (scene.pose.angle, scene.pose.flip) == (other.pose.angle, other.pose.flip)
        assert abs(scene.pose.angle) <= world.TILT_RANGE
        assert scene.box != other.box or not np.array_equal(scene.background, other.background)
        item = same[i]
        assert item["reference_pose"].tolist() == list(world.pose_labels(scene.pose.angle, scene.pose.flip).values())
        assert np.array_equal(item["pixel_values"].numpy(), same[i]["pixel_values"].numpy())
        f = free.scene(i)
        matched += free[i]["reference_pose"].tolist() == list(world.pose_labels(f.pose.angle, f.pose.flip).values())
    assert matched < 8  # without same_pose the reference's pose is drawn on its own


def test_reference_and_scene_items_match_the_whole_item():
    from subject_inpainting.imaging import rgb_to_tensor

    ids = world.split_identities(0, "train", 10)
    # an augmentation that draws nothing for the reference and never zooms into the scene
    still = dataclasses.replace(dataset.toy_augment(), crop_min_share=1.0, flip_p=0.0, rotation_p=0.0)
    data = dataset.ToyWorldExamples(
        ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, still, seed=0, cut_reference=True, same_pose=True
    )
    for i in range(4):
        item, ref = data[i], data.reference_item(i)
        assert set(ref) == {"reference", "identity", "reference_pose"}
        assert all(torch.equal(item[k], ref[k]) for k in ref)
        assert torch.equal(item["pixel_values"], rgb_to_tensor(data.scene(i).image)[0])


def test_references_are_cut_out_onto_white():
    from subject_inpainting.toy.stages import to_unit_range

    r = world.render_scene(world.identity(0, 3), 64, seed=4, occlusion_p=0.0)
    assert (r.solid <= r.mask).all() and r.solid.sum() > 0.8 * r.mask.sum()
    cut = r.cut_out()
    assert np.array_equal(cut[r.solid], r.image[r.solid]) and (cut[~r.solid] == 255).all()
    case = world.make_case(world.split_identities(0, "heldout", 1)[0], seed=3)
    corners = case.reference[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 255).all()  # the margin around the subject is white, not a scene
    ids = world.split_identities(0, "train", 10)
    data = {
        cut: dataset.ToyWorldExamples(
            ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, dataset.toy_augment(), seed=0, cut_reference=cut
        )
        for cut in (False, True)
    }
    for i in range(6):
        plain, cut = data[False][i], data[True][i]
        for key in ("pixel_values", "keep_mask", "box", "crop"):  # the same draws: only the reference differs
            assert torch.equal(plain[key], cut[key])
        border = torch.cat([cut["reference"][:, 0], cut["reference"][:, -1]], dim=-1)
        white = (to_unit_range(border[:, None])[:, 0] > 0.95).all(dim=0)
        assert white.float().mean() > 0.5, i  # most of the top and bottom rows: white (rotations move a few)
        assert not torch.equal(plain["reference"], cut["reference"])


# ---------------------------------------------------------------------------------------------------
# train --toy-world: the toy world's data handed to base training
# ---------------------------------------------------------------------------------------------------
FAST = ["--device", "cpu", "--quiet", "--warmup-steps", "0"]


@pytest.mark.slow
def test_toy_world_runs_show_the_models_own_world(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The training split comes from the world the model records, not from --seed (which only draws)."""
    monkeypatch.setenv("SI_NO_TENSORBOARD", "1")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    index = json.loads((model / "model_index.json").read_text())
    (model / "model_index.json").write_text(json.dumps({**index, "toy_world_seed": 3}))

    def trained_on(name: str, *extra: str) -> tuple[int, int]:
        out = tmp_path / name
        argv = ["--toy-world", "--out", str(out), "--max-steps", "1", "--batch-size", "2", *FAST, *extra]
        train_command.base_training(train_command.parse_train_args(argv))
        run = json.loads((out / "checkpoints" / "run.json").read_text())
        return run["world"], json.loads((out / "model_index.json").read_text())["toy_world_seed"]

    assert trained_on("recorded", "--model", str(model), "--seed", "5") == (3, 3)
    assert trained_on("named", "--model", str(model), "--seed", "5", "--toy-world-seed", "4") == (4, 4)
    assert trained_on("unrecorded", "--model", str(tiny_model_dir), "--seed", "5") == (5, 5)

    bad = ["train", "--model", str(model), "--manifest", "m.jsonl", "--out", str(tmp_path / "x"), *FAST]
    assert cli.main([*bad, "--toy-world-seed", "2"]) == 2
    assert "--toy-world-seed 2: only with --toy-world" in capsys.readouterr().err


@pytest.mark.slow
def test_toy_tilt_reaches_the_examples_and_the_runs_record(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SI_NO_TENSORBOARD", "1")
    tilts = []

    class Recorded(dataset.ToyWorldExamples):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            tilts.append(self.tilt)

    monkeypatch.setattr(dataset, "ToyWorldExamples", Recorded)
    common = ["--model", str(tiny_model_dir), "--max-steps", "1", "--batch-size", "2", *FAST]
    names = {"upright": ["--toy-tilt", "0"], "world": [], "named": ["--toy-tilt", str(world.TILT_RANGE)]}
    for name, extra in names.items():
        argv = ["--toy-world", "--out", str(tmp_path / name), *common, *extra]
        train_command.base_training(train_command.parse_train_args(argv))
    runs = [json.loads((tmp_path / n / "checkpoints" / "run.json").read_text()) for n in names]
    assert tilts == [0.0, world.TILT_RANGE, world.TILT_RANGE]
    assert runs[0]["tilt"] == 0  # the world's own range, given or not, keeps older runs resumable
    assert "tilt" not in runs[1] and "tilt" not in runs[2]

    manifest = ["train", "--manifest", "m.jsonl", "--out", str(tmp_path / "x"), *common]
    assert cli.main([*manifest, "--toy-tilt", "0"]) == 2
    assert "--toy-tilt 0: only with --toy-world" in capsys.readouterr().err
    assert cli.main(["train", "--toy-world", "--out", str(tmp_path / "y"), *common, "--toy-tilt", "-3"]) == 2
    assert "--toy-tilt: expected a number between 0 and 180, got -3" in capsys.readouterr().err
