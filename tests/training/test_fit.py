"""The small optimisation loop of the toy world's helper models (``training.fit``)."""

from __future__ import annotations

import pytest
import torch

from subject_inpainting.training.fit import fit


def test_the_learning_rate_warms_up_then_stays(tmp_path, monkeypatch):
    param = torch.nn.Parameter(torch.zeros(1))
    rates = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    fit({"p": param}, lambda step, g: param.sum(), 30, 0.5, tmp_path, warmup=10, progress=False)
    assert rates[:10] == pytest.approx([0.5 * (k + 1) / 10 for k in range(10)])
    assert rates[10:] == pytest.approx([0.5] * 20)
    assert param.item() < -0.5 * 20  # the steps were taken: Adam moves by about the rate at every step


def test_a_resumed_fit_equals_an_uninterrupted_one(tmp_path):
    class Crash(Exception):
        pass

    def run(out, crash_at=None):
        torch.manual_seed(0)
        param = torch.nn.Parameter(torch.randn(4))

        def loss_fn(step, g):
            if step == crash_at:
                raise Crash
            return ((param - torch.randn(4, generator=g)) ** 2).sum()

        args = ({"p": param}, loss_fn, 20, 0.05, out)
        if crash_at is not None:
            with pytest.raises(Crash):
                fit(*args, save_every=5, progress=False)
            with torch.no_grad():  # a new process starts from fresh weights; the checkpoint restores them
                param.normal_()
            crash_at = None
        fit(*args, save_every=5, progress=False)
        return param.detach().clone()

    assert torch.equal(run(tmp_path / "a"), run(tmp_path / "b", crash_at=12))
