"""LoRA adapters on the UNet's attention projections (through ``peft``): a subject fine-tuned as a LoRA is
one adapter over the base UNet, so that modified guidance holds one UNet in memory, not two."""

from __future__ import annotations

import torch

ADAPTER_NAME = "subject"
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def lora_config(rank: int, alpha: float | None = None, targets=DEFAULT_LORA_TARGETS):
    """The peft ``LoraConfig`` of a subject adapter (alpha defaults to the rank: scaling 1)."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=list(targets))


def add_lora(unet: torch.nn.Module, config, name: str = ADAPTER_NAME) -> None:
    """Inject a LoRA adapter into ``unet`` (replacing an adapter of the same name)."""
    remove_lora(unet, name)
    unet.add_adapter(config, adapter_name=name)


def remove_lora(unet: torch.nn.Module, name: str = ADAPTER_NAME) -> None:
    """Remove adapter ``name``; with no adapter left, the UNet gets back its plain layers (and key names)."""
    adapters = getattr(unet, "peft_config", None) or {}
    if name not in adapters:
        return
    if len(adapters) == 1:
        unet.unload_lora()
    else:
        unet.delete_adapters([name])


def lora_state_dict(unet: torch.nn.Module, name: str = ADAPTER_NAME) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(unet, adapter_name=name)
