"""The stages of ``subject-inpaint toy train`` (``training.toy`` runs them in order) and the export of a
finished run into the package's embedded weights."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data import toy
from ..models.reference_encoder import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD
from ..models.toy import TOY_CLASS_MAPPER, TOY_EVALUATOR, TOY_RESOLUTION, TOY_UNET, TOY_VAE, TOY_VISION
from .fit import fit


def examples(
    split: str, seed: int, reference_size: int = TOY_VISION["image_size"], cut_reference: bool = True
) -> toy.ToyWorldExamples:
    """Procedural training examples of a split's identities at the toy resolution (``cut_reference``: the
    references show the subject on white, as the toy model's do)."""
    return toy.ToyWorldExamples(
        toy.split_identities(seed, split),
        TOY_RESOLUTION,
        TOY_RESOLUTION,
        reference_size,
        CLIP_IMAGE_MEAN,
        CLIP_IMAGE_STD,
        toy.toy_augment(),
        seed=seed,
        cut_reference=cut_reference,
    )


def _batch(data, step: int, size: int, key: str) -> torch.Tensor:
    return torch.stack([data[step * size + j][key] for j in range(size)])


def _done(folder: Path) -> bool:
    return (folder / "DONE").is_file()


def _finish(folder: Path, info: dict[str, Any]) -> None:
    (folder / "DONE").write_text(json.dumps(info, indent=2) + "\n")


def stage_vae(out: Path, args: argparse.Namespace) -> Path:
    """Train the VAE; returns its folder (diffusers layout)."""
    from diffusers import AutoencoderKL

    folder = out / "vae"
    if _done(folder):
        return folder
    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**TOY_VAE)
    data = examples("train", args.seed)
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
        args.vae_steps,
        1e-3,
        folder / "train",
        args.seed,
        warmup=100,
        label="vae",
        progress=not args.quiet,
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
    args,
    to_input,
    objective: str = "identity",
    cut_reference: bool = True,
) -> list[float]:
    """Train ``model`` (via ``embed(model, pixels) -> (B, D)``) on the references of ``split`` (passed
    through ``to_input``) so that renders of one identity map close together.

    ``objective="identity"`` classifies the split's identities with a cosine-softmax head (the evaluator:
    400 identities, each seen many times). ``"attributes"`` has linear heads on the embedding name each part
    of the identity instead (``toy.ATTRIBUTES``: shape, colours, pattern, marking; mean cross-entropy): the
    vision tower's objective, on the large training split. Naming the parts makes the embedding carry the
    shape of subjects it never saw; a tower that only tells a few hundred identities apart can tell them by
    their colours alone, and the inpainting model, which sees only this embedding, then paints colours and
    patterns without outlines (docs/toy.md).

    ``cut_reference``: train on subjects cut out onto white (the tower: the model's references are) or on
    crops with their background (the evaluator: it scores painted regions, which have one)."""
    data = examples(split, args.seed, cut_reference=cut_reference)
    dim = embed(model, to_input(_batch(data, 0, 2, "reference"))).shape[-1]
    torch.manual_seed(args.seed + 1)
    if objective == "identity":
        heads = {"identity": torch.nn.Linear(dim, len(data.identities), bias=False)}
    else:
        heads = {k: torch.nn.Linear(dim, n) for k, n in toy.ATTRIBUTES.items()}
        part_labels = [toy.attribute_labels(ident) for ident in data.identities]
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
        params, loss_fn, steps, 1e-3, out / name / "train", args.seed, warmup=100, label=name, progress=not args.quiet
    )


