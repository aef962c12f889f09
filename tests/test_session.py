"""``Session``: one model loaded once, subjects switched, requests seeded, grouped and painted, errors per request."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subject_inpainting import PaintRequest, PaintSettings, Session
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.session import ModelLoadError, SubjectError

FAST = PaintSettings(num_inference_steps=3)


def request(files, seed=0, settings=FAST, **more):
    return PaintRequest(files["scene"], files["reference"], mask=files["mask"], seed=seed, settings=settings, **more)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def test_a_request_paints_what_the_pipeline_paints_with_its_seed(tiny_model_dir, scene_files):
    session = Session(tiny_model_dir, device="cpu", dtype="float32")
    (result,) = session.paint([request(scene_files, seed=11)])
    assert result.ok and len(result.images) == 1
    pipe = SubjectInpaintPipeline.from_pretrained(tiny_model_dir)
    with session._threads():  # the thread count the session paints this model on: one rounds unlike two
        direct = pipe(
            scene_files["scene"],
            scene_files["reference"],
            mask=scene_files["mask"],
            settings=FAST,
            generator=torch.Generator().manual_seed(11),
            progress=False,
        )
    assert np.array_equal(pixels(result.images[0]), pixels(direct.images[0]))
    assert np.array_equal(pixels(session.paint_one(request(scene_files, seed=11))[0]), pixels(result.images[0]))


def test_requests_of_one_group_are_batched_and_paint_as_alone(tiny_model_dir, scene_files, scenes_per_call):
    session = Session(tiny_model_dir, device="cpu", dtype="float32")
    requests = [request(scene_files, seed=s) for s in (1, 2, 3)]
    other = request(scene_files, seed=4, settings=PaintSettings(num_inference_steps=3, guidance_scale=2.0))
    together = session.paint([*requests, other], batch_size=4)
    assert scenes_per_call == [3, 1]  # the three of one settings in one call; other settings apart
    alone = session.paint(requests, batch_size=1)
    for a, b in zip(together[:3], alone, strict=True):
        assert np.abs(pixels(a.images[0]) - pixels(b.images[0])).max() <= 1  # float rounding of a batch
    assert not np.array_equal(pixels(together[0].images[0]), pixels(together[1].images[0]))  # seeds differ


def test_a_bad_request_fails_alone(tiny_model_dir, scene_files, tmp_path, scenes_per_call):
    session = Session(tiny_model_dir, device="cpu", dtype="float32")
    missing = PaintRequest(tmp_path / "missing.png", scene_files["reference"], box=(0, 0, 8, 8), settings=FAST)
    outside = PaintRequest(scene_files["scene"], scene_files["reference"], box=(40, 30, 90, 90), settings=FAST)
    results = session.paint([request(scene_files), missing, outside, request(scene_files, seed=5)], batch_size=4)
    assert [r.ok for r in results] == [True, False, False, True]
    assert "missing.png: no such file" in str(results[1].error) and results[1].images == []
    assert "outside" in str(results[2].error)
    assert scenes_per_call == [2]  # the good two in one call


def test_a_batched_call_that_fails_is_painted_again_one_by_one(tiny_model_dir, scene_files, monkeypatch):
    session = Session(tiny_model_dir, device="cpu", dtype="float32")
    real = SubjectInpaintPipeline.__call__

    def fails_for_two(self, scene, *args, **kwargs):
        if isinstance(scene, list):
            raise RuntimeError("out of memory")
        return real(self, scene, *args, **kwargs)

    monkeypatch.setattr(SubjectInpaintPipeline, "__call__", fails_for_two)
    results = session.paint([request(scene_files, seed=1), request(scene_files, seed=2)], batch_size=2)
    assert all(r.ok and len(r.images) == 1 for r in results)


def test_a_subject_loads_once_and_a_failed_one_fails_fast(tiny_model_dir, tiny_lora_subject, scene_files, tmp_path):
    session = Session(tiny_model_dir, device="cpu", dtype="float32")
    pipe = session.pipeline
    loads = []
    real = pipe.load_subject
    pipe.load_subject = lambda subject, **kw: (loads.append(subject), real(subject, **kw))[1]
    with_subject = [request(scene_files, seed=s, subject=tiny_lora_subject) for s in (1, 2)]
    results = session.paint([*with_subject, request(scene_files, seed=3)])
    assert all(r.ok for r in results) and loads == [tiny_lora_subject]
    assert pipe.subject is None  # back to the model alone for the last request
    by_reference = PaintRequest(
        scene_files["scene"], mask=scene_files["mask"], subject=tiny_lora_subject, settings=FAST
    )
    assert session.paint([by_reference])[0].ok  # the reference: the subject's first reference crop
    stranger = tmp_path / "not-a-subject"
    stranger.mkdir()
    bad = [request(scene_files, subject=stranger), request(scene_files, seed=1, subject=stranger)]
    first, second = session.paint(bad)
    assert isinstance(first.error, SubjectError) and second.error is first.error  # not loaded a second time
    no_crops = PaintRequest(scene_files["scene"], mask=scene_files["mask"], subject=stranger, settings=FAST)
    assert "has no reference crops" in str(session.paint([no_crops])[0].error)


def test_a_model_that_does_not_load_is_one_line_once(tmp_path, scene_files, monkeypatch):
    session = Session(tmp_path / "nowhere", device="cpu")
    results = session.paint([request(scene_files), request(scene_files, seed=1)])
    assert all(isinstance(r.error, ModelLoadError) for r in results)
    assert str(results[0].error).startswith(f"model {tmp_path / 'nowhere'}:") and "\n" not in str(results[0].error)
    assert results[1].error is results[0].error


def test_seeds_and_settings_are_checked_when_the_request_is_made(scene_files):
    with pytest.raises(ValueError, match=r"seed: expected a whole number between 0 and"):
        request(scene_files, seed=-1)
    with pytest.raises(TypeError, match="settings must be a PaintSettings, got dict"):
        PaintRequest(scene_files["scene"], settings={"num_inference_steps": 3})
    g1, g2 = Session.generator(7), Session.generator(7)
    assert torch.equal(torch.randn(3, generator=g1), torch.randn(3, generator=g2))
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        Session().paint([], batch_size=0)


def test_an_exception_of_the_callers_callback_stops_the_whole_call(tiny_model_dir, scene_files, scenes_per_call):
    session = Session(tiny_model_dir, device="cpu", dtype="float32")
    steps = []

    class Cancelled(Exception):
        pass

    def cancel_at_the_second_step(pipe, step, timestep, tensors):
        steps.append(step)
        if step == 1:
            raise Cancelled
        return tensors

    batch = [request(scene_files, seed=s) for s in (1, 2)]
    with pytest.raises(Cancelled):
        session.paint(batch, batch_size=2, callback_on_step_end=cancel_at_the_second_step)
    assert scenes_per_call == [2] and steps == [0, 1]  # neither recorded as a failure nor painted again one by one
    with pytest.raises(Cancelled):
        session.paint(batch[:1], callback_on_step_end=cancel_at_the_second_step)


def test_a_small_model_paints_on_one_thread_and_the_count_is_restored(tiny_model_dir, scene_files):
    from subject_inpainting.devices import SMALL_UNET, threads_for

    seen = []

    def record(pipe, step, timestep, tensors):
        seen.append(torch.get_num_threads())
        return tensors

    before = torch.get_num_threads()
    session = Session(tiny_model_dir, device="cpu", dtype="float32")
    session.paint([request(scene_files)], callback_on_step_end=record)
    assert seen and set(seen) == {1} and torch.get_num_threads() == before
    seen.clear()
    Session(tiny_model_dir, device="cpu", dtype="float32", threads=None).paint(
        [request(scene_files)], callback_on_step_end=record
    )
    assert set(seen) == {before}
    unet = session.pipeline.unet
    size = sum(p.numel() for p in unet.parameters()) * unet.config.sample_size**2
    assert size < SMALL_UNET and threads_for(unet) == 1 and threads_for(unet, 3) == 3
    unet.register_to_config(sample_size=int((SMALL_UNET / size) ** 0.5 + 1) * unet.config.sample_size)
    assert threads_for(unet) is None  # a big model keeps PyTorch's own (every core)
    with pytest.raises(ValueError, match="threads must be 'auto', None or a whole number >= 1, got 0"):
        Session(threads=0)


def test_the_session_loads_its_model_with_int8_layers_as_asked(tiny_model_dir, scene_files, monkeypatch):
    from subject_inpainting.models.int8 import int8_layers, int8_unavailable

    auto = Session(tiny_model_dir, device="cpu", dtype="float32")
    assert auto.int8 == "auto" and int8_layers(auto.pipeline.unet) == []  # the tiny model is too small to pay
    if int8_unavailable() is None:
        on = Session(tiny_model_dir, device="cpu", dtype="float32", int8="on")
        (result,) = on.paint([request(scene_files)])
        assert result.ok and all(f.calls > 0 for f in int8_layers(on.pipeline.unet))
    monkeypatch.setattr("subject_inpainting.models.int8.int8_unavailable", lambda: "no oneDNN here")
    refused = Session(tiny_model_dir, device="cpu", dtype="float32", int8="on")
    with pytest.raises(ModelLoadError, match="int8 on: int8 layers cannot run: no oneDNN here"):
        refused.pipeline  # noqa: B018 (loading is what raises)
    (result,) = refused.paint([request(scene_files)])
    assert isinstance(result.error, ModelLoadError)  # reported per request, not raised
    with pytest.raises(ValueError, match="int8 must be one of auto, on, off, got 'yes'"):
        Session(int8="yes")


def test_a_request_is_read_once(tiny_model_dir, scene_files, monkeypatch):
    from subject_inpainting import image_processor

    reads = []
    real = image_processor.imaging.load_scene_and_mask
    monkeypatch.setattr(image_processor.imaging, "load_scene_and_mask", lambda *a: (reads.append(1), real(*a))[1])
    session = Session(tiny_model_dir, device="cpu", dtype="float32")
    results = session.paint([request(scene_files, seed=1), request(scene_files, seed=2)], batch_size=2)
    assert all(r.ok for r in results) and len(reads) == 2  # checked before the batch, not read again in it
