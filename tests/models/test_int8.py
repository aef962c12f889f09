import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_components
from subject_inpainting.models.int8 import (
    Int8Config,
    Int8Forward,
    activation_range,
    dequantize_int8,
    int8_layers,
    int8_unavailable,
    quantize_activation,
    quantize_int8,
    quantize_weight,
)
from subject_inpainting.pipeline import SubjectInpaintPipeline

pytestmark = pytest.mark.skipif(int8_unavailable() is not None, reason=str(int8_unavailable()))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def layers(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(48, 64, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(64, 48, 1))


def test_weights_round_to_int8_per_output_channel():
    w = torch.randn(6, 5, 3, 3) * torch.tensor([1e-3, 1.0, 10.0, 0.1, 5.0, 0.0]).view(-1, 1, 1, 1)
    codes, scales = quantize_weight(w)
    assert codes.dtype == torch.int8 and scales.shape == (6,)
    assert codes.abs().amax(dim=(1, 2, 3)).tolist() == [127] * 5 + [0]  # each channel spans its own range
    assert scales[-1] == 1.0  # an all-zero channel
    err = (codes.float() * scales.view(-1, 1, 1, 1) - w).abs()
    assert (err <= scales.view(-1, 1, 1, 1) / 2 + 1e-7).all()


def test_activations_take_one_affine_code_that_holds_zero():
    x = torch.tensor([[0.5, 2.0], [1.0, 3.0]])
    scale, zero_point = activation_range(x)
    assert zero_point == 0 and math.isclose(scale, 3.0 / 255)  # the range widened down to 0
    q = quantize_activation(x, scale, zero_point)
    assert q.dtype == torch.uint8 and q.max() == 255
    assert torch.allclose(scale * (q.float() - zero_point), x, atol=scale / 2)
    scale, zero_point = activation_range(torch.tensor([-2.0, 1.0]))
    assert zero_point == 170 and quantize_activation(torch.zeros(1), scale, zero_point).item() == zero_point
    assert activation_range(torch.zeros(3)) == (1.0, 0)
    assert activation_range(torch.tensor([1.0, math.nan])) is None
    assert activation_range(torch.tensor([1.0, -math.inf])) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_layers_compute_near_the_float_ones_in_the_input_dtype(dtype):
    model = layers().to(dtype)
    linear = torch.nn.Linear(64, 96).to(dtype)
    x, tokens = torch.randn(2, 48, 12, 12, dtype=dtype), torch.randn(2, 7, 64, dtype=dtype)
    with torch.no_grad():
        ref, ref_tokens = model(x), linear(tokens)
        assert quantize_int8(model) == 2 and quantize_int8(linear) == 1
        out, out_tokens = model(x), linear(tokens)
    assert out.dtype == dtype and out.shape == ref.shape and out_tokens.shape == ref_tokens.shape
    assert 1e-4 < relative_error(out, ref) < 0.03 and 1e-4 < relative_error(out_tokens, ref_tokens) < 0.03
    assert [f.calls for f in int8_layers(model)] == [1, 1]


def test_small_layers_and_other_kinds_stay_float():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 64, 3, padding=1),  # a latent's 4 channels in
        torch.nn.Conv2d(64, 64, 3, padding=1, groups=2),
        torch.nn.Conv2d(64, 64, 3, padding=1, padding_mode="reflect"),
        torch.nn.Conv2d(64, 64, 3, padding="same"),
        torch.nn.Conv2d(64, 64, 3, padding=1),
    )
    assert quantize_int8(model) == 1 and isinstance(model[4].__dict__["forward"], Int8Forward)
    assert quantize_int8(model) == 0  # quantized already
    assert quantize_int8(model[:4], Int8Config(min_channels=4)) == 1  # the first layer now
    linears = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    assert quantize_int8(linears, Int8Config(linears=False)) == 0
    with pytest.raises(ValueError, match="min_channels must be a whole number >= 1, got 0"):
        Int8Config(min_channels=0)


def test_dequantizing_gives_back_the_float_layers_exactly():
    model, x = layers(), torch.randn(1, 48, 8, 8)
    keys = list(model.state_dict())
    with torch.no_grad():
        ref = model(x)
        quantize_int8(model)
        assert list(model.state_dict()) == keys  # nothing new to save
        assert not torch.equal(model(x), ref)
        assert dequantize_int8(model) == 2 and int8_layers(model) == []
        assert torch.equal(model(x), ref)


def test_changed_weights_are_packed_again():
    model, x = layers(), torch.randn(1, 48, 8, 8)
    quantize_int8(model)
    with torch.no_grad():
        before = model(x)
        for p in model.parameters():
            p.mul_(2)  # in place: the packed weights are stale
        doubled = model(x)
        model[2].weight = torch.nn.Parameter(model[2].weight * 0.5)  # replaced
        model[2].bias.data = model[2].bias * 0.5  # new data, same parameter
        halved = model(x)
    dequantize_int8(model)
    with torch.no_grad():
        assert relative_error(halved, model(x)) < 0.03  # the float layers with both changes
    assert relative_error(doubled, before) > 0.5 and relative_error(halved, doubled) > 0.3


