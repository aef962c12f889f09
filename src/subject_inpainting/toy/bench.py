"""``subject-inpaint bench toy``: what the method's parts are worth, measured offline on the toy world.

For held-out identities (never seen in base training) it renders test cases — a scene, the region where
the subject stood, a reference photo from another render, and the truth — fine-tunes subjects from a few
photos, and paints every case under each setting:

- the base model (Paint-by-Example alone) with PLMS-50, DDIM-50 and DPM-Solver++-20;
- subjects fine-tuned without the detail module, with it (one token, as the original) and with a 2×2 grid
  of detail tokens, all with modified guidance at w = 0.8;
- the one-token subject at w ∈ {0, 0.5, 1} (w = 0 is the pretrained model alone);
- a floor: the base model given the reference of an unrelated subject of another shape.

Metrics per setting: the identity score (evaluator cosine between the painted region and the truth's),
the PSNR outside the hole of the model's own output against the input scene (before paste-back, which
makes it exact), the Fréchet distance between evaluator features of the painted regions and of the
truth renders, and how often the painted outline reads as the subject's shape (``outline.read_shape``: the
silhouette of what was painted, matched against the eight toy shapes; a model that ignored the reference
would read right by chance, one time in eight, and the truths themselves are read too, as the reader's
ceiling). Written as JSON, a markdown table and a bar chart; docs/toy.md discusses the results.

What the identity score sees is reported beside it: each case's truth re-rendered with ONE part of the
subject changed (same scene, pose and box) and scored against the truth. The evaluator learnt to tell its
identities apart mostly by colour, so a subject of another shape still scores high: the score measures
colours and pattern far better than outline.

torch and the evaluator are imported when the benchmark runs: the command line checks the configuration
(``ToyBenchConfig.check``) before.
"""

from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from .. import imaging
from ..presets import PRESETS, preset_settings
from ..utils import native_bf16, write_text_atomic
from ..utils.files import mark_folder
from . import world
from .outline import read_shape
from .write import write_subject_photos

SAMPLER_STEPS = {"plms": 50, "ddim": 50, "dpmsolver++": 20}
# The parts changed one at a time for the identity score's reference points.
CHANGED_PARTS = ("shape", "pattern", "marking", "body", "pattern_color")
_PART_VALUES = {"shape": world.SHAPES, "pattern": world.PATTERNS, "marking": world.MARKINGS}


