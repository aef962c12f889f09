"""The pipeline end to end on tiny components: sizes, exact paste-back, seeds, options, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_scene, tiny_components
from subject_inpainting.imaging import InputError
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.sampling.samplers import SAMPLERS


def run(pipe, files, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", 3)
    kwargs.setdefault("progress", False)
    if "box" not in kwargs:
        kwargs.setdefault("mask", files["mask"])
    return pipe(files["scene"], files["reference"], generator=torch.Generator().manual_seed(seed), **kwargs)


def test_result_has_the_scene_size_and_exact_outside(tiny_pipeline, scene_files):
    out = run(tiny_pipeline, scene_files)
    image = out.images[0]
    assert image.size == (48, 40) and image.mode == "RGB"
    scene = np.asarray(Image.open(scene_files["scene"]))
    result = np.asarray(image)
    mask = scene_files["mask_array"]
    assert np.array_equal(result[~mask], scene[~mask])
    assert np.abs(result[mask].astype(int) - scene[mask]).mean() > 5  # something was painted
    assert out.latents.shape == (1, 4, 16, 16)
    assert out.work_box == (0, 0, 48, 40)


def test_seed_reproduces_and_varies(tiny_pipeline, scene_files):
    a = np.asarray(run(tiny_pipeline, scene_files, seed=1).images[0])
    b = np.asarray(run(tiny_pipeline, scene_files, seed=1).images[0])
    c = np.asarray(run(tiny_pipeline, scene_files, seed=2).images[0])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_several_images_per_call_and_per_image_generators(tiny_pipeline, scene_files):
    out = run(tiny_pipeline, scene_files, num_images=3)
    assert len(out.images) == 3 and out.latents.shape[0] == 3
    assert not np.array_equal(np.asarray(out.images[0]), np.asarray(out.images[1]))
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    pair = tiny_pipeline(
        scene_files["scene"],
        scene_files["reference"],
        mask=scene_files["mask"],
        num_inference_steps=3,
        generator=gens,
        num_images=2,
        progress=False,
    )
    single = run(tiny_pipeline, scene_files, seed=8)
    # the same noise; a batch of 2 rounds differently from a batch of 1 (float rounding, at most a level)
    torch.testing.assert_close(pair.latents[1:], single.latents, atol=1e-4, rtol=1e-4)
    assert np.abs(np.asarray(pair.images[1]).astype(int) - np.asarray(single.images[0])).max() <= 1


def two_scenes(files):
    """The fixture's scene with its mask, and the same scene mirrored with a box and a cropped reference."""
    mirrored = np.ascontiguousarray(np.asarray(Image.open(files["scene"]))[:, ::-1])
    return {
        "scene": [files["scene"], mirrored],
        "reference": [files["reference"], files["reference"]],
        "mask": [files["mask"], None],
        "box": [None, (6, 4, 30, 28)],
        "reference_box": [None, (2, 2, 20, 22)],
    }


@pytest.mark.parametrize(
    "options",
    [{"preset": "original"}, {"preset": "fast", "keep_known": True, "decode": "region", "num_images": 2}],
    ids=["original", "fast-keep-known-region-decode-two-images"],
)
def test_a_list_of_scenes_paints_each_as_alone(tiny_pipeline, scene_files, options):
    batch = two_scenes(scene_files)
    kwargs = {"num_inference_steps": 4, "progress": False, **options}
    together = tiny_pipeline(**batch, generator=[torch.Generator().manual_seed(s) for s in (7, 8)], **kwargs)
    n = options.get("num_images", 1)
    assert len(together.images) == 2 * n and together.latents.shape[0] == 2 * n
    for i, seed in enumerate((7, 8)):
        alone = tiny_pipeline(
            **{k: v[i] for k, v in batch.items()}, generator=torch.Generator().manual_seed(seed), **kwargs
        )
        assert together.work_boxes[i] == alone.work_box
        torch.testing.assert_close(together.latents[i * n : (i + 1) * n], alone.latents, atol=1e-4, rtol=1e-4)
        for a, b in zip(together.images[i * n : (i + 1) * n], alone.images, strict=True):
            assert np.abs(np.asarray(a).astype(int) - np.asarray(b)).max() <= 1
    assert not np.array_equal(np.asarray(together.images[0]), np.asarray(together.images[n]))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"reference": "ref"}, ValueError, "with a list of 2 scenes, reference must be a list of as many; got str"),
        ({"mask": ["m"]}, ValueError, "mask must be a list of as many; got a list of 1"),
        ({"scene": []}, ValueError, "scene is an empty list"),
        ({"generator": [torch.Generator()]}, ValueError, "got 1 generators for 2 scenes; give one per scene"),
    ],
)
def test_a_list_of_scenes_is_checked(tiny_pipeline, scene_files, monkeypatch, change, error, match):
    no_model_work(tiny_pipeline, monkeypatch)
    kwargs = {**two_scenes(scene_files), "progress": False, **change}
    with pytest.raises(error, match=match):
        tiny_pipeline(**kwargs)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs(tiny_pipeline, scene_files, sampler):
    steps = []

    def on_step_end(pipe, step, timestep, tensors):
        steps.append((pipe, step, timestep, sorted(tensors)))
        return tensors

    out = run(tiny_pipeline, scene_files, sampler=sampler, num_inference_steps=4, callback_on_step_end=on_step_end)
    assert torch.isfinite(out.latents).all()
    assert [s[1] for s in steps] == [0, 1, 2, 3]  # once per step, with the tensors asked for (the latents)
    assert all(s[0] is tiny_pipeline and s[3] == ["latents"] for s in steps)
    assert steps[0][2] > steps[-1][2]  # timesteps run down


