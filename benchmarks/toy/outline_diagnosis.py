"""Where does the painted outline go wrong? Measures the outline reader and locates the loss of the outline.

For ``--cases`` held-out toy cases (case k: the k-th held-out identity, ``toy.make_case(seed=500 + k)``):

1. **The reader on the truths**, for every ``--thresholds`` × ``--alphas`` (``read_shape``'s silhouette
   threshold and template opacity): how often a truth reads as its own shape. This is the reader's ceiling.
2. **The reader on paintings** (DPM-Solver++ 20 steps, guidance 5, no paste-back, keep_known off), for every
   threshold: how often the painting reads right, and how many read as "square" (a silhouette that fills the
   rectangular hole: a repainted background joins it at low thresholds); at the reader's defaults, how many
   of each shape read right; and the same case painted with an UNRELATED reference (the next case's subject
   of another shape): how often the painting reads as that reference's shape (does the model draw the shape
   it is shown?) and as the case's own subject's (the scene alone suggesting it).
3. **Where the outline is lost** (at threshold 48, template opacity 64, the reader's defaults): the truth
   through the VAE and back (the VAE's ceiling); the model's one-step clean prediction from the truth's
   latent noised to each ``--noised-t`` (does the model keep an outline that the noisy latent still shows?);
   and the painting itself.

Prints a markdown report; ``--out FILE.json`` keeps the numbers, with each case's reading. With no ``--model``
the embedded default is used.

``--compare A.json B.json ...`` paints nothing: it compares saved runs on the same cases, pair by pair, with
an exact McNemar test (``evaluation.metrics.paired_exact_test``): its discordant cases tell differences apart
that the two rates' standard errors hide.

    python benchmarks/toy/outline_diagnosis.py --cases 80 --out /tmp/outline.json
    python benchmarks/toy/outline_diagnosis.py --compare /tmp/outline.json /tmp/other-model.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from subject_inpainting import imaging
from subject_inpainting.evaluation.metrics import paired_exact_test
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.sampling.guidance import InpaintDenoiser, VelocityDenoiser
from subject_inpainting.sampling.schedule import alphas_cumprod, prediction_type
from subject_inpainting.toy import world as toy
from subject_inpainting.toy.bench import machine_summary
from subject_inpainting.toy.outline import TEMPLATE_ALPHA, read_shape
from subject_inpainting.weights import default_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/, for bench_common
from bench_common import git_state


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the embedded toy model)")
    p.add_argument(
        "--cases",
        type=int,
        default=80,
        help="held-out cases (default 80; a rate's standard error is up to 0.5/sqrt(cases))",
    )
    p.add_argument("--thresholds", type=_ints, default=[32, 48, 64], help="silhouette thresholds (default 32,48,64)")
    p.add_argument("--alphas", type=_ints, default=[64, 128], help="template opacities (default 64,128)")
    p.add_argument("--noised-t", type=_ints, default=[100, 300, 500, 700, 900], help="timesteps for the one-step check")
    p.add_argument("--guidance", type=float, default=5.0, help="guidance scale of paintings and checks (default 5)")
    p.add_argument("--out", default=None, help="write the numbers to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="FILE.json",
        help="paint nothing; compare these saved runs (--out files, same cases) with a paired exact test",
    )
    args = p.parse_args(argv)
    if args.compare is not None and len(args.compare) < 2:
        p.error(f"--compare needs at least two saved runs, got {len(args.compare)}")
    if args.cases < 1:
        p.error(f"--cases must be at least 1, got {args.cases}")
    if any(not 0 <= t < 1000 for t in args.noised_t):
        p.error(f"--noised-t timesteps must be in 0-999, got {args.noised_t}")
    return args


def noised_truth_predictions(pipe, case: toy.InpaintCase, ts: Sequence[int], scale: float, seed: int) -> list:
    """The model's clean prediction ``x0`` (decoded, ``(H, W, 3)`` uint8) from the truth's latent noised to each
    timestep in ``ts``, one denoiser call each, with the case's scene, hole and reference as conditioning."""
    hole = Image.fromarray(case.mask.astype(np.uint8) * 255)
    inputs = pipe.image_processor.prepare(Image.fromarray(case.scene), Image.fromarray(case.reference), mask=hole)
    z_masked, keep = pipe.encode_scene(imaging.rgb_to_tensor(case.scene), imaging.keep_mask_tensor(inputs.mask))
    z_truth, _ = pipe.encode_scene(imaging.rgb_to_tensor(case.truth), torch.ones(1, 1, *case.mask.shape))
    cond, uncond = pipe.encode_reference(inputs.reference)
    alphas = alphas_cumprod(pipe.scheduler)
    denoiser = InpaintDenoiser(pipe.unet, cond, uncond, scale, z_masked, keep)
    if prediction_type(pipe.scheduler) == "v_prediction":
        denoiser = VelocityDenoiser(denoiser, alphas)
    noise = torch.randn(z_truth.shape, generator=torch.Generator().manual_seed(seed))
    out = []
    for t in ts:
        a = alphas[t]
        x = a.sqrt() * z_truth + (1 - a).sqrt() * noise
        with torch.no_grad():
            eps = denoiser(x, torch.tensor([t]))
        out.append(imaging.tensor_to_rgb(pipe.decode((x - (1 - a).sqrt() * eps) / a.sqrt()))[0])
    return out


