"""A small resumable optimisation loop for the toy world's helper models (VAE, identity encoders).

Every step's batch and random draws are a pure function of the step (``batch(step, generator)``), so a
resumed run equals an uninterrupted one, as in the main loop; checkpoints use the same format.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoints as ckpt
from .loop import step_generator


def fit(
    params: dict[str, nn.Parameter],
    loss_fn: Callable[[int, torch.Generator], torch.Tensor],
    steps: int,
    lr: float,
    out: Path,
    seed: int = 0,
    warmup: int = 0,
    save_every: int = 200,
    label: str = "training",
    progress: bool = True,
) -> list[float]:
    """Minimise ``loss_fn(step, generator)`` over ``params`` with AdamW for ``steps`` steps, resuming from
    the newest checkpoint in ``out/checkpoints``. The learning rate warms up linearly over ``warmup`` steps.

    Returns the losses of the steps run now.
    """
    optimizer = torch.optim.AdamW(list(params.values()), lr=lr)
    start = 0
    saved = ckpt.list_checkpoints(out)
    if saved:
        state = ckpt.load_checkpoint(saved[-1])
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(state["trainable"][k])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    losses = []
    for step in tqdm(range(start, steps), initial=start, total=steps, desc=label, unit="step", disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
        loss = loss_fn(step, step_generator(seed, step, 0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % save_every == 0 or step + 1 == steps:
            ckpt.save_checkpoint(out, step + 1, params, optimizer, None, keep=1)
    return losses
