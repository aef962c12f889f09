#!/usr/bin/env python
"""Region decode against the whole decode, on the embedded toy model's held-out cases.

``decode="region"`` decodes only the latent window around the region (``presets.DECODE_MARGIN`` cells on
each side) and pastes it back. This paints every case of ``bench toy``'s plan (the same held-out subjects,
cases and seeds) once, decodes the final latents both ways, pastes both back, and reports the largest
difference inside the region (0-255; the bar is 1) and the share of the latent that was decoded, for several
margins.

Usage::

    python benchmarks/toy/region_decode.py --out benchmarks/toy/region-decode.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from subject_inpainting import imaging, pipeline
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.toy import world as toy
from subject_inpainting.toy.bench import ToyBenchConfig
from subject_inpainting.weights import default_model


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the embedded toy model)")
    p.add_argument("--margins", default="2,4,8,16", help="margins to try, in latent cells (default 2,4,8,16)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
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
            x0, y0, x1, y1 = imaging.mask_bbox(case.mask)
            f, h = pipe.vae_scale_factor, out.latents.shape[-1]
            side_x = min(-(-x1 // f) + m, h) - max(x0 // f - m, 0)
            side_y = min(-(-y1 // f) + m, h) - max(y0 // f - m, 0)
            shares[m].append(side_x * side_y / h**2)
    result = {
        "model": model,
        "cases": len(cases),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "capability": torch.backends.cpu.get_cpu_capability(),
        },
        "date": time.strftime("%Y-%m-%d"),
        "margins": {
            str(m): {"max_difference_inside_region": worst[m], "mean_share_decoded": float(np.mean(shares[m]))}
            for m in margins
        },
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