def test_box_instead_of_mask(tiny_pipeline, scene_files):
    out = run(tiny_pipeline, scene_files, box=(4, 6, 20, 30))
    scene = np.asarray(Image.open(scene_files["scene"]))
    result = np.asarray(out.images[0])
    outside = np.ones((40, 48), bool)
    outside[6:30, 4:20] = False
    assert np.array_equal(result[outside], scene[outside])


def test_crop_region(tiny_pipeline, scene_files):
    out = run(tiny_pipeline, scene_files, box=(30, 4, 40, 12), region="crop", context=2.0)
    x0, y0, x1, y1 = out.work_box
    assert x1 - x0 == y1 - y0 == 20  # 2 × the box's 10 px side
    assert x0 <= 30 and y0 <= 4 and x1 >= 40 and y1 >= 12 and x1 <= 48 and y1 <= 40
    scene = np.asarray(Image.open(scene_files["scene"]))
    result = np.asarray(out.images[0])
    outside = np.ones((40, 48), bool)
    outside[4:12, 30:40] = False
    assert np.array_equal(result[outside], scene[outside])


def test_crop_falls_back_to_full_when_no_square_holds_the_mask(tiny_pipeline):
    mask = np.zeros((40, 48), bool)
    mask[2:5, 0:45] = True  # wider than the scene is tall
    assert tiny_pipeline.work_box(mask, "crop", 2.0) == (0, 0, 48, 40)


def test_without_paste_back_the_whole_frame_is_generated(tiny_pipeline, scene_files):
    out = run(tiny_pipeline, scene_files, paste_back=False)
    scene = np.asarray(Image.open(scene_files["scene"]))
    result = np.asarray(out.images[0])
    assert result.shape == scene.shape
    assert not np.array_equal(result[~scene_files["mask_array"]], scene[~scene_files["mask_array"]])


