"""The training objective: its targets (noise or velocity) and the Min-SNR weights."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from subject_inpainting.sampling.schedule import alphas_cumprod
from subject_inpainting.training.losses import add_noise, inpainting_loss

SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


class Oracle(torch.nn.Module):
    """A 'UNet' that answers with a fixed tensor plus an offset, so that the loss's target can be read."""

    def __init__(self, answer: torch.Tensor):
        super().__init__()
        self.answer = answer

    def forward(self, x, t, encoder_hidden_states=None, encoder_attention_mask=None):
        return SimpleNamespace(sample=self.answer)


def _batch():
    g = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    x_start = torch.cat([z0, torch.randn(3, 4, 8, 8, generator=g), torch.ones(3, 1, 8, 8)], dim=1)
    return z0, noise, x_start, torch.tensor([5, 400, 990]), alphas_cumprod(SCHEDULE)


def test_each_prediction_type_is_zero_only_at_its_own_target():
    z0, noise, x_start, t, alphas = _batch()
    a = alphas[t].view(-1, 1, 1, 1)
    v = a.sqrt() * noise - (1 - a).sqrt() * z0
    ctx = torch.zeros(3, 1, 8)
    for kind, right, wrong in (("epsilon", noise, v), ("v_prediction", v, noise)):
        assert inpainting_loss(Oracle(right), x_start, t, noise, ctx, alphas, prediction_type=kind) < 1e-10
        assert inpainting_loss(Oracle(wrong), x_start, t, noise, ctx, alphas, prediction_type=kind) > 0.1
    with pytest.raises(ValueError, match="'sample'"):
        inpainting_loss(Oracle(v), x_start, t, noise, ctx, alphas, prediction_type="sample")


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_min_snr_weights_the_clean_latents_error_by_min_snr_gamma(kind):
    # Hang et al. 2023: whatever the parameterisation, the weighted loss is min(SNR, γ) · |ẑ0 − z0|²
    z0, noise, x_start, t, alphas = _batch()
    a = alphas[t].view(-1, 1, 1, 1)
    x_t = add_noise(z0, noise, t, alphas)
    z0_hat = z0 + 0.1 * torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
    eps_hat = (x_t - a.sqrt() * z0_hat) / (1 - a).sqrt()
    answer = eps_hat if kind == "epsilon" else a.sqrt() * eps_hat - (1 - a).sqrt() * z0_hat
    gamma = 5.0
    loss = inpainting_loss(
        Oracle(answer), x_start, t, noise, torch.zeros(3, 1, 8), alphas, snr_gamma=gamma, prediction_type=kind
    )
    snr = a / (1 - a)
    expected = (torch.clamp(snr, max=gamma) * (z0_hat - z0) ** 2).mean()
    assert torch.allclose(loss, expected, rtol=1e-4)