def stage_tower(out: Path, args: argparse.Namespace) -> Path:
    """Train the reference encoder's vision tower to name the parts of the training identities' renders."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    folder = out / "tower"
    if _done(folder):
        return folder
    torch.manual_seed(args.seed)
    tower = CLIPVisionModel(CLIPVisionConfig(**TOY_VISION))
    losses = _identity_stage(
        out,
        "tower",
        "train",
        tower,
        lambda m, x: m(pixel_values=x).pooler_output,
        args.tower_steps,
        args,
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


def stage_evaluator(out: Path, args: argparse.Namespace) -> Path:
    """Train the evaluator identity encoder on the evaluator identities only."""
    from ..evaluation.identity import IdentityEncoder

    folder = out / "evaluator"
    if _done(folder):
        return folder
    torch.manual_seed(args.seed + 2)
    evaluator = IdentityEncoder(**TOY_EVALUATOR)
    losses = _identity_stage(
        out,
        "evaluator",
        "evaluator",
        evaluator,
        lambda m, x: m(x),
        args.evaluator_steps,
        args,
        to_unit_range,
        cut_reference=False,
    )
    evaluator.save_pretrained(folder, safe_serialization=True)
    _finish(folder, {"final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])) if losses else None})
    return folder


def stage_init(out: Path, args: argparse.Namespace) -> Path:
    """The starting model: trained VAE and tower, a fresh UNet, class mapper, projection, vector."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionModel

    from ..convert import save_components
    from ..models.build import build_component
    from ..models.configs import RELEASED_LDM_PARAMS, reference_encoder_config, scheduler_config_from_ldm

    folder = out / "init"
    if (folder / "model_index.json").is_file():
        made = json.loads((folder / "scheduler" / "scheduler_config.json").read_text()).get("prediction_type")
        if made != args.base_prediction:
            from .loop import TrainingError

            raise TrainingError(
                f"{out}: its starting model predicts {made}, not {args.base_prediction}; rerun with "
                f"--base-prediction {made}, or use another --out"
            )
        return folder
    torch.manual_seed(args.seed + 3)
    unet = build_component("unet", TOY_UNET)
    enc_cfg = reference_encoder_config(
        TOY_VISION,
        TOY_UNET["cross_attention_dim"],
        class_mapper_layers=TOY_CLASS_MAPPER["layers"],
        class_mapper_heads=TOY_CLASS_MAPPER["heads"],
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
        "scheduler": {**scheduler_config_from_ldm(RELEASED_LDM_PARAMS), "prediction_type": args.base_prediction},
    }
    save_components(components, folder, overwrite=True, extra={"toy_world_seed": args.seed})
    return folder


def stage_base(out: Path, args: argparse.Namespace) -> Path:
    """Base training with the project's loop on procedural toy scenes."""
    from . import train

    folder = out / "model"
    if (folder / "model_index.json").is_file() and _done(folder):
        return folder
    argv = [
        "--model",
        str(out / "init"),
        "--toy-world",
        "--out",
        str(folder),
        "--max-steps",
        str(args.base_steps),
        "--batch-size",
        str(args.base_batch),
        "--lr",
        str(args.base_lr),
        "--warmup-steps",
        "100",
        "--warmup-start",
        "0.01",
        "--seed",
        str(args.seed),
        "--snr-gamma",
        str(args.base_snr_gamma),
        "--ema-decay",
        str(args.base_ema),
        "--lr-decay",
        args.base_lr_decay,
        "--save-every",
        "250",
        "--preview-every",
        "500",
        "--preview-steps",
        "20",
        "--device",
        "cpu",
        "--cut-reference",
    ]
    argv += ["--toy-tilt", str(args.base_tilt)]
    argv += (["--latent-cache", str(args.base_cache)] if args.base_cache else []) + (["--quiet"] if args.quiet else [])
    train.main(train.parse_args(argv))
    _finish(folder, {"steps": args.base_steps, "tilt": args.base_tilt})
    return folder


STAGE_FUNCTIONS = {
    "vae": stage_vae,
    "tower": stage_tower,
    "evaluator": stage_evaluator,
    "init": stage_init,
    "base": stage_base,
}


def export(run: Path, destination: Path, dtype: torch.dtype = torch.float16) -> dict[str, int]:
    """Copy a finished run's model and evaluator into ``destination`` (the package's embedded weights).

    The model's floating-point weights are stored in ``dtype`` (half precision keeps the package under its
    30 MB budget; the pipeline computes in float32 by default, converting as it loads); the evaluator, small,
    stays as trained. The destination's ``model`` and ``evaluator`` are replaced only once the new ones are
    complete. Returns the bytes written per part.
    """
    from safetensors.torch import load_file, save_file

    from ..utils.files import atomic_folder

    run, destination = Path(run), Path(destination)
    for name, marker in (("model", "model_index.json"), ("evaluator", "config.json")):
        if not (run / name / marker).is_file() or not _done(run / name):
            raise FileNotFoundError(f"{run / name}: not a finished toy-training stage (run `toy train` first)")
    sizes = {}
    for name in ("model", "evaluator"):
        with atomic_folder(destination / name, overwrite=True) as tmp:
            shutil.copytree(
                run / name,
                tmp,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(
                    "checkpoints", "previews", "logs", "train", ".*", "DONE", "latent-cache.safetensors"
                ),
            )
            if name == "model":
                index = json.loads((tmp / "model_index.json").read_text())
                init = json.loads((run / "init" / "model_index.json").read_text())
                index["trained_from"] = "subject-inpaint toy train"  # not the run's temporary path
                index["toy_world_seed"] = init.get("toy_world_seed", 0)
                index["toy_train"] = json.loads((run / name / "DONE").read_text())
                (tmp / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
                for path in tmp.rglob("*.safetensors"):
                    state = load_file(str(path))
                    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
                    save_file(state, str(path), metadata={"format": "pt"})
        sizes[name] = sum(p.stat().st_size for p in (destination / name).rglob("*") if p.is_file())
    return sizes