def test_rgba_scene_keeps_its_alpha_outside(tiny_pipeline, scene_files, tmp_path):
    rgba = np.dstack([make_scene(), np.full((40, 48), 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = run(tiny_pipeline, {**scene_files, "scene": tmp_path / "rgba.png"})
    result = np.asarray(out.images[0])
    mask = scene_files["mask_array"]
    assert out.images[0].mode == "RGBA"
    assert np.array_equal(result[~mask], rgba[~mask])
    assert (result[15:25, 18:30, 3] == 255).all()  # the painted subject is opaque deep inside


def test_reference_as_normalised_tensor(tiny_pipeline, scene_files):
    x = torch.zeros(1, 3, 32, 32)
    out = run(tiny_pipeline, {**scene_files, "reference": x})
    assert out.images[0].size == (48, 40)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 32, 32\)"):
        run(tiny_pipeline, {**scene_files, "reference": torch.zeros(1, 3, 8, 8)})


def test_guidance_one_calls_the_unet_once_per_step(scene_files):
    components = tiny_components()
    calls = []
    components["unet"].register_forward_hook(lambda m, args, kwargs_out: calls.append(1))
    pipe = SubjectInpaintPipeline(**components)
    run(pipe, scene_files, preset="original", guidance_scale=1.0, sampler="ddim", num_inference_steps=4)
    assert len(calls) == 4


def test_bfloat16_runs_on_cpu(scene_files):
    pipe = SubjectInpaintPipeline(**tiny_components()).to(dtype=torch.bfloat16)
    assert pipe.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    out = run(pipe, scene_files)
    assert np.isfinite(np.asarray(out.images[0], dtype=float)).all()
    half = SubjectInpaintPipeline(**tiny_components()).to(dtype=torch.float16)
    assert half.vae.dtype == torch.float32  # the VAE stays in float32 under float16


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_inference_steps": 0}, ValueError, "between 1 and 1,000"),
        ({"num_inference_steps": 2.5}, TypeError, "must be a whole number"),
        ({"guidance_scale": -1}, ValueError, "guidance_scale"),
        ({"guidance_scale": float("nan")}, ValueError, "guidance_scale"),
        ({"guidance_scale": 1e300}, ValueError, "guidance_scale must be a finite number between 0 and 100"),
        ({"sampler": "heun"}, ValueError, "sampler must be one of"),
        ({"eta": 0.5}, ValueError, "eta applies to sampler ddim only"),
        ({"num_images": 0}, ValueError, "num_images"),
        ({"num_images": 100_000}, ValueError, "num_images must be a whole number between 1 and 16"),
        ({"region": "tile"}, ValueError, "region must be one of"),
        ({"context": 0.5}, ValueError, "context must be a finite number between 1 and 100"),
        ({"context": float("inf")}, ValueError, "context must be a finite number"),
        ({"feather": -1}, ValueError, "feather"),
        ({"feather": float("inf")}, ValueError, "feather must be a finite number between 0 and 10,000"),
        ({"keep_known": 1}, TypeError, "keep_known must be True or False"),
        ({"guidance_interval": (800, 100)}, ValueError, "LOW <= HIGH"),
        ({"num_images": 2, "generator": [torch.Generator()]}, ValueError, "one per image"),
        ({"generator": 3}, TypeError, "torch.Generator"),
        ({"latents": torch.zeros(1, 4, 8, 8)}, ValueError, "latents must have shape"),
        ({"latents": torch.full((1, 4, 16, 16), float("nan"))}, ValueError, "latents hold NaN"),
    ],
)
def test_check_inputs(tiny_pipeline, scene_files, kwargs, error, match):
    kwargs = {"num_inference_steps": 2, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        tiny_pipeline(scene_files["scene"], scene_files["reference"], mask=scene_files["mask"], **kwargs)


def test_input_errors_are_input_errors(tiny_pipeline, scene_files, tmp_path):
    Image.new("L", (48, 40)).save(tmp_path / "black.png")
    with pytest.raises(InputError, match="mask is empty"):
        run(tiny_pipeline, {**scene_files, "mask": tmp_path / "black.png"})
    with pytest.raises(InputError, match="outside the 48×40 scene"):
        run(tiny_pipeline, scene_files, box=(0, 0, 60, 10))
    with pytest.raises(InputError, match=r"reference .*: no such file"):
        run(tiny_pipeline, {**scene_files, "reference": tmp_path / "missing.jpg"})


def test_components_must_fit_together():
    c = tiny_components()
    c["unet"].register_to_config(in_channels=4)
    with pytest.raises(ValueError, match=r"takes 4 input channels .* needs 9"):
        SubjectInpaintPipeline(**c)
    c = tiny_components()
    c["unet"].register_to_config(cross_attention_dim=64)
    with pytest.raises(ValueError, match="32-wide context"):
        SubjectInpaintPipeline(**c)
    c = tiny_components()
    c["scheduler"] = {**c["scheduler"], "prediction_type": "sample"}
    with pytest.raises(ValueError, match="prediction_type 'sample' is not supported"):
        SubjectInpaintPipeline(**c)


def test_a_velocity_model_paints_what_its_noise_twin_paints(scene_files):
    # the same UNet read as predicting v, and wrapped to predict the noise it implies: one picture
    from types import SimpleNamespace

    from subject_inpainting.sampling.schedule import alphas_cumprod

    c = tiny_components()
    c["scheduler"] = {**c["scheduler"], "prediction_type": "v_prediction"}
    velocity = SubjectInpaintPipeline(**c)
    alphas, unet = alphas_cumprod(c["scheduler"]), c["unet"]

    class NoiseTwin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.config, self.dtype, self.device = unet, unet.config, unet.dtype, unet.device

        def forward(self, x_in, t, **kwargs):
            a = alphas[t.long()].view(-1, 1, 1, 1)
            v = self.inner(x_in, t, **kwargs).sample
            return SimpleNamespace(sample=a.sqrt() * v + (1 - a).sqrt() * x_in[:, : v.shape[1]])

    eps_schedule = {**c["scheduler"], "prediction_type": "epsilon"}
    noise = SubjectInpaintPipeline(**{**c, "unet": NoiseTwin(), "scheduler": eps_schedule})
    for sampler in ("plms", "dpmsolver++"):
        pictures = [
            p(
                scene_files["scene"],
                scene_files["reference"],
                mask=scene_files["mask"],
                num_inference_steps=4,
                sampler=sampler,
                preset="original",
                generator=torch.Generator().manual_seed(0),
                progress=False,
            ).latents
            for p in (velocity, noise)
        ]
        assert torch.allclose(pictures[0], pictures[1], atol=1e-4)


def test_keep_known_holds_the_prediction_outside_the_region(tiny_pipeline, scene_files, monkeypatch):
    from subject_inpainting.sampling import stack as stack_module

    made = []

    class Recording(stack_module.KnownRegionDenoiser):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(stack_module, "KnownRegionDenoiser", Recording)
    steps = []
    plain = run(tiny_pipeline, scene_files, sampler="ddim", paste_back=False)
    assert not made
    held = run(
        tiny_pipeline,
        scene_files,
        sampler="ddim",
        paste_back=False,
        keep_known=True,
        callback_on_step_end=lambda pipe, i, t, tensors: steps.append(tensors),
        callback_on_step_end_tensor_inputs=["pred_x0"],
    )
    (wrapper,) = made
    known = wrapper.keep.expand_as(steps[-1]["pred_x0"]) == 1
    assert known.any() and (~known).any()
    assert torch.allclose(steps[-1]["pred_x0"][known], wrapper.z_scene[known], atol=1e-3)
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(held.images[0]))
    with pytest.raises(TypeError, match="keep_known must be True or False, got 'yes'"):
        run(tiny_pipeline, scene_files, keep_known="yes")


