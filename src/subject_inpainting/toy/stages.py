"""The stages of ``subject-inpaint toy train`` (``toy.recipe`` runs them in order): each trains one part of
the toy model on the toy world, resumably, and marks its folder DONE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..models.configs import MODEL_SIZES
from ..models.reference_encoder import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD
from ..training.fit import fit
from . import world
from .dataset import ToyWorldExamples, toy_augment
from .evaluator import EVALUATOR_CONFIG
from .recipe import ToyRecipe

TOY = MODEL_SIZES["toy"]


def examples(
    split: str, seed: int, reference_size: int = TOY.vision["image_size"], cut_reference: bool = True
) -> ToyWorldExamples:
    """Procedural training examples of a split's identities at the toy resolution (``cut_reference``: the
    references show the subject on white, as the toy model's do)."""
    return ToyWorldExamples(
        world.split_identities(seed, split),
        TOY.resolution,
        TOY.resolution,
        reference_size,
        CLIP_IMAGE_MEAN,
        CLIP_IMAGE_STD,
        toy_augment(),
        seed=seed,
        cut_reference=cut_reference,
    )


def _batch(data, step: int, size: int, key: str) -> torch.Tensor:
    return torch.stack([data[step * size + j][key] for j in range(size)])


def finished(folder: Path) -> bool:
    """Whether the stage writing ``folder`` finished (its DONE marker)."""
    return (folder / "DONE").is_file()


def _finish(folder: Path, info: dict[str, Any]) -> None:
    (folder / "DONE").write_text(json.dumps(info, indent=2) + "\n")


def stage_vae(out: Path, recipe: ToyRecipe) -> Path:
    """Train the VAE; returns its folder (diffusers layout)."""
    from diffusers import AutoencoderKL

    folder = out / "vae"
    if finished(folder):
        return folder
    torch.manual_seed(recipe.seed)
    vae = AutoencoderKL(**TOY.vae)
    data = examples("train", recipe.seed)
    batch = 16

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        x = _batch(data, step, batch, "pixel_values")
        posterior = vae.encode(x).latent_dist
        rec = vae.decode(posterior.sample(generator=g)).sample
        kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
        return F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl

    params = dict(vae.named_parameters())
    fit(
        params,
        loss_fn,
        recipe.vae_steps,
        1e-3,
        folder / "train",
        recipe.seed,
        warmup=100,
        label="vae",
        progress=not recipe.quiet,
    )
    with torch.no_grad():  # the scaling factor makes the latents unit-variance, as SD's 0.18215 does
        x = torch.cat([_batch(data, 10**6 + i, 16, "pixel_values") for i in range(8)])
        std = vae.encode(x).latent_dist.mean.std().item()
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        error = F.l1_loss(rec, x).item()
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    vae.save_pretrained(folder, safe_serialization=True)
    _finish(folder, {"latent_std": std, "l1_reconstruction": error})
    return folder


def _identity_stage(
    out: Path,
    name: str,
    split: str,
    model,
    embed,
    steps: int,
    recipe: ToyRecipe,
    to_input,
    objective: str = "identity",
    cut_reference: bool = True,
) -> list[float]:
    """Train ``model`` (via ``embed(model, pixels) -> (B, D)``) on the references of ``split`` (passed
    through ``to_input``) so that renders of one identity map close together.

    ``objective="identity"`` classifies the split's identities with a cosine-softmax head (the evaluator:
    400 identities, each seen many times). ``"attributes"`` has linear heads on the embedding name each part
    of the identity instead (``world.ATTRIBUTES``: shape, colours, pattern, marking; mean cross-entropy): the
    vision tower's objective, on the large training split. Naming the parts makes the embedding carry the
    shape of subjects it never saw; a tower that only tells a few hundred identities apart can tell them by
    their colours alone, and the inpainting model, which sees only this embedding, then paints colours and
    patterns without outlines (docs/toy.md).

    ``cut_reference``: train on subjects cut out onto white (the tower: the model's references are) or on
    crops with their background (the evaluator: it scores painted regions, which have one)."""
    data = examples(split, recipe.seed, cut_reference=cut_reference)
    dim = embed(model, to_input(_batch(data, 0, 2, "reference"))).shape[-1]
    torch.manual_seed(recipe.seed + 1)
    if objective == "identity":
        heads = {"identity": torch.nn.Linear(dim, len(data.identities), bias=False)}
    else:
        heads = {k: torch.nn.Linear(dim, n) for k, n in world.ATTRIBUTES.items()}
        part_labels = [world.attribute_labels(ident) for ident in data.identities]
    batch = 64

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        items = [data[step * batch + j] for j in range(batch)]
        pixels = to_input(torch.stack([it["reference"] for it in items]))
        labels = torch.stack([it["identity"] for it in items])
        features = embed(model, pixels)
        if objective == "identity":
            logits = 16.0 * F.normalize(features, dim=-1) @ F.normalize(heads["identity"].weight, dim=-1).T
            return F.cross_entropy(logits, labels)
        losses = [
            F.cross_entropy(linear(features), torch.tensor([part_labels[int(i)][k] for i in labels]), ignore_index=-1)
            for k, linear in heads.items()
        ]
        return torch.stack(losses).mean()

    params = {f"model.{k}": p for k, p in model.named_parameters()}
    params.update({f"head.{k}.{n}": p for k, linear in heads.items() for n, p in linear.named_parameters()})
    return fit(
        params,
        loss_fn,
        steps,
        1e-3,
        out / name / "train",
        recipe.seed,
        warmup=100,
        label=name,
        progress=not recipe.quiet,
    )