def unrelated(cases: Sequence[toy.InpaintCase], k: int) -> int:
    """The first case after ``k`` (cyclically) whose subject has another shape than case ``k``'s."""
    n = len(cases)
    for j in ((k + d) % n for d in range(1, n)):
        if cases[j].identity.shape != cases[k].identity.shape:
            return j
    raise ValueError("every case has the same shape: no unrelated reference of another shape")


def paint(pipe, case: toy.InpaintCase, reference: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """The model's whole output (no paste-back) for the case's scene and hole, ``(H, W, 3)`` uint8."""
    painted = pipe(
        Image.fromarray(case.scene),
        Image.fromarray(reference),
        mask=Image.fromarray(case.mask.astype(np.uint8) * 255),
        num_inference_steps=20,
        sampler="dpmsolver++",
        guidance_scale=scale,
        generator=torch.Generator().manual_seed(seed),
        paste_back=False,
        progress=False,
        preset="original",
    )
    return np.asarray(painted.images[0])


def _load_run(path: str) -> dict:
    try:
        with open(path) as f:
            run = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"--compare {path}: cannot read it as a saved run ({e})") from None
    if not isinstance(run, dict) or "case_reads" not in run:
        raise SystemExit(f"--compare {path}: no per-case readings (write it with --out from this version)")
    return run


def compare(paths: Sequence[str]) -> dict:
    """Paired comparison of saved runs: each run's rate of paintings read right and, for every pair, the
    cases right with only one of them and the exact McNemar p-value."""
    runs = {p: _load_run(p) for p in paths}
    first = runs[paths[0]]["case_reads"]
    right = {}
    for p, run in runs.items():
        reads = run["case_reads"]
        if (reads["world"], reads["shapes"]) != (first["world"], first["shapes"]):
            raise SystemExit(f"--compare {p}: other cases than {paths[0]} (world, count or shapes differ)")
        right[p] = [r == s for r, s in zip(reads["paintings"], reads["shapes"], strict=True)]
    n = len(first["shapes"])
    lines = [f"Paintings read right on the same {n} cases", "", "| run | model | read right |", "|---|---|---|"]
    lines += [f"| {p} | {runs[p]['model']} | {np.mean(right[p]):.1%} |" for p in paths]
    lines += ["", "| run A | run B | right only with A | right only with B | exact McNemar p |"]
    lines += ["|---|---|---|---|---|"]
    pairs = []
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            only_a, only_b, p_value = paired_exact_test(right[a], right[b])
            pairs.append({"a": a, "b": b, "only_a": only_a, "only_b": only_b, "p": p_value})
            lines += [f"| {a} | {b} | {only_a} | {only_b} | {p_value:.3f} |"]
    print("\n".join(lines))
    return {"rates": {p: float(np.mean(v)) for p, v in right.items()}, "pairs": pairs}


