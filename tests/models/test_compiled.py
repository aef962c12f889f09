"""Compiled UNets (``subject_inpainting.models.compiled``): the OpenVINO backend gives the eager UNet's
predictions, converts once per input layout and again after a weight change, and runs what it cannot express
eagerly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conftest import tiny_components
from subject_inpainting.models.compiled import OpenVINOForward, compile_unet
from subject_inpainting.models.token_merging import TokenMergingConfig, merged_tokens
from subject_inpainting.pipeline import SubjectInpaintPipeline

# OpenVINO's runtime stays loaded once imported; these tests keep it out of the test session's process.
pytestmark = pytest.mark.fresh_process


def unet_inputs(unet, batch: int, seed: int = 0, length: int = 1):
    g = torch.Generator().manual_seed(seed)
    side = unet.config.sample_size
    sample = torch.randn(batch, unet.config.in_channels, side, side, generator=g)
    context = torch.randn(batch, length, unet.config.cross_attention_dim, generator=g)
    return sample, torch.full((batch,), 401, dtype=torch.long), context


def eager(unet, sample, t, context, **kwargs):
    with torch.no_grad():
        return type(unet).forward(unet, sample, t, encoder_hidden_states=context, **kwargs).sample


def test_unknown_backend_is_refused():
    unet = tiny_components()["unet"]
    with pytest.raises(ValueError, match="backend must be one of inductor, openvino, got 'tvm'"):
        compile_unet(unet, "tvm")


@pytest.fixture
def ov_unet():
    pytest.importorskip("openvino")
    unet = tiny_components()["unet"].eval()
    compile_unet(unet, "openvino")
    return unet


def test_openvino_predicts_as_eager_for_every_batch_size_from_one_conversion(ov_unet):
    for batch in (2, 1, 3):
        sample, t, context = unet_inputs(ov_unet, batch, seed=batch)
        with torch.no_grad():
            out = ov_unet(sample, t, encoder_hidden_states=context).sample
        expected = eager(ov_unet, sample, t, context)
        assert out.shape == expected.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert ov_unet.forward.converted == 1 and ov_unet.forward.eager_calls == 0
    # a scalar timestep is broadcast over the batch, as the eager UNet does
    sample, _, context = unet_inputs(ov_unet, 2)
    with torch.no_grad():
        out = ov_unet(sample, 401, encoder_hidden_states=context, return_dict=False)[0]
    torch.testing.assert_close(out, eager(ov_unet, sample, torch.tensor(401), context), rtol=1e-4, atol=1e-4)


def test_openvino_converts_again_after_a_weight_change(ov_unet):
    sample, t, context = unet_inputs(ov_unet, 2)
    with torch.no_grad():
        before = ov_unet(sample, t, encoder_hidden_states=context).sample
        ov_unet.conv_out.bias.add_(0.5)  # in place, as a training step or a loaded subject changes weights
        after = ov_unet(sample, t, encoder_hidden_states=context).sample
    assert ov_unet.forward.converted == 2
    torch.testing.assert_close(after, before + 0.5, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after, eager(ov_unet, sample, t, context), rtol=1e-4, atol=1e-4)


def test_openvino_runs_eager_what_it_cannot_express(ov_unet):
    sample, t, context = unet_inputs(ov_unet, 2, length=3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])  # contexts of different lengths, padded
    with torch.no_grad(), pytest.warns(UserWarning, match="runs eager the UNet calls with an attention mask"):
        out = ov_unet(sample, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample
    assert ov_unet.forward.eager_calls == 1 and ov_unet.forward.converted == 0
    assert torch.equal(out, eager(ov_unet, sample, t, context, encoder_attention_mask=mask))
    # a hook on a layer must see the layer run
    seen = []
    handle = ov_unet.conv_out.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    with torch.no_grad(), pytest.warns(UserWarning, match="with hooks on the UNet's layers"):
        ov_unet(sample, t, encoder_hidden_states=context[:, :1])
    handle.remove()
    assert len(seen) == 1 and ov_unet.forward.eager_calls == 2 and ov_unet.forward.converted == 0
    # each reason warns once, not on every step
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        ov_unet(sample, t, encoder_hidden_states=context, encoder_attention_mask=mask)
    assert ov_unet.forward.eager_calls == 3
    assert ov_unet.forward.eager_calls == 3 and ov_unet.forward.converted == 0


def test_openvino_merges_tokens_inside_its_graph_as_eager_does(ov_unet):
    twin = tiny_components()["unet"].eval()  # the same weights, eager
    sample, t, context = unet_inputs(ov_unet, 2)
    config, size = TokenMergingConfig(0.5), tuple(sample.shape[-2:])

    def merged_calls(unet, calls=3):
        with torch.no_grad(), merged_tokens([unet], config, size, config.pattern_generator()) as installed:
            outs = [unet(sample, t, encoder_hidden_states=context).sample for _ in range(calls)]
        return outs, installed

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        compiled, _ = merged_calls(ov_unet)
    expected, installed = merged_calls(twin)
    assert all(p.merged_calls in (0, 3) for p in installed) and any(p.merged_calls for p in installed)
    plain = eager(twin, sample, t, context)
    for out, want in zip(compiled, expected, strict=True):
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)  # each call its own tiles, as eager
        assert (out - plain).abs().max() > 1e-3  # and merging does change the prediction
    assert not torch.equal(expected[0], expected[1])
    assert ov_unet.forward.converted == 1 and ov_unet.forward.eager_calls == 0
    # another ratio is another graph; the unmerged graph stays apart
    half = TokenMergingConfig(0.25)
    with torch.no_grad(), merged_tokens([ov_unet], half, size, half.pattern_generator()):
        ov_unet(sample, t, encoder_hidden_states=context)
    with torch.no_grad():
        unmerged = ov_unet(sample, t, encoder_hidden_states=context).sample
    torch.testing.assert_close(unmerged, plain, rtol=1e-4, atol=1e-4)
    assert ov_unet.forward.converted == 3


def test_openvino_runs_deep_cache_as_two_graphs_and_predicts_as_eager(ov_unet):
    from subject_inpainting.sampling.deepcache import DeepCacheUNet

    twin = tiny_components()["unet"].eval()  # the same weights, eager
    calls = [unet_inputs(ov_unet, batch, seed=k) for k, batch in enumerate((2, 2, 2, 2, 1, 1))]
    for branch in (0, 1):
        compiled, plain = DeepCacheUNet(ov_unet, 3, branch), DeepCacheUNet(twin, 3, branch)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")  # no call falls back
            for sample, t, context in calls:
                out, expected = (u(sample, t, context).sample for u in (compiled, plain))
                torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(compiled.kept, plain.kept, rtol=1e-4, atol=1e-4)
        # whole, shallow, shallow, whole; a new batch size: whole, shallow. Batch sizes share a graph.
        assert (compiled.full_calls, compiled.cached_calls) == (plain.full_calls, plain.cached_calls) == (3, 3)
    assert ov_unet.forward.converted == 4 and ov_unet.forward.eager_calls == 0  # two graphs per branch
    # with token merging: two more graphs, the tiles drawn in the eager layers' order
    config = TokenMergingConfig(0.5)
    outs = []
    for u, wrapped in ((ov_unet, compiled), (twin, plain)):
        wrapped.reset()
        with torch.no_grad(), merged_tokens([u], config, calls[0][0].shape[-2:], config.pattern_generator()):
            outs.append([wrapped(*c).sample for c in calls])
    for out, expected in zip(*outs, strict=True):
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert ov_unet.forward.eager_calls == 0 and ov_unet.forward.converted == 6


def test_openvino_refuses_what_it_cannot_run():
    pytest.importorskip("openvino")
    unet = tiny_components()["unet"].to(torch.float16)
    with pytest.raises(ValueError, match=r"computes in float32, bfloat16; the UNet is in torch\.float16"):
        OpenVINOForward(unet)


def test_openvino_in_bfloat16_is_near_eager():
    pytest.importorskip("openvino")
    unet = tiny_components()["unet"].eval().to(torch.bfloat16)
    compile_unet(unet, "openvino")
    sample, t, context = unet_inputs(unet, 2)
    with torch.no_grad():
        out = unet(sample.bfloat16(), t, encoder_hidden_states=context.bfloat16()).sample
    assert out.dtype == torch.bfloat16 and unet.forward.converted == 1
    reference = eager(unet, sample.bfloat16(), t, context.bfloat16()).float()
    error = (out.float() - reference).abs().max() / reference.abs().max()
    assert error < 0.05  # both round to bfloat16 (8 bits of mantissa), at different places


@pytest.mark.parametrize(
    "options, graphs",
    [({"preset": "original", "num_inference_steps": 3}, 1), ({"preset": "fast"}, 2)],
    ids=["original", "fast"],
)
def test_a_compiled_pipeline_paints_the_eager_picture(scene_files, options, graphs):
    pytest.importorskip("openvino")
    pictures = []
    for backend in (None, "openvino"):
        pipe = SubjectInpaintPipeline(**tiny_components())
        if backend:
            assert pipe.compile(backend) is pipe
        result = pipe(
            scene_files["scene"],
            scene_files["reference"],
            mask=scene_files["mask"],
            generator=torch.Generator().manual_seed(0),
            progress=False,
            **options,
        )
        pictures.append(np.asarray(result.images[0], dtype=np.int16))
    assert pipe.unet.forward.converted == graphs and pipe.unet.forward.eager_calls == 0
    assert np.abs(pictures[0] - pictures[1]).max() <= 1
