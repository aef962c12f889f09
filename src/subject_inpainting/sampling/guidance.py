"""Guidance around a 9-channel inpainting UNet.

- ``InpaintDenoiser``: classifier-free guidance (Ho & Salimans, 2022) with the learned unconditional
  vector, conditional and unconditional predictions in one batched UNet call.
- Both guidance denoisers take an optional interval of timesteps outside which guidance is off (scale 1;
  Kynkäänniemi et al., 2024): there the unconditional row is not computed at all.
- ``ModifiedGuidanceDenoiser``: subject inpainting's guidance, which mixes a subject-fine-tuned model with
  the pretrained one (three UNet evaluations per step, in as few calls as the models allow).
- ``KnownRegionDenoiser``: wraps either so that the predicted clean latent outside the region is the
  scene's own (an option; the original does not do it).
- ``VelocityDenoiser``: wraps either for a UNet that predicts the velocity ``v`` rather than the noise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """``e = e_uncond + s · (e_cond − e_uncond)``."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def check_interval(interval: tuple[int, int] | None, steps: int = 1000) -> tuple[int, int] | None:
    """``(low, high)`` timesteps with ``0 <= low <= high <= steps``, or None (guidance at every step).

    Raises:
        ValueError: anything else, named.
    """
    if interval is None:
        return None
    try:
        low, high = (int(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"guidance_interval must be two timesteps (low, high), got {interval!r}") from None
    if not 0 <= low <= high <= steps or (low, high) != tuple(interval):
        raise ValueError(f"guidance_interval must be whole timesteps 0 <= low <= high <= {steps}, got {interval!r}")
    return low, high


def guided_at(t: torch.Tensor, interval: tuple[int, int] | None) -> bool:
    """Whether guidance applies at timestep ``t`` (one value for the batch): inside ``[low, high]``."""
    return interval is None or interval[0] <= int(t.reshape(-1)[0]) <= interval[1]


class InpaintDenoiser:
    """``denoiser(x, t) -> eps`` for an inpainting UNet with classifier-free guidance.

    The UNet sees ``[x, z_masked, keep_mask]`` along channels (4 + 4 + 1 for SD-v1). With ``scale != 1``
    the conditional and unconditional predictions come from ONE batched UNet call.

    Args:
        unet: a ``UNet2DConditionModel``.
        context: conditional cross-attention context ``(B, T, C)``.
        uncond_context: unconditional context ``(B, 1, C)`` (the learned vector), or None when ``scale == 1``.
        scale: guidance scale ``s``.
        z_masked: latent of the masked scene ``(B, 4, h, w)``.
        keep_mask: keep-mask at latent size ``(B, 1, h, w)``, 1 = keep.
        interval: ``(low, high)`` timesteps: guidance only for ``low <= t <= high``, the conditional
            prediction alone (one UNet row instead of two) elsewhere; None = guidance at every step.
    """

    def __init__(self, unet, context, uncond_context, scale, z_masked, keep_mask, interval=None):
        self.unet = unet
        self.scale = float(scale)
        self.interval = check_interval(interval)
        self.conditioning = torch.cat([z_masked, keep_mask], dim=1)
        self.cond_context = context
        if self.scale != 1.0:
            self.context, self.mask = stack_contexts([uncond_context, context])
        self.calls = 0

    def unet_eps(self, x_in: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask=None) -> torch.Tensor:
        dtype = self.unet.dtype
        self.calls += 1
        out = self.unet(x_in.to(dtype), t, encoder_hidden_states=context.to(dtype), encoder_attention_mask=mask).sample
        return out.to(x_in.dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x_in = torch.cat([x, self.conditioning.to(x.dtype)], dim=1)
        if self.scale == 1.0 or not guided_at(t, self.interval):
            return self.unet_eps(x_in, t, self.cond_context)
        out = self.unet_eps(torch.cat([x_in, x_in]), torch.cat([t, t]), self.context, self.mask)
        eps_uncond, eps_cond = out.chunk(2)
        return cfg_combine(eps_uncond, eps_cond, self.scale)


def stack_contexts(contexts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate contexts ``(B_i, T_i, C)`` along the batch for one UNet call, padding shorter ones.

    Returns ``(context (ΣB_i, max T_i, C), mask (ΣB_i, max T_i) or None)``; padded tokens get mask 0, which
    gives them zero attention weight, so padding is exact.
    """
    t = max(c.shape[1] for c in contexts)
    if all(c.shape[1] == t for c in contexts):
        return torch.cat(list(contexts)), None
    padded, masks = [], []
    for c in contexts:
        b, n, d = c.shape
        padded.append(torch.cat([c, c.new_zeros(b, t - n, d)], dim=1))
        masks.append(torch.cat([c.new_ones(b, n), c.new_zeros(b, t - n)], dim=1))
    return torch.cat(padded), torch.cat(masks)


@contextmanager
def per_row_adapters(unet: torch.nn.Module, names: Sequence[str]) -> Iterator[None]:
    """Run a peft-LoRA'd UNet with a different adapter per batch row (``"__base__"`` = no adapter).

    Uses peft's mixed-batch forward: every LoRA layer receives ``adapter_names`` for the rows it sees
    (the LoRA targets keep the batch dimension first: attention and feed-forward linear layers).
    """
    from peft.tuners.lora import LoraLayer

    names = list(names)

    def hook(module, args, kwargs):
        return args, {**kwargs, "adapter_names": names}

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in unet.modules() if isinstance(m, LoraLayer)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class ModifiedGuidanceDenoiser:
    """Subject inpainting's modified classifier-free guidance.

    For a timestep ``t < T`` (``threshold``)::

        e = s · (w · e_subject(x, [class, detail]) + (1 − w) · e_pretrained(x, class)) + (1 − s) · e_pretrained(x, ∅)

    and for ``t ≥ T`` plain guidance with the pretrained model alone:
    ``e = e_pretrained(x, ∅) + s · (e_pretrained(x, class) − e_pretrained(x, ∅))``. Outside the optional
    guidance ``interval`` the same formulas hold with ``s = 1``, so ``e_pretrained(x, ∅)`` is not computed.
    ``s`` is the guidance scale, ``w`` the model weight, ``∅`` the learned unconditional vector. (The
    original passed a constant 1000 to its sampling loop, so its threshold never took effect; here it
    does, as its step function intends.)

    UNet calls per step: with a full fine-tuned UNet, one call of each model (the pretrained one batches
    its two rows); with a LoRA subject (``subject_adapter``, the same UNet object as ``pretrained_unet``),
    ONE call for all three rows. Evaluations a weight of 0 does not need are skipped.

    Args:
        pretrained_unet: the pretrained inpainting UNet.
        subject_unet: the fine-tuned UNet, or ``pretrained_unet`` itself with a LoRA adapter.
        subject_context: ``(B, 1 + k, C)`` = ``[class, detail...]``.
        class_context: ``(B, 1, C)`` the class token for the pretrained model.
        uncond_context: ``(B, 1, C)`` the learned unconditional vector.
        scale, model_weight, threshold: ``s``, ``w``, ``T``.
        z_masked, keep_mask: the conditioning latents ``(B, 4, h, w)`` and ``(B, 1, h, w)``.
        subject_adapter: name of the subject's LoRA adapter in ``subject_unet``.
        interval: ``(low, high)`` timesteps where guidance applies (None: every step).
    """

    def __init__(
        self,
        pretrained_unet,
        subject_unet,
        subject_context,
        class_context,
        uncond_context,
        scale: float,
        model_weight: float,
        threshold: int,
        z_masked,
        keep_mask,
        subject_adapter: str | None = None,
        interval: tuple[int, int] | None = None,
    ):
        if subject_adapter is not None and subject_unet is not pretrained_unet:
            raise ValueError("a LoRA subject must be an adapter of the pretrained UNet itself")
        self.pretrained, self.subject, self.adapter = pretrained_unet, subject_unet, subject_adapter
        self.subject_context, self.class_context, self.uncond = subject_context, class_context, uncond_context
        self.scale, self.weight, self.threshold = float(scale), float(model_weight), int(threshold)
        self.interval = check_interval(interval)
        self.conditioning = torch.cat([z_masked, keep_mask], dim=1)
        self.calls = 0

    def _run(self, unet, x_in, t, contexts, adapters=None) -> list[torch.Tensor]:
        """One UNet call over the rows of several contexts; returns one prediction per context."""
        context, mask = stack_contexts(contexts)
        n = len(contexts)
        if adapters is None and self.adapter is not None:  # the LoRA'd UNet as the pretrained model
            adapters = ["__base__"] * n
        dtype = unet.dtype
        self.calls += 1
        args = (x_in.repeat(n, 1, 1, 1).to(dtype), t.repeat(n))
        kwargs = {"encoder_hidden_states": context.to(dtype), "encoder_attention_mask": mask}
        if adapters is None:
            out = unet(*args, **kwargs).sample
        else:
            rows = [name for name, c in zip(adapters, contexts, strict=True) for _ in range(c.shape[0])]
            with per_row_adapters(unet, rows):
                out = unet(*args, **kwargs).sample
        return list(out.to(x_in.dtype).chunk(n))

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert bool((t == t[0]).all()), "one timestep per call"
        x_in = torch.cat([x, self.conditioning.to(x.dtype)], dim=1)
        s, w = self.scale, self.weight
        guided = s != 1 and guided_at(t, self.interval)
        uncond = [self.uncond] if guided else []
        if int(t[0]) >= self.threshold or w == 0:  # w = 0 is plain guidance with the pretrained model
            *e_u, e_c = self._run(self.pretrained, x_in, t, [*uncond, self.class_context])
            return cfg_combine(e_u[0], e_c, s) if guided else e_c
        need_class = w != 1
        class_ = [self.class_context] if need_class else []
        if self.adapter is not None:
            contexts = [self.subject_context, *uncond, *class_]
            names = [self.adapter] + ["__base__"] * (len(contexts) - 1)
            e_s, *rest = self._run(self.pretrained, x_in, t, contexts, names)
        else:
            (e_s,) = self._run(self.subject, x_in, t, [self.subject_context])
            rest = self._run(self.pretrained, x_in, t, [*uncond, *class_]) if uncond or class_ else []
        e_u = rest.pop(0) if guided else None
        mixed = w * e_s + (1 - w) * rest[0] if need_class else e_s
        return s * mixed + (1 - s) * e_u if guided else mixed


class _Wrapper:
    """A denoiser around another: attributes such as ``calls`` come from the wrapped one."""

    def __init__(self, denoiser, alphas_cumprod: torch.Tensor):
        self.denoiser, self.alphas_cumprod = denoiser, alphas_cumprod

    def __getattr__(self, name: str):
        return getattr(self.denoiser, name)

    def alpha(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``ᾱ_t`` per row, shaped to broadcast over ``x`` ``(B, C, h, w)``."""
        return self.alphas_cumprod.to(x.device, x.dtype)[t.long()].view(-1, 1, 1, 1)


class KnownRegionDenoiser(_Wrapper):
    """``denoiser(x, t) -> eps`` whose clean-latent prediction outside the region is the scene's latent.

    At every step the wrapped denoiser's ``x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t)`` is replaced by
    ``keep · z_scene + (1 - keep) · x0`` and turned back into ``eps``. This is the known-region replacement of
    RePaint (Lugmayr et al., 2022) and of 4-channel SD inpainting, written on ``x0`` so that every sampler
    (PLMS, DDIM, the diffusers solvers) gets it through the one ``eps``. The model then paints the region
    against the scene's true colours rather than its own reconstruction of them: a model that shifts the
    colours of the whole picture still paints a region whose background matches the scene.

    Args:
        denoiser: ``(x (B, C, h, w), t (B,)) -> eps``.
        alphas_cumprod: ``(T,)`` the training schedule's ``ᾱ``.
        z_scene: the unmasked scene's scaled latent ``(B, C, h, w)``.
        keep: ``(B, 1, h, w)``, 1 where the latent is known (outside the region), 0 inside.
    """

    def __init__(self, denoiser, alphas_cumprod: torch.Tensor, z_scene: torch.Tensor, keep: torch.Tensor):
        super().__init__(denoiser, alphas_cumprod)
        self.z_scene, self.keep = z_scene, keep

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = self.denoiser(x, t)
        a = self.alpha(x, t)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        x0 = self.keep * self.z_scene.to(x.dtype) + (1 - self.keep) * x0
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


class VelocityDenoiser(_Wrapper):
    """``denoiser(x, t) -> eps`` for a UNet that predicts ``v = √ᾱ_t · ε − √(1 − ᾱ_t) · z_0`` (Salimans & Ho,
    2022): ``ε = √ᾱ_t · v + √(1 − ᾱ_t) · x_t``.

    The wrapped denoiser's guidance combines the UNet's ``v`` predictions with weights that sum to one
    (``s · cond + (1 − s) · uncond``, and the modified guidance likewise), so converting after the guidance
    equals converting each prediction first; the samplers then see noise predictions, as for SD-v1.

    Args:
        denoiser: ``(x (B, C, h, w), t (B,)) -> v`` (guided).
        alphas_cumprod: ``(T,)`` the training schedule's ``ᾱ``.
    """

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = self.denoiser(x, t)
        a = self.alpha(x, t)
        return a.sqrt() * v + (1 - a).sqrt() * x