def no_model_work(pipe, monkeypatch):
    """Make every model of ``pipe`` fail if called: the checks must come before any of them runs."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model ran on inputs that should have been refused")

    for module in (pipe.unet, pipe.vae, pipe.reference_encoder):
        monkeypatch.setattr(module, "forward", refuse)
    monkeypatch.setattr(pipe.vae, "encode", refuse)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_reference_tensor_with_nan_or_inf_is_refused_before_the_models(tiny_pipeline, scene_files, monkeypatch, bad):
    no_model_work(tiny_pipeline, monkeypatch)
    x = torch.zeros(1, 3, 32, 32)
    x[0, 1, 5, 7] = bad
    with pytest.raises(ValueError, match="reference tensor holds NaN or infinite values") as e:
        run(tiny_pipeline, {**scene_files, "reference": x})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="NaN"):
        tiny_pipeline.image_processor.prepare(scene_files["scene"], x[0], mask=scene_files["mask"])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_reference_tensor_must_be_floating_point(tiny_pipeline, scene_files, monkeypatch, dtype):
    no_model_work(tiny_pipeline, monkeypatch)
    with pytest.raises(TypeError, match=rf"must be floating point .*got {dtype}"):
        run(tiny_pipeline, {**scene_files, "reference": torch.zeros(1, 3, 32, 32, dtype=dtype)})


def test_reference_box_with_a_tensor_reference_is_refused(tiny_pipeline, scene_files):
    with pytest.raises(ValueError, match="reference_box crops a reference picture"):
        run(tiny_pipeline, {**scene_files, "reference": torch.zeros(1, 3, 32, 32)}, reference_box=(0, 0, 9, 9))


def test_numpy_images_paint_what_the_files_paint(tiny_pipeline, scene_files):
    scene = np.asarray(Image.open(scene_files["scene"]))
    reference = np.asarray(Image.open(scene_files["reference"]))
    mask = scene_files["mask_array"]
    expected = run(tiny_pipeline, scene_files)
    for mask_array in (mask, mask.astype(np.uint8) * 255):
        out = run(tiny_pipeline, {"scene": scene, "reference": reference, "mask": mask_array})
        assert torch.equal(out.latents, expected.latents)
        assert np.array_equal(np.asarray(out.images[0]), np.asarray(expected.images[0]))


def test_numpy_rgba_and_grey_scenes(tiny_pipeline, scene_files):
    rgba = np.dstack([make_scene(), np.full((40, 48), 77, np.uint8)])
    out = run(tiny_pipeline, {**scene_files, "scene": rgba})
    assert out.images[0].mode == "RGBA"
    assert np.array_equal(np.asarray(out.images[0])[~scene_files["mask_array"]], rgba[~scene_files["mask_array"]])
    grey = make_scene()[..., 0]
    inputs = tiny_pipeline.image_processor.prepare(grey, scene_files["reference"], mask=scene_files["mask"])
    assert inputs.scene.shape == (40, 48, 3) and np.array_equal(inputs.scene[..., 2], grey)


@pytest.mark.parametrize(
    ("name", "value", "error", "match"),
    [
        ("scene", np.zeros((40, 48, 3), np.float32), TypeError, "scene array must be uint8 .*got float32"),
        ("scene", np.zeros((40, 48, 2), np.uint8), ValueError, r"scene array must have shape .*got \(40, 48, 2\)"),
        ("scene", np.zeros((1, 40, 48, 3), np.uint8), ValueError, r"got \(1, 40, 48, 3\)"),
        ("scene", np.zeros((0, 48, 3), np.uint8), ValueError, r"scene array is empty \(shape \(0, 48, 3\)\)"),
        ("reference", np.zeros((30, 30, 3), np.int16), TypeError, "reference array must be uint8 .*got int16"),
        ("mask", np.zeros((40, 48), np.float64), TypeError, "mask array must be bool or uint8 .*got float64"),
        ("mask", np.ones((40, 48, 3), bool), ValueError, r"mask array must have shape \(H, W\), got \(40, 48, 3\)"),
        ("scene", 3, TypeError, r"scene must be a path \(str or os.PathLike\), a PIL.Image or a numpy array; got int"),
        ("scene", [[0, 1], [2, 3]], TypeError, r"scene\[0\] must be .*; got list"),
        ("scene", torch.zeros(3, 40, 48), TypeError, "scene must be .*; got Tensor"),
        ("mask", b"mask.png", TypeError, "mask must be .*; got bytes"),
        ("reference", None, TypeError, "reference must be .*numpy array, or a torch.Tensor .*; got NoneType"),
    ],
    ids=[
        "float-scene",
        "two-channel-scene",
        "batched-scene",
        "empty-scene",
        "int16-reference",
        "float-mask",
        "rgb-mask",
        "int-scene",
        "list-scene",
        "tensor-scene",
        "bytes-mask",
        "none-reference",
    ],
)
def test_unusable_image_inputs_are_named(tiny_pipeline, scene_files, monkeypatch, name, value, error, match):
    no_model_work(tiny_pipeline, monkeypatch)
    with pytest.raises(error, match=match) as e:
        run(tiny_pipeline, {**scene_files, name: value})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"x0": 1, "y0": 2, "x1": 3, "y1": 4}, "expected four numbers"),
        ((4, 6, 20), "expected four numbers x0,y0,x1,y1, got 3"),
        (("4", "6", "20", "30"), "'4' is not a number"),
        ((4, 6, 20, None), "None is not a number"),
        ((4, 6, 20, True), "True is not a number"),
        ({4, 6, 20, 30}, "expected four numbers"),
        (b"\x04\x06\x14\x1e", "expected four numbers"),
        (12, "expected four numbers"),
        (np.zeros((2, 4)), "expected four numbers"),
        (torch.tensor([4, 6, 20, 30, 1]), "got 5"),
        ((4, 6, 20, np.nan), "nan is not a finite number"),
        ("0,0,1e400,10", "'1e400' is not a finite number"),
    ],
    ids=["dict", "three", "strings", "none", "bool", "set", "bytes", "int", "2d-array", "five-tensor", "nan", "inf"],
)
@pytest.mark.parametrize("which", ["box", "reference_box"])
def test_boxes_that_are_not_four_numbers_are_named(tiny_pipeline, scene_files, monkeypatch, which, value, match):
    no_model_work(tiny_pipeline, monkeypatch)
    kwargs = {"box": (4, 6, 20, 30)} if which == "box" else {}
    kwargs[which] = value
    with pytest.raises(ValueError, match=rf"^{which} .*{match}") as e:
        run(tiny_pipeline, scene_files, **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "box",
    [(4, 6, 20, 30), [4.2, 6, 20, 29.9], np.array([4, 6, 20, 30]), torch.tensor([4, 6, 20, 30]), "4,6,20,30"],
    ids=["tuple", "list", "numpy", "tensor", "text"],
)
def test_boxes_of_every_form_mark_the_same_region(tiny_pipeline, scene_files, box):
    inputs = tiny_pipeline.image_processor.prepare(scene_files["scene"], scene_files["reference"], box=box)
    expected = np.zeros((40, 48), bool)
    expected[6:30, 4:20] = True
    assert np.array_equal(inputs.mask, expected)


def _sampler_calls(monkeypatch) -> list[tuple[str, int]]:
    from subject_inpainting import pipeline as pipeline_module

    seen = []
    real = pipeline_module.sample

    def spy(sampler, denoiser, x, schedule, steps, *args):
        seen.append((sampler, steps))
        return real(sampler, denoiser, x, schedule, steps, *args)

    monkeypatch.setattr(pipeline_module, "sample", spy)
    return seen


def test_presets_set_the_sampler_and_explicit_values_win(tiny_pipeline, scene_files, monkeypatch):
    from subject_inpainting.presets import PRESETS

    seen = _sampler_calls(monkeypatch)
    original = run(tiny_pipeline, scene_files, preset="original", num_inference_steps=None)
    explicit = run(
        tiny_pipeline,
        scene_files,
        preset="fast",
        sampler="plms",
        num_inference_steps=50,
        deep_cache=1,
        guidance_interval=(0, 1000),
        token_merging=0.0,
        decode="full",
    )
    run(tiny_pipeline, scene_files, num_inference_steps=None)
    run(tiny_pipeline, scene_files, preset="original", num_inference_steps=7)
    fast = PRESETS["fast"]
    assert seen == [("plms", 50), ("plms", 50), (fast["sampler"], fast["num_inference_steps"]), ("plms", 7)]
    assert np.array_equal(np.asarray(original.images[0]), np.asarray(explicit.images[0]))
    with pytest.raises(ValueError, match="preset must be one of original, fast"):
        run(tiny_pipeline, scene_files, preset="quick")


def instances_made(monkeypatch, module, name: str) -> list:
    """The instances of ``module.name`` (a class) made while the test runs, in order."""
    made = []
    base = getattr(module, name)

    class Spy(base):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(module, name, Spy)
    return made


def test_deep_cache_reuses_the_deep_features_between_steps(tiny_pipeline, scene_files, monkeypatch):
    from subject_inpainting.sampling import stack as stack_module

    made = instances_made(monkeypatch, stack_module, "DeepCacheUNet")
    plain = run(tiny_pipeline, scene_files, preset="original", num_inference_steps=12)
    assert made == []  # the original preset runs every step in full
    cached = run(tiny_pipeline, scene_files, preset="original", num_inference_steps=12, deep_cache=3)
    (unet,) = made
    calls = unet.full_calls + unet.cached_calls
    assert calls >= 12 and unet.full_calls == -(-calls // 3)  # every third call is full
    mask = scene_files["mask_array"]
    a, b = (np.asarray(out.images[0]).astype(int) for out in (plain, cached))
    assert np.array_equal(a[~mask], b[~mask]) and 0 < np.abs(a - b)[mask].mean() < 40


def test_deep_cache_and_guidance_interval_with_a_fine_tuned_subject(reference_dir, scene_files, monkeypatch):
    from subject_inpainting.sampling import stack as stack_module

    made = instances_made(monkeypatch, stack_module, "DeepCacheUNet")
    pipe = SubjectInpaintPipeline.from_pretrained(reference_dir / "pbe-tiny")
    pipe.load_subject(reference_dir / "subject-tiny")
    out = run(pipe, scene_files, preset="original", num_inference_steps=6, deep_cache=2, guidance_interval=(0, 600))
    assert len(made) == 2  # the pretrained UNet and the subject's, each with its own cache
    assert all(u.cached_calls > 0 for u in made)
    mask = scene_files["mask_array"]
    scene = np.asarray(Image.open(scene_files["scene"]))
    assert np.array_equal(np.asarray(out.images[0])[~mask], scene[~mask])


def test_token_merging_with_deep_cache_and_a_fine_tuned_subject(reference_dir, scene_files, monkeypatch):
    from subject_inpainting.models import token_merging

    made = instances_made(monkeypatch, token_merging, "TokenMergingProcessor")
    pipe = SubjectInpaintPipeline.from_pretrained(reference_dir / "pbe-tiny")
    pipe.load_subject(reference_dir / "subject-tiny")
    before = [a.processor for u in (pipe.unet, pipe.subject.unet) for a in token_merging.self_attentions(u)]
    kwargs = {"preset": "original", "num_inference_steps": 6, "deep_cache": 2}
    plain = run(pipe, scene_files, **kwargs)
    assert made == []  # the presets leave tokens unmerged
    merged = run(pipe, scene_files, token_merging=0.5, **kwargs)
    assert len(made) == len(before)  # every self-attention of both UNets
    assert sum(p.merged_calls for p in made) > 0  # the whole calls and DeepCache's shallow ones merge
    again = run(pipe, scene_files, token_merging=0.5, **kwargs)
    assert [a.processor for u in (pipe.unet, pipe.subject.unet) for a in token_merging.self_attentions(u)] == before
    mask = scene_files["mask_array"]
    a, b, c = (np.asarray(out.images[0]).astype(int) for out in (plain, merged, again))
    assert np.array_equal(b, c)  # every run draws the same tiles
    assert np.array_equal(a[~mask], b[~mask]) and 0 < np.abs(a - b)[mask].mean() < 40
    with pytest.raises(ValueError, match=r"token_merging must be a finite number between 0 and 0\.75, got 0\.8"):
        run(pipe, scene_files, token_merging=0.8, **kwargs)


def test_the_vae_runs_channels_last_on_the_cpu_and_computes_the_same(tiny_pipeline, monkeypatch):
    vae = tiny_pipeline.vae
    seen = []

    def spy(real):
        def call(x, *args, **kwargs):
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
            return real(x, *args, **kwargs)

        return call

    for name in ("encode", "decode"):
        monkeypatch.setattr(vae, name, spy(getattr(vae, name)))
    g = torch.Generator().manual_seed(0)
    scene, keep = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1, (torch.rand(1, 1, 64, 64, generator=g) > 0.5).float()
    z, _ = tiny_pipeline.encode_scene(scene, keep)
    images = tiny_pipeline.decode(z)
    assert seen == [True, True] and z.is_contiguous() and images.is_contiguous()
    monkeypatch.undo()
    with torch.no_grad():
        expected_z = vae.encode(scene * keep).latent_dist.mean * vae.config.scaling_factor
        expected = ((vae.decode(z / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(z, expected_z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=1e-5)


def test_region_decode_decodes_a_window_and_matches_inside_the_region(tiny_pipeline, scene_files, monkeypatch):
    from subject_inpainting import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "DECODE_MARGIN", 2)
    shapes = []
    real = tiny_pipeline.decode
    monkeypatch.setattr(tiny_pipeline, "decode", lambda z: shapes.append(tuple(z.shape[-2:])) or real(z))
    full = run(tiny_pipeline, scene_files, decode="full")
    window = run(tiny_pipeline, scene_files, decode="region")
    unpasted = run(tiny_pipeline, scene_files, decode="region", paste_back=False)
    assert shapes[0] == (16, 16) and shapes[1][0] < 16 and shapes[1][1] < 16 and shapes[2] == (16, 16)
    mask = scene_files["mask_array"]
    a, b = (np.asarray(out.images[0]).astype(int) for out in (full, window))
    assert np.array_equal(a[~mask], b[~mask])
    assert np.abs(a - b)[mask].max() <= 40  # a random VAE's receptive field beyond 2 cells; measured on real ones
    assert np.array_equal(
        np.asarray(unpasted.images[0]), np.asarray(run(tiny_pipeline, scene_files, paste_back=False).images[0])
    )


def test_an_image_in_memory_is_not_held_to_the_file_limit(tiny_pipeline):
    from subject_inpainting.imaging import MAX_PIXELS

    side = int(MAX_PIXELS**0.5) + 1  # a scene its caller opened with a higher limit (--max-pixels)
    scene = Image.new("L", (side, side), 128)
    prepared = tiny_pipeline.image_processor.prepare(scene, Image.new("RGB", (8, 8)), box=(10, 10, 50, 50))
    assert prepared.scene.shape == (side, side, 3) and prepared.mask.sum() == 40 * 40


def test_settings_and_keywords_mean_the_same(tiny_pipeline, scene_files):
    from subject_inpainting import PaintSettings

    box = (4, 6, 30, 30)
    g = torch.Generator
    plain = tiny_pipeline(scene_files["scene"], scene_files["reference"], box=box, generator=g().manual_seed(3))
    fast = PaintSettings.from_preset("fast")
    given = tiny_pipeline(
        scene_files["scene"], scene_files["reference"], box=box, settings=fast, generator=g().manual_seed(3)
    )
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(given.images[0]))
    steps = PaintSettings(num_inference_steps=3, guidance_scale=2.0)
    a = run(tiny_pipeline, scene_files, settings=steps)
    b = run(tiny_pipeline, scene_files, num_inference_steps=3, guidance_scale=2.0)
    c = run(tiny_pipeline, scene_files, settings=steps, guidance_scale=7.0)  # a keyword over the settings
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))
    with pytest.raises(TypeError, match="settings must be a PaintSettings, got dict"):
        run(tiny_pipeline, scene_files, settings={"num_inference_steps": 3})


def test_a_step_end_callback_may_replace_the_latents(tiny_pipeline, scene_files):
    seen = []

    def zero_at_the_end(pipe, step, timestep, tensors):
        seen.append(step)
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 2 else tensors

    out = run(tiny_pipeline, scene_files, sampler="ddim", num_inference_steps=3, callback_on_step_end=zero_at_the_end)
    assert seen == [0, 1, 2] and torch.equal(out.latents, torch.zeros_like(out.latents))
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs must name some of"):
        run(tiny_pipeline, scene_files, callback_on_step_end=zero_at_the_end, callback_on_step_end_tensor_inputs=["x"])


def test_the_progress_bar_follows_its_configuration(tiny_pipeline, scene_files, capsys):
    tiny_pipeline.set_progress_bar_config(desc="painting here", disable=False)
    run(tiny_pipeline, scene_files, progress=None)
    assert "painting here" in capsys.readouterr().err
    tiny_pipeline.set_progress_bar_config(disable=True)
    run(tiny_pipeline, scene_files, progress=None)
    assert "painting" not in capsys.readouterr().err


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offloading_moves_the_models_to_run_them_and_paints_the_same(tiny_pipeline, scene_files, monkeypatch, offload):
    from subject_inpainting import pipeline as pipeline_module

    before = run(tiny_pipeline, scene_files, seed=5)
    moves = []
    real_move = pipeline_module.move
    monkeypatch.setattr(
        pipeline_module, "move", lambda m, *a: (moves.append((type(m).__name__, *a)), real_move(m, *a))[1]
    )
    getattr(tiny_pipeline, f"enable_{offload}_cpu_offload")("cpu")
    assert tiny_pipeline.execution_device == torch.device("cpu")
    after = run(tiny_pipeline, scene_files, seed=5)
    assert np.array_equal(np.asarray(before.images[0]), np.asarray(after.images[0]))
    if offload == "model":  # each model to the execution device to run, and back to the CPU after
        names = [m for m, *_ in moves]
        for model in ("ReferenceEncoder", "AutoencoderKL", "UNet2DConditionModel"):
            assert names.count(model) >= 2, (model, names)
        assert moves[-1][1:] == (torch.device("cpu"),)


def test_a_prepared_scene_paints_as_its_pictures_and_takes_nothing_else(tiny_pipeline, scene_files):
    prepared = tiny_pipeline.image_processor.prepare(
        scene_files["scene"], scene_files["reference"], scene_files["mask"]
    )
    a = tiny_pipeline(prepared, None, num_inference_steps=3, generator=torch.Generator().manual_seed(2), progress=False)
    b = run(tiny_pipeline, scene_files, seed=2)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    with pytest.raises(ValueError, match="a prepared scene holds its reference and region"):
        tiny_pipeline(prepared, scene_files["reference"], num_inference_steps=3, progress=False)