def with_part_changed(ident: world.Identity, part: str) -> world.Identity:
    """``ident`` with one part replaced: a shape, pattern or marking by the next one; a colour by the one half
    the palette on (neighbours such as red and orange are too alike). The index, which draws renders' scenes
    and poses, stays."""
    if part in _PART_VALUES:
        values = _PART_VALUES[part]
        return replace(ident, **{part: values[(values.index(getattr(ident, part)) + 1) % len(values)]})
    if part in ("body", "pattern_color", "marking_color"):
        n = len(world.PALETTE)
        return replace(ident, **{part: (getattr(ident, part) + n // 2) % n})
    raise ValueError(
        f"part {part!r}: expected one of {', '.join([*_PART_VALUES, 'body', 'pattern_color', 'marking_color'])}"
    )


@dataclass
class ToyBenchConfig:
    """Sizes of the benchmark (``quick()`` for CI)."""

    subjects: int = 8
    cases_per_subject: int = 4
    photos: int = 4
    finetune_steps: int = 150
    finetune_lr: float = 1e-4
    weights: tuple[float, ...] = (0.0, 0.5, 0.8, 1.0)
    detail_grid: int = 2
    sampler_steps: dict[str, int] = field(default_factory=lambda: dict(SAMPLER_STEPS))
    deep_cache: tuple[int, ...] = (2, 3, 5)  # the speed levers' rows (``lever_settings``)
    guidance_intervals: tuple[tuple[int, int], ...] = ((100, 800), (0, 600))
    fast_steps: tuple[int, ...] = (20, 12)  # the fast preset at other step counts (``lever_settings``)
    # the fast preset with tokens merged at these ratios (its own ratio's row is the preset's)
    token_merging: tuple[float, ...] = (0.0, 0.5, 0.75)
    # rows of the fast preset in bfloat16 (what --dtype auto picks on a CPU that computes it natively); None: only
    # on such a CPU, since elsewhere PyTorch emulates bfloat16, far slower than float32
    bfloat16: bool | None = None
    # rows of the fast preset with int8 convolutions and linear layers in the UNet (``enable_int8``), in each dtype
    int8: bool = True
    seed: int = 0
    only: str | None = None  # a regular expression: only the settings whose name it finds are run

    def check(self) -> list[Setting]:
        """The settings to run (``selected_settings``), refusing before any work a configuration the benchmark
        cannot run: a settings pattern that is not one or finds nothing, more subjects than the world's
        held-out identities can give (one more is the floor's unrelated reference). No torch needed."""
        world.check_heldout_count(
            self.subjects, "--subjects", spare=1, why="the benchmark takes one more for the floor's reference"
        )
        return selected_settings(self)

    @classmethod
    def quick(cls) -> ToyBenchConfig:
        return cls(
            subjects=1,
            cases_per_subject=2,
            photos=3,
            finetune_steps=4,
            sampler_steps={"plms": 10, "ddim": 10, "dpmsolver++": 5},
            deep_cache=(3,),
            guidance_intervals=((100, 800),),
            fast_steps=(3,),
            token_merging=(0.0,),
            int8=False,
        )


@dataclass
class Setting:
    name: str
    subject: str | None  # which fine-tuned variant (None = the base model)
    sampler: str
    weight: float = 0.8
    unrelated: bool = False
    keep_known: bool = False  # the pipeline's option: the predicted latent outside the region is the scene's
    levers: dict[str, Any] = field(default_factory=dict)  # speed levers on top of the original recipe
    preset: str = "original"  # "fast": the pipeline's default preset, sampler and steps included
    steps: int | None = None  # sampler steps instead of the config's (or the preset's) for this sampler
    dtype: str = "float32"  # the pipeline's weights and activations (a torch dtype's name)
    int8: bool = False  # the UNet's convolutions and linear layers in int8 (``SubjectInpaintPipeline.enable_int8``)

    def num_steps(self, config: ToyBenchConfig) -> int | None:
        """The step count this setting passes to the pipeline (None: its preset's)."""
        if self.steps is not None:
            return self.steps
        return config.sampler_steps[self.sampler] if self.sampler else None


def lever_settings(config: ToyBenchConfig) -> list[Setting]:
    """The speed levers, each alone on the original recipe (PLMS) and on DPM-Solver++, and the fast preset:
    what each lever costs in quality, measured on the same cases as the original recipe."""
    steps = config.sampler_steps
    rows = []
    for sampler in [k for k in ("plms", "dpmsolver++") if k in steps]:
        label = _sampler_label(sampler, steps[sampler])
        for value in config.deep_cache:
            rows.append(Setting(f"base, {label} + deep cache {value}", None, sampler, levers={"deep_cache": value}))
        for low, high in config.guidance_intervals:
            rows.append(
                Setting(
                    f"base, {label} + guidance at t {low}–{high}",
                    None,
                    sampler,
                    levers={"guidance_interval": (low, high)},
                )
            )
    rows.append(Setting("base, fast preset", None, None, preset="fast"))
    rows += [
        Setting(f"base, fast preset, {n} steps", None, None, preset="fast", steps=n) for n in other_fast_steps(config)
    ]
    return rows


def other_fast_steps(config: ToyBenchConfig) -> list[int]:
    """``config.fast_steps`` but the fast preset's own step count (its row is the preset's)."""
    return [n for n in config.fast_steps if n != PRESETS["fast"]["num_inference_steps"]]


def _sampler_label(sampler: str, steps: int) -> str:
    return f"{'DPM-Solver++' if sampler == 'dpmsolver++' else sampler.upper()}-{steps}"


def settings(config: ToyBenchConfig) -> list[Setting]:
    steps = config.sampler_steps
    s = [Setting(f"base, {_sampler_label(k, n)}", None, k) for k, n in steps.items()]
    fast = "dpmsolver++" if "dpmsolver++" in steps else next(iter(steps))
    s.append(Setting(f"base + keep_known, {_sampler_label(fast, steps[fast])}", None, fast, keep_known=True))
    s += lever_settings(config)
    s += [
        Setting("fine-tuned, no detail module, w=0.8", "nodetail", "plms"),
        Setting("fine-tuned + detail (1 token), w=0.8", "detail", "plms"),
        Setting(f"fine-tuned + detail ({config.detail_grid}×{config.detail_grid} tokens), w=0.8", "grid", "plms"),
        Setting("fine-tuned + detail (1 token), w=0.8, fast preset", "detail", None, preset="fast"),
    ]
    s += [
        Setting(f"fine-tuned + detail (1 token), w=0.8, fast preset, {n} steps", "detail", None, preset="fast", steps=n)
        for n in other_fast_steps(config)
    ]
    fast_rows = (("base", None), ("fine-tuned + detail (1 token), w=0.8", "detail"))
    dtypes = ["float32"]
    if config.bfloat16 if config.bfloat16 is not None else native_bf16():
        dtypes.append("bfloat16")
        s += [_fast_setting(prefix, subject, "bfloat16") for prefix, subject in fast_rows]
    s += [
        _fast_setting(prefix, subject, dtype, f", token merging {ratio:g}", levers={"token_merging": ratio})
        for ratio in config.token_merging
        if ratio != PRESETS["fast"]["token_merging"]
        for dtype in dtypes
        for prefix, subject in fast_rows
    ]
    if config.int8:
        s += [
            _fast_setting(prefix, subject, dtype, ", int8", int8=True)
            for dtype in dtypes
            for prefix, subject in fast_rows
        ]
    s += [
        Setting(f"fine-tuned + detail (1 token), w={w:g}", "detail", "plms", weight=w)
        for w in config.weights
        if w != 0.8
    ]
    s.append(Setting("floor: base, unrelated reference (another shape)", None, "plms", unrelated=True))
    return s


def _fast_setting(prefix: str, subject: str | None, dtype: str, suffix: str = "", **more: Any) -> Setting:
    """The fast preset in ``dtype``, named ``"<prefix>, fast preset[, <dtype>]<suffix>"`` (float32 unnamed)."""
    name = f"{prefix}, fast preset{'' if dtype == 'float32' else ', ' + dtype}{suffix}"
    return Setting(name, subject, None, preset="fast", dtype=dtype, **more)


def selected_settings(config: ToyBenchConfig) -> list[Setting]:
    """``settings(config)`` whose names ``config.only`` (a regular expression, searched) finds; all without it.

    Raises:
        ValueError: ``config.only`` is not a regular expression, or finds no setting (the names are listed).
    """
    plan = settings(config)
    if config.only is None:
        return plan
    try:
        pattern = re.compile(config.only)
    except re.error as e:
        raise ValueError(f"--settings {config.only!r} is not a regular expression: {e}") from None
    chosen = [s for s in plan if pattern.search(s.name)]
    if not chosen:
        names = "; ".join(s.name for s in plan)
        raise ValueError(f"--settings {config.only!r} finds no setting; the settings are: {names}")
    return chosen


def _finetune(base: Path, photos: Path, out: Path, variant: str, config: ToyBenchConfig) -> Path:
    """Fine-tune ``variant`` on the subject folder ``photos`` (``write.write_subject_photos``), references cut
    out with the masks as the toy model's are."""
    from ..models.configs import MODEL_SIZES
    from ..training.config import TrainConfig
    from ..training.finetune import FinetuneSpec, finetune

    detail = MODEL_SIZES["toy"].detail_mapper
    layers = {"nodetail": 0, "detail": detail["layers"], "grid": detail["layers"]}[variant]
    grid = config.detail_grid if variant == "grid" else 1
    if (out / "subject_index.json").is_file():
        return out
    train = TrainConfig.for_mode(
        "subject",
        max_steps=config.finetune_steps,
        batch_size=4,
        learning_rate=config.finetune_lr,
        warmup_steps=0,
        detail_layers=layers,
        detail_heads=detail["heads"],
        detail_grid=grid,
        seed=config.seed,
        save_every=10**6,
    )
    spec = FinetuneSpec(
        photos=photos / "photos",
        base=str(base),
        out=out,
        masks=photos / "masks",
        epochs=None,
        config=train,
        cut_reference=True,
        device="cpu",
        progress=False,
    )
    finetune(spec)
    return out


def machine_summary() -> dict[str, Any]:
    """What a benchmark ran on: the processor, torch's CPU capability (AVX2, AVX512 ...), threads, torch."""
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def run_toy_bench(
    model: str | Path, evaluator: str | Path, out: Path, config: ToyBenchConfig, progress: bool = True
) -> dict[str, Any]:
    """Run the benchmark; writes ``out/results.json``, ``out/results.md``, ``out/identity.png``."""
    import torch

    from ..evaluation.metrics import frechet_distance_of_features, psnr
    from ..pipeline import SubjectInpaintPipeline
    from .evaluator import IdentityEncoder, crop_pixels

    plan = config.check()
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    mark_folder(out, "benchmark")
    pipes = {
        (name, int8): SubjectInpaintPipeline.from_pretrained(model, dtype=getattr(torch, name))
        for name, int8 in dict.fromkeys((s.dtype, s.int8) for s in plan)
    }
    for (_, int8), p in pipes.items():
        if int8:
            p.enable_int8()
    pipe = next(iter(pipes.values()))  # every copy has the same resolution
    scorer = IdentityEncoder.from_pretrained(evaluator).eval()
    ws = world.trained_world(model)
    identities = world.split_identities(ws, "heldout", config.subjects + 1)
    # The floor's references come from held-out identities beyond the subjects, of another shape than the
    # subject's: one that shared it would lift the outline reading's floor above chance.
    others = world.split_identities(ws, "heldout")[config.subjects :]
    records: dict[str, dict[str, list]] = {
        s.name: {"identity": [], "psnr": [], "features": [], "truth_features": [], "outline": []} for s in plan
    }
    truth_outlines: list[bool] = []
    changed: dict[str, list[float]] = {part: [] for part in CHANGED_PARTS}
    bar = tqdm(total=config.subjects * config.cases_per_subject * len(plan), desc="toy benchmark", disable=not progress)
    for i, ident in enumerate(identities[: config.subjects]):
        folder = out / "subjects" / f"{ident.index}"
        write_subject_photos(ident, folder, config.photos, seed=config.seed * 7919 + ident.index)
        variants = {
            v: _finetune(Path(model), folder, folder / v, v, config) for v in {s.subject for s in plan if s.subject}
        }
        seeds = [config.seed * 100_003 + ident.index * 101 + k for k in range(config.cases_per_subject)]
        cases = [world.make_case(ident, seed=seed, size=pipe.resolution) for seed in seeds]
        unrelated = next((o for o in others if o.shape != ident.shape), others[0])
        stranger = world.make_case(unrelated, seed=config.seed + i, size=pipe.resolution).reference
        boxes = [imaging.mask_bbox(case.mask) for case in cases]
        with torch.no_grad():  # the truths' features, scored against every setting's painting
            truths = [scorer(crop_pixels(case.truth, box))[0] for case, box in zip(cases, boxes, strict=True)]
        for seed, case, box, truth in zip(seeds, cases, boxes, truths, strict=True):
            truth_outlines.append(read_shape(case.truth, case.scene, case.mask) == ident.shape)
            with torch.no_grad():
                for part in CHANGED_PARTS:
                    other = world.make_case(with_part_changed(ident, part), seed=seed, size=pipe.resolution).truth
                    changed[part].append(float(scorer(crop_pixels(other, box))[0] @ truth))
        for setting in plan:
            pipe = pipes[setting.dtype, setting.int8]
            if setting.subject:
                pipe.load_subject(variants[setting.subject])
            else:
                pipe.unload_subject()
            for k, (case, box, truth) in enumerate(zip(cases, boxes, truths, strict=True)):
                reference = stranger if setting.unrelated else case.reference
                result = pipe(
                    Image.fromarray(case.scene),
                    Image.fromarray(reference),
                    mask=Image.fromarray(case.mask.astype(np.uint8) * 255),
                    num_inference_steps=setting.num_steps(config),
                    sampler=setting.sampler,
                    preset=setting.preset,
                    **setting.levers,
                    model_weight=setting.weight,
                    generator=torch.Generator().manual_seed(config.seed + k),
                    paste_back=False,
                    progress=False,
                    keep_known=setting.keep_known,
                )
                raw = np.asarray(result.images[0])
                with torch.no_grad():
                    painted = scorer(crop_pixels(raw, box))[0]
                rec = records[setting.name]
                rec["identity"].append(float(painted @ truth))
                rec["psnr"].append(psnr(raw, case.scene, ~case.mask))
                rec["features"].append(painted.numpy())
                rec["truth_features"].append(truth.numpy())
                rec["outline"].append(read_shape(raw, case.scene, case.mask) == ident.shape)
                bar.update(1)
        for pipe in pipes.values():
            pipe.unload_subject()
    bar.close()
    rows = []
    for setting in plan:
        rec = records[setting.name]
        ident_scores = np.array(rec["identity"])
        chosen = preset_settings(
            setting.preset,
            sampler=setting.sampler,
            num_inference_steps=setting.num_steps(config),
            **setting.levers,
        )
        painted, truths = np.stack(rec["features"]), np.stack(rec["truth_features"])
        fd = frechet_distance_of_features(painted, truths) if len(ident_scores) > 1 else float("nan")
        rows.append(
            {
                "setting": setting.name,
                "sampler": chosen["sampler"],
                "steps": chosen["num_inference_steps"],
                "preset": setting.preset,
                "dtype": setting.dtype,
                "int8": setting.int8,
                "levers": {k: v for k, v in chosen.items() if k not in ("sampler", "num_inference_steps")},
                "levers_named": sorted(setting.levers),
                "model_weight": setting.weight if setting.subject else None,
                "identity_mean": float(ident_scores.mean()),
                "identity_std": float(ident_scores.std()),
                "psnr_outside_db": float(np.mean(rec["psnr"])),
                "psnr_std": float(np.std(rec["psnr"])),
                "frechet_distance": fd,
                "frechet_se": bootstrap_frechet_se(painted, truths, config.seed),
                "outline_read": float(np.mean(rec["outline"])),
                "cases": len(ident_scores),
                # per case, in the plan's order (the same cases for every setting): for paired comparisons
                "identity_cases": [round(float(v), 5) for v in ident_scores],
                "psnr_cases": [round(float(v), 3) for v in rec["psnr"]],
                "outline_cases": [bool(v) for v in rec["outline"]],
            }
        )
    result = {
        "model": str(model),
        "evaluator": str(evaluator),
        "config": asdict(config),
        "results": rows,
        "truth_with_one_part_changed": {
            part: {"identity_mean": float(np.mean(v)), "identity_std": float(np.std(v)), "cases": len(v)}
            for part, v in changed.items()
        },
        "truth_outline_read": float(np.mean(truth_outlines)),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine_summary(),
    }
    write_text_atomic(out / "results.json", json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(
        markdown_table(rows)
        + "\n\n"
        + truth_outline_line(result["truth_outline_read"], len(truth_outlines))
        + "\n\n"
        + reference_points_table(result["truth_with_one_part_changed"])
        + "\n"
    )
    bar_chart(rows).save(out / "identity.png")
    return result


def bootstrap_frechet_se(painted: np.ndarray, truths: np.ndarray, seed: int, rounds: int = 100) -> float:
    """Standard error of the Fréchet distance over the cases: its spread when the cases (each a painted and a
    true feature vector, kept as pairs) are resampled with replacement."""
    from ..evaluation.metrics import frechet_distance_of_features

    n = len(painted)
    if n < 3:
        return float("nan")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(rounds):
        pick = rng.integers(0, n, n)
        draws.append(frechet_distance_of_features(painted[pick], truths[pick]))
    return float(np.std(draws))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | identity score ↑ | PSNR outside the hole (dB) ↑ | Fréchet distance ↓ | outline read as the "
        "subject's shape ↑ | cases |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['identity_mean']:.3f} ± {r['identity_std']:.3f} | {r['psnr_outside_db']:.1f} | "
            f"{r['frechet_distance']:.3f} | {r['outline_read']:.0%} | {r['cases']} |"
        )
    return "\n".join(lines)


def truth_outline_line(rate: float, cases: int) -> str:
    """The outline reader's ceiling: how often it reads the truths themselves right."""
    return f"The outline reader on the truths themselves: {rate:.0%} of {cases} read as the subject's shape."


def reference_points_table(points: dict[str, dict[str, Any]]) -> str:
    """What the identity score gives the truth itself with one part of the subject changed."""
    names = {"body": "body colour", "pattern_color": "pattern colour", "marking_color": "marking colour"}
    lines = ["| the truth, with another … | identity score | cases |", "|---|---|---|"]
    for part, p in points.items():
        lines.append(f"| {names.get(part, part)} | {p['identity_mean']:.3f} ± {p['identity_std']:.3f} | {p['cases']} |")
    return "\n".join(lines)


def bar_chart(rows: list[dict[str, Any]], width: int = 760, bar_height: int = 22) -> Image.Image:
    """A horizontal bar chart of the identity scores (mean ± std) per setting."""
    label_w, pad = 330, 8
    height = pad * 2 + len(rows) * (bar_height + pad) + 20
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    span = width - label_w - 2 * pad
    for k, r in enumerate(rows):
        y = pad + k * (bar_height + pad)
        d.text((pad, y + 5), r["setting"][:52].replace("×", "x"), fill=(0, 0, 0))  # the default font lacks ×
        value = max(0.0, min(1.0, r["identity_mean"]))
        d.rectangle([label_w, y, label_w + int(span * value), y + bar_height], fill=(70, 110, 190))
        lo = max(0.0, r["identity_mean"] - r["identity_std"])
        hi = min(1.0, r["identity_mean"] + r["identity_std"])
        mid = y + bar_height // 2
        d.line([(label_w + int(span * lo), mid), (label_w + int(span * hi), mid)], fill=(0, 0, 0), width=2)
        d.text((label_w + int(span * value) + 4, y + 5), f"{r['identity_mean']:.2f}", fill=(0, 0, 0))
    y = height - 18
    d.text((label_w, y), "0", fill=(0, 0, 0))
    d.text((label_w + span - 10, y), "1", fill=(0, 0, 0))
    d.text((label_w + span // 2 - 60, y), "identity score (cosine)", fill=(0, 0, 0))
    return img
