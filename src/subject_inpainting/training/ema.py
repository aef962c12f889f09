"""Exponential moving average of the trained weights (LDM's ``LitEma`` schedule)."""

from __future__ import annotations

import torch


class EMA:
    """Shadow copies of named parameters, ``shadow ← d · shadow + (1 − d) · param``.

    As LDM's ``LitEma``, the decay warms up: ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so
    early weights do not dominate a short run.
    """

    def __init__(self, params: dict[str, torch.nn.Parameter], decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {k: p.detach().float().clone() for k, p in params.items()}

    @torch.no_grad()
    def update(self, params: dict[str, torch.nn.Parameter]) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, p in params.items():
            self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, params: dict[str, torch.nn.Parameter]) -> None:
        for k, p in params.items():
            p.copy_(self.shadow[k].to(p.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.shadow, "__updates__": torch.tensor(self.updates)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.updates = int(state["__updates__"])
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} weights (e.g. {sorted(missing)[:2]})")
        self.shadow = {k: state[k].float().clone() for k in self.shadow}