def stage_tower(out: Path, recipe: ToyRecipe) -> Path:
    """Train the reference encoder's vision tower to name the parts of the training identities' renders."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    folder = out / "tower"
    if finished(folder):
        return folder
    torch.manual_seed(recipe.seed)
    tower = CLIPVisionModel(CLIPVisionConfig(**TOY.vision))
    losses = _identity_stage(
        out,
        "tower",
        "train",
        tower,
        lambda m, x: m(pixel_values=x).pooler_output,
        recipe.tower_steps,
        recipe,
        lambda x: x,
        objective="attributes",
    )
    tower.save_pretrained(folder, safe_serialization=True)
    _finish(folder, {"final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])) if losses else None})
    return folder


def to_unit_range(reference: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised references → [-1, 1] pictures (the evaluator's input)."""
    mean = torch.tensor(CLIP_IMAGE_MEAN)[:, None, None]
    std = torch.tensor(CLIP_IMAGE_STD)[:, None, None]
    return (reference * std + mean) * 2 - 1


def stage_evaluator(out: Path, recipe: ToyRecipe) -> Path:
    """Train the evaluator identity encoder on the evaluator identities only."""
    from .evaluator import IdentityEncoder

    folder = out / "evaluator"
    if finished(folder):
        return folder
    torch.manual_seed(recipe.seed + 2)
    evaluator = IdentityEncoder(**EVALUATOR_CONFIG)
    losses = _identity_stage(
        out,
        "evaluator",
        "evaluator",
        evaluator,
        lambda m, x: m(x),
        recipe.evaluator_steps,
        recipe,
        to_unit_range,
        cut_reference=False,
    )
    evaluator.save_pretrained(folder, safe_serialization=True)
    _finish(folder, {"final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])) if losses else None})
    return folder


def stage_init(out: Path, recipe: ToyRecipe) -> Path:
    """The starting model: trained VAE and tower, a fresh UNet, class mapper, projection, vector."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionModel

    from ..loaders import save_components
    from ..models.build import build_component
    from ..models.configs import reference_encoder_config

    folder = out / "init"
    if (folder / "model_index.json").is_file():
        made = json.loads((folder / "scheduler" / "scheduler_config.json").read_text()).get("prediction_type")
        if made != recipe.base_prediction:
            from ..training.loop import TrainingError

            raise TrainingError(
                f"{out}: its starting model predicts {made}, not {recipe.base_prediction}; rerun with "
                f"--base-prediction {made}, or use another --out"
            )
        return folder
    torch.manual_seed(recipe.seed + 3)
    unet = build_component("unet", TOY.unet)
    enc_cfg = reference_encoder_config(
        TOY.vision,
        TOY.unet["cross_attention_dim"],
        class_mapper_layers=TOY.class_mapper["layers"],
        class_mapper_heads=TOY.class_mapper["heads"],
    )
    encoder = build_component("reference_encoder", enc_cfg)
    tower = CLIPVisionModel.from_pretrained(out / "tower")
    state = dict(encoder.state_dict())
    state.update(
        encoder.to_installed_keys(
            {"vision_model." + k.removeprefix("vision_model."): v for k, v in tower.state_dict().items()}
        )
    )
    encoder.load_state_dict(state)
    vae = AutoencoderKL.from_pretrained(out / "vae")
    components = {
        "unet": unet,
        "vae": vae,
        "reference_encoder": encoder,
        "scheduler": {**TOY.schedule, "prediction_type": recipe.base_prediction},
    }
    save_components(components, folder, overwrite=True, extra={"toy_world_seed": recipe.seed})
    return folder


def stage_base(out: Path, recipe: ToyRecipe) -> Path:
    """Base training with the project's loop on procedural toy scenes (``base_spec``)."""
    from ..training import train

    folder = out / "model"
    if (folder / "model_index.json").is_file() and finished(folder):
        return folder
    train.train(base_spec(out, recipe))
    _finish(folder, {"steps": recipe.base_steps, "tilt": recipe.base_tilt})
    return folder


def base_spec(out: Path, recipe: ToyRecipe):
    """The base-training run of the recipe: from ``out/init`` into ``out/model``, on the training split of
    the world the starting model records, references cut out onto white."""
    from ..training.config import TrainConfig
    from ..training.train import TrainSpec
    from .dataset import ToyWorldData

    init = out / "init"
    config = TrainConfig.for_mode(
        "base",
        max_steps=recipe.base_steps,
        batch_size=recipe.base_batch,
        learning_rate=recipe.base_lr,
        warmup_steps=recipe.base_warmup_steps,
        warmup_start=recipe.base_warmup_start,
        seed=recipe.seed,
        snr_gamma=recipe.base_snr_gamma,
        ema_decay=recipe.base_ema,
        lr_decay=recipe.base_lr_decay,
        save_every=recipe.base_save_every,
        preview_every=recipe.base_preview_every,
        preview_steps=recipe.base_preview_steps,
    )
    return TrainSpec(
        model=str(init),
        data=ToyWorldData.for_model(init, tilt=recipe.base_tilt, default=recipe.seed),
        out=out / "model",
        config=config,
        latent_cache=recipe.base_cache or None,
        cut_reference=True,
        device="cpu",
        progress=not recipe.quiet,
    )


STAGE_FUNCTIONS = {
    "vae": stage_vae,
    "tower": stage_tower,
    "evaluator": stage_evaluator,
    "init": stage_init,
    "base": stage_base,
}