def main(args: argparse.Namespace) -> dict:
    if args.compare:
        return compare(args.compare)
    start = time.perf_counter()
    model = args.model or default_model()
    if model is None:
        raise SystemExit("this installation has no embedded toy model; name one with --model")
    model = str(model)
    pipe = SubjectInpaintPipeline.from_pretrained(model)
    world = toy.trained_world(model)
    ids = toy.split_identities(world, "heldout", args.cases)
    cases = [toy.make_case(ident, seed=500 + k, size=pipe.resolution) for k, ident in enumerate(ids)]
    truth_reads = {f"{t}/{a}": [] for t in args.thresholds for a in args.alphas}
    painted_reads = {t: [] for t in args.thresholds}
    vae_reads, noised_reads = [], {t: [] for t in args.noised_t}
    default_reads, stranger_reads, stranger_shapes = [], [], []
    right = [c.identity.shape for c in cases]
    for k, case in enumerate(tqdm(cases, desc="outline diagnosis", disable=args.quiet)):
        for t in args.thresholds:
            for a in args.alphas:
                read = read_shape(case.truth, case.scene, case.mask, threshold=t, template_alpha=a)
                truth_reads[f"{t}/{a}"].append(read)
        raw = paint(pipe, case, case.reference, args.guidance, k)
        for t in args.thresholds:
            painted_reads[t].append(read_shape(raw, case.scene, case.mask, threshold=t))
        default_reads.append(read_shape(raw, case.scene, case.mask))
        stranger = cases[unrelated(cases, k)]
        with_stranger = paint(pipe, case, stranger.reference, args.guidance, k)
        stranger_reads.append(read_shape(with_stranger, case.scene, case.mask))
        stranger_shapes.append(stranger.identity.shape)
        z, _ = pipe.encode_scene(imaging.rgb_to_tensor(case.truth), torch.ones(1, 1, *case.mask.shape))
        vae_reads.append(read_shape(imaging.tensor_to_rgb(pipe.decode(z))[0], case.scene, case.mask))
        predictions = noised_truth_predictions(pipe, case, args.noised_t, args.guidance, k)
        for t, pred in zip(args.noised_t, predictions, strict=True):
            noised_reads[t].append(read_shape(pred, case.scene, case.mask))

    def rate(reads: list, shapes: list = right) -> float:
        return float(np.mean([r == s for r, s in zip(reads, shapes, strict=True)]))

    result = {
        "model": args.model or "the embedded default model",
        "cases": args.cases,
        "truths": {key: rate(v) for key, v in truth_reads.items()},
        "paintings": {
            str(t): {
                "read_right": rate(v),
                "read_as_square": sum(r == "square" for r in v),
                "reads": Counter(map(str, v)),
            }
            for t, v in painted_reads.items()
        },
        "painted_right_by_shape": Counter(s for r, s in zip(default_reads, right, strict=True) if r == s),
        "unrelated_reference": {
            "read_as_its_shape": rate(stranger_reads, stranger_shapes),
            "read_as_the_subjects_shape": rate(stranger_reads),
        },
        "vae_round_trip": rate(vae_reads),
        "noised_truth": {str(t): rate(v) for t, v in noised_reads.items()},
        "truth_shapes": Counter(right),
        # each case's reading, for paired comparisons (--compare): case k is held-out identity k, seed 500 + k
        "case_reads": {"world": world, "shapes": right, "paintings": [str(r) for r in default_reads]},
        "seconds": round(time.perf_counter() - start, 1),
        "command": "python benchmarks/toy/outline_diagnosis.py " + " ".join(sys.argv[1:]),
        "machine": {**machine_summary(), "git": git_state()},
        "date": time.strftime("%Y-%m-%d"),
    }
    print(report(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, out)
    return result


def report(r: dict) -> str:
    n = r["cases"]
    lines = [f"Outline diagnosis of {r['model']} on {n} held-out cases ({r['seconds']} s)", ""]
    lines += ["| reader: threshold / template opacity | truths read right |", "|---|---|"]
    lines += [f"| {key} | {v:.1%} |" for key, v in r["truths"].items()]
    lines += ["", "| threshold | paintings read right | read as square (whole hole) |", "|---|---|---|"]
    lines += [f"| {t} | {v['read_right']:.1%} | {v['read_as_square']} of {n} |" for t, v in r["paintings"].items()]
    lines += ["", f"At threshold 48 / opacity {TEMPLATE_ALPHA}:", "", "| picture | read right |", "|---|---|"]
    lines += [f"| truth through the VAE | {r['vae_round_trip']:.1%} |"]
    lines += [f"| one-step prediction from the truth noised to t={t} | {v:.1%} |" for t, v in r["noised_truth"].items()]
    if "48" in r["paintings"]:
        lines += [f"| painting (DPM-Solver++ 20) | {r['paintings']['48']['read_right']:.1%} |"]
        reads = r["paintings"]["48"]["reads"].most_common()
        lines += ["", "Paintings read as: " + ", ".join(f"{k} {v}" for k, v in reads)]
    right = r["painted_right_by_shape"]
    by_shape = [f"{k} {right.get(k, 0)} of {v}" for k, v in r["truth_shapes"].items()]
    lines += ["Read right, by shape: " + ", ".join(by_shape)]
    u = r["unrelated_reference"]
    lines += [
        f"Painted with an unrelated subject's reference of another shape: read as that reference's shape "
        f"{u['read_as_its_shape']:.1%}, as the case's own subject's {u['read_as_the_subjects_shape']:.1%}"
    ]
    lines += ["Truths' shapes: " + ", ".join(f"{k} {v}" for k, v in r["truth_shapes"].most_common())]
    return "\n".join(lines)


if __name__ == "__main__":
    main(parse_args())
