#!/usr/bin/env python
"""Region decode against the whole decode, on the embedded toy model's held-out cases or at full size.

``decode="region"`` decodes only the latent window around the region (``presets.DECODE_MARGIN`` cells on
each side) and pastes it back. This paints every case of ``bench toy``'s plan (the same held-out subjects,
cases and seeds) once, decodes the final latents both ways, pastes both back, and reports the largest
difference inside the region (0-255; the bar is 1) and the share of the latent that was decoded, for several
margins.

With ``--full-size`` it decodes instead the released VAE's architecture with random weights (nothing to
download): random latents ``(1, 4, 64, 64)``, square regions of ``--sides`` pixels in the middle of a 512²
picture, and also times the window decode against the whole decode. The VAE's group norms take their
statistics over the whole latent (and its middle block attends across it), so no finite margin is exact.

Usage::

    python benchmarks/toy/region_decode.py --out benchmarks/toy/region-decode.json
    python benchmarks/toy/region_decode.py --full-size --out benchmarks/toy/region-decode-full-size.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from subject_inpainting import imaging, pipeline
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.toy import world as toy
from subject_inpainting.toy.bench import ToyBenchConfig, machine_summary
from subject_inpainting.utils import write_text_atomic
from subject_inpainting.weights import default_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/, for bench_common
from bench_common import git_state


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the embedded toy model)")
    p.add_argument("--margins", default="2,4,8,16", help="margins to try, in latent cells (default 2,4,8,16)")
    p.add_argument("--full-size", action="store_true", help="the released VAE with random weights, 512²")
    p.add_argument("--sides", default="128,192,256", help="--full-size: region sides in pixels (default 128,192,256)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p.parse_args(argv)


def full_size(args: argparse.Namespace) -> dict:
    """The window decode of random latents against the whole decode, released VAE, random weights."""
    from subject_inpainting.models.build import random_components
    from subject_inpainting.models.configs import MODEL_SIZES

    pipe = SubjectInpaintPipeline(**random_components(MODEL_SIZES["sd-v1"], seed=0))
    side = int(pipe.unet.config.sample_size)
    res = pipe.resolution
    latents = torch.randn((1, pipe.vae.config.latent_channels, side, side), generator=torch.Generator().manual_seed(3))
    scene = (np.random.default_rng(0).random((res, res, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        started = time.perf_counter()
        whole = imaging.tensor_to_rgb(pipe.decode(latents))[0]
        whole_seconds = time.perf_counter() - started
        rows = {}
        for m in (int(v) for v in args.margins.split(",")):
            pipeline.DECODE_MARGIN = m
            for region in (int(v) for v in args.sides.split(",")):
                mask = np.zeros((res, res), bool)
                o = (res - region) // 2
                mask[o : o + region, o : o + region] = True
                started = time.perf_counter()
                window = pipe.decode_window(latents, mask, scene)[0]
                seconds = time.perf_counter() - started
                diff = np.abs(window.astype(int) - whole.astype(int))[mask]
                rows[f"margin {m}, side {region}"] = {
                    "max_difference_inside_region": int(diff.max()),
                    "mean_difference_inside_region": round(float(diff.mean()), 3),
                    "seconds": round(seconds, 2),
                    "share_decoded": share_decoded(pipe, mask),
                }
    return {
        "model": "released VAE architecture, random weights (seed 0)",
        "whole_decode_seconds": round(whole_seconds, 2),
        "windows": rows,
    }


def share_decoded(pipe: SubjectInpaintPipeline, mask: np.ndarray) -> float:
    """The share of the latent that ``decode_window`` decodes for ``mask``."""
    x0, y0, x1, y1 = pipe.latent_window(mask)
    return (x1 - x0) * (y1 - y0) / int(pipe.unet.config.sample_size) ** 2


def toy_cases(args: argparse.Namespace) -> dict:
    """The window decode against the whole decode, pasted back, on ``bench toy``'s held-out cases."""
    model = args.model or str(default_model())
    pipe = SubjectInpaintPipeline.from_pretrained(model)
    config = ToyBenchConfig()
    ws = toy.trained_world(model)
    cases = []
    for ident in toy.split_identities(ws, "heldout", config.subjects):
        seeds = [config.seed * 100_003 + ident.index * 101 + k for k in range(config.cases_per_subject)]
        cases += [toy.make_case(ident, seed=seed, size=pipe.resolution) for seed in seeds]
    margins = [int(m) for m in args.margins.split(",")]
    worst = {m: 0 for m in margins}
    shares = {m: [] for m in margins}
    for k, case in enumerate(cases):
        out = pipe(
            Image.fromarray(case.scene),
            Image.fromarray(case.reference),
            mask=Image.fromarray(case.mask.astype(np.uint8) * 255),
            preset="original",
            sampler="dpmsolver++",
            num_inference_steps=20,
            generator=torch.Generator().manual_seed(k),
            progress=False,
        )
        full = imaging.tensor_to_rgb(pipe.decode(out.latents))[0]
        reference = imaging.composite(case.scene, full, case.mask, imaging.default_feather(case.mask.shape[::-1]))
        for m in margins:
            pipeline.DECODE_MARGIN = m
            window = pipe.decode_window(out.latents, case.mask, case.scene)[0]
            pasted = imaging.composite(case.scene, window, case.mask, imaging.default_feather(case.mask.shape[::-1]))
            diff = np.abs(pasted.astype(int) - reference.astype(int))[case.mask]
            worst[m] = max(worst[m], int(diff.max()))
            shares[m].append(share_decoded(pipe, case.mask))
    return {
        "model": model,
        "cases": len(cases),
        "margins": {
            str(m): {"max_difference_inside_region": worst[m], "mean_share_decoded": float(np.mean(shares[m]))}
            for m in margins
        },
    }


def main(args: argparse.Namespace) -> dict:
    result = full_size(args) if args.full_size else toy_cases(args)
    result = {
        **result,
        "command": "python benchmarks/toy/region_decode.py " + " ".join(sys.argv[1:]),
        "machine": {**machine_summary(), "git": git_state()},
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
