"""The latent cache: it draws what the VAE would, and a run trained on it writes, reuses and checks it."""

from __future__ import annotations

import pytest
import torch

from subject_inpainting import cli
from subject_inpainting.commands import train as train_command
from subject_inpainting.loaders import load_components
from subject_inpainting.toy import dataset, world
from subject_inpainting.training import latents, loop
from subject_inpainting.training.latents import LatentCache

FAST = ["--device", "cpu", "--quiet", "--warmup-steps", "0", "--batch-size", "2"]


@pytest.fixture(scope="module")
def vae_and_examples(tiny_model_dir):
    components = load_components(tiny_model_dir)
    enc = components["reference_encoder"]
    vae = components["vae"].eval()
    size = vae.config.sample_size
    examples = dataset.ToyWorldExamples(
        world.split_identities(0, "train", 8),
        size,
        size,
        enc.image_size,
        enc.image_mean,
        enc.image_std,
        dataset.toy_augment(),
        length=16,
    )
    return vae, components["scheduler"], examples


def test_cached_draws_equal_the_vae_draws(vae_and_examples):
    vae, schedule, examples = vae_and_examples
    cache = LatentCache.build(examples, vae, 4, batch=3, progress=False, dtype=torch.float32)
    assert len(cache) == 4
    pixels = loop._collate([examples[i] for i in range(4)], "cpu")
    cached = loop._collate([cache[i] for i in range(4)], "cpu")
    assert torch.equal(cached["reference"], pixels["reference"])
    a = loop._draw(pixels, vae, schedule, 0.3, torch.Generator().manual_seed(5))
    b = loop._draw(cached, vae, schedule, 0.3, torch.Generator().manual_seed(5))
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        torch.testing.assert_close(x.float(), y.float(), atol=1e-4, rtol=1e-4)
    other = loop._draw(cached, vae, schedule, 0.3, torch.Generator().manual_seed(6))
    assert not torch.allclose(other[0], b[0])  # the draws come from the generator


def test_worker_processes_make_the_same_cache(vae_and_examples):
    vae, _, examples = vae_and_examples
    inline = LatentCache.build(examples, vae, 5, batch=2, progress=False)
    workers = LatentCache.build(examples, vae, 5, batch=2, progress=False, num_workers=2)
    assert all(torch.equal(inline.tensors[k], workers.tensors[k]) for k in inline.tensors)


def test_cache_saves_and_loads_in_half_precision(vae_and_examples, tmp_path):
    vae, _, examples = vae_and_examples
    cache = LatentCache.build(examples, vae, 3, progress=False)
    path = cache.save(tmp_path / "c.safetensors")
    again = LatentCache.load(path)
    assert {v.dtype for v in again.tensors.values()} == {torch.float16}
    assert torch.equal(again[2]["scene_mean"], cache[2]["scene_mean"])
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left
    with pytest.raises(ValueError, match="expected 1 to 16"):
        LatentCache.build(examples, vae, 17, progress=False)


@pytest.mark.slow
def test_a_run_on_the_cache_writes_it_once_and_checks_its_size(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SI_NO_TENSORBOARD", "1")
    out = tmp_path / "run"
    argv = ["--model", str(tiny_model_dir), "--toy-world", "--out", str(out), "--latent-cache", "6", *FAST]
    first = train_command.base_training(
        train_command.parse_train_args([*argv, "--max-steps", "2", "--save-every", "2"])
    )
    assert first["step"] == 2 and (out / "latent-cache.safetensors").is_file()
    built = LatentCache.load(out / "latent-cache.safetensors")

    def no_build(*args, **kwargs):
        raise AssertionError("the cache of an earlier run must be reused")

    monkeypatch.setattr(LatentCache, "build", no_build)
    more = train_command.base_training(train_command.parse_train_args([*argv, "--max-steps", "4", "--save-every", "2"]))
    assert more["step"] == 4 and len(more["losses"]) == 2  # resumed on the same cache
    assert torch.equal(
        LatentCache.load(out / "latent-cache.safetensors").tensors["reference"], built.tensors["reference"]
    )

    bad = ["train", "--model", str(tiny_model_dir), "--toy-world", "--out", str(tmp_path / "r2"), *FAST]
    assert cli.main([*bad, "--latent-cache", "0", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--latent-cache: expected a whole number between 1 and" in err and "\n" not in err


def test_a_pool_that_does_not_fit_in_memory_is_refused_before_encoding(tiny_model_dir, tmp_path, monkeypatch):
    import subject_inpainting.utils as utils

    monkeypatch.setenv("SI_NO_TENSORBOARD", "1")
    monkeypatch.setattr(utils, "available_memory", lambda: 1000)  # bytes
    encoded = []
    monkeypatch.setattr(latents, "encode_example", lambda *a, **k: encoded.append(1))
    argv = ["--model", str(tiny_model_dir), "--toy-world", "--out", str(tmp_path / "run"), "--latent-cache", "6", *FAST]
    with pytest.raises(
        ValueError, match=r"a latent cache of 6 examples needs about .* of memory, and 1000 bytes is available"
    ):
        train_command.base_training(train_command.parse_train_args([*argv, "--max-steps", "1"]))
    assert not encoded and not (tmp_path / "run" / "latent-cache.safetensors").exists()