def test_gradients_nonfinite_inputs_and_other_dtypes_run_the_float_forward():
    model, x = layers(), torch.randn(1, 48, 8, 8)
    quantize_int8(model)
    first = int8_layers(model)[0]
    out = model(x.requires_grad_())  # gradients flow through the float layers
    out.sum().backward()
    assert model[0].weight.grad is not None and first.float_calls == 1 and first.calls == 0
    with torch.no_grad():
        assert torch.isnan(model(torch.full((1, 48, 8, 8), math.nan))).all()
        assert model(x[0]).shape == (48, 8, 8)  # unbatched
        model.double()
        model(x.double())
    assert first.float_calls == 4 and first.calls == 0


def test_a_copy_packs_its_own_weights():
    model, x = layers(), torch.randn(1, 48, 8, 8)
    quantize_int8(model)
    with torch.no_grad():
        before = model(x)
        twin = copy.deepcopy(model)
        assert all(f.module is m for f, m in zip(int8_layers(twin), (twin[0], twin[2]), strict=True))
        for p in twin.parameters():
            p.zero_()
        assert torch.equal(model(x), before) and twin(x).abs().max() == 0


def test_quantizing_refuses_a_model_not_on_the_cpu():
    model = layers().to("meta")
    with pytest.raises(ValueError, match="int8 layers run on the CPU; the model is on meta"):
        quantize_int8(model)


def paint(pipe: SubjectInpaintPipeline, scene_files: dict, **kwargs) -> np.ndarray:
    out = pipe(
        Image.open(scene_files["scene"]),
        Image.open(scene_files["reference"]),
        mask=Image.open(scene_files["mask"]),
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=4,
        progress=False,
        **kwargs,
    )
    return np.asarray(out.images[0]).astype(int)


def test_an_int8_pipeline_paints_near_the_float_one(scene_files):
    pipe = SubjectInpaintPipeline(**tiny_components())
    ref = paint(pipe, scene_files)
    pipe.enable_int8()
    layers_on = int8_layers(pipe.unet)
    out = paint(pipe, scene_files)
    assert len(layers_on) > 20 and all(f.calls > 0 for f in layers_on)
    mask = scene_files["mask_array"]
    assert np.array_equal(out[~mask], ref[~mask])  # pasted back
    assert 0 < np.abs(out - ref)[mask].mean() < 6
    with pytest.raises(ValueError, match="the UNet runs int8 layers, which do not compile"):
        pipe.compile("inductor")
    pipe.disable_int8()
    assert int8_layers(pipe.unet) == [] and np.array_equal(paint(pipe, scene_files), ref)


def test_int8_reaches_a_fine_tuned_subject_unet(reference_dir, scene_files):
    pipe = SubjectInpaintPipeline.from_pretrained(reference_dir / "pbe-tiny").enable_int8()
    pipe.load_subject(reference_dir / "subject-tiny")  # a fully fine-tuned UNet, quantized on loading
    assert pipe.subject.unet is not None and len(int8_layers(pipe.subject.unet)) == len(int8_layers(pipe.unet))
    paint(pipe, scene_files)
    assert all(f.calls > 0 for f in int8_layers(pipe.subject.unet))
    pipe.disable_int8()
    assert int8_layers(pipe.subject.unet) == []


def test_a_lora_subject_wraps_the_int8_layers(tiny_model_dir, tiny_lora_subject, scene_files):
    pipe = SubjectInpaintPipeline.from_pretrained(tiny_model_dir).enable_int8()
    count = len(int8_layers(pipe.unet))
    plain = paint(pipe, scene_files)
    pipe.load_subject(tiny_lora_subject)
    assert len(int8_layers(pipe.unet)) == count  # the adapters wrap the projections, which stay int8
    for f in int8_layers(pipe.unet):
        f.calls = 0
    with_subject = paint(pipe, scene_files)
    assert all(f.calls > 0 for f in int8_layers(pipe.unet)) and not np.array_equal(with_subject, plain)
    pipe.unload_subject()
    assert len(int8_layers(pipe.unet)) == count and np.array_equal(paint(pipe, scene_files), plain)


def test_int8_refuses_a_compiled_unet():
    pipe = SubjectInpaintPipeline(**tiny_components())
    pipe.unet.forward = pipe.unet.forward  # what compiling does: a forward of the instance's own
    with pytest.raises(ValueError, match="the UNet is compiled; int8 layers run in an eager UNet only"):
        pipe.enable_int8()
