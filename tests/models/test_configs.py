"""Configs read from the original's LDM settings, and the registry of model sizes."""

from __future__ import annotations

import pytest

from subject_inpainting.models.configs import (
    MODEL_SIZES,
    RELEASED_LDM_PARAMS,
    scheduler_config_from_ldm,
    unet_config_from_ldm,
)


def test_ldm_parameterization_names_what_the_unet_predicts():
    assert scheduler_config_from_ldm(RELEASED_LDM_PARAMS)["prediction_type"] == "epsilon"  # Paint-by-Example
    assert scheduler_config_from_ldm({**RELEASED_LDM_PARAMS, "parameterization": "v"})["prediction_type"] == (
        "v_prediction"
    )
    with pytest.raises(ValueError, match="parameterization 'x0' is not supported"):
        scheduler_config_from_ldm({**RELEASED_LDM_PARAMS, "parameterization": "x0"})


@pytest.mark.parametrize("name", sorted(MODEL_SIZES))
def test_every_size_fits_together(name):
    size = MODEL_SIZES[name]
    latent_side = size.resolution // 2 ** (len(size.vae["block_out_channels"]) - 1)
    assert size.unet["sample_size"] == latent_side
    # noisy latent + masked-scene latent + mask in, a latent out
    assert size.unet["in_channels"] == 2 * size.vae["latent_channels"] + 1
    assert size.unet["out_channels"] == size.vae["latent_channels"]
    encoder = size.reference_encoder_config(detail_layers=1)
    assert encoder["context_dim"] == size.unet["cross_attention_dim"] and encoder["detail_mapper_layers"] == 1


def test_the_released_size_is_read_from_the_released_configuration():
    size = MODEL_SIZES["sd-v1"]
    assert size.unet == unet_config_from_ldm(RELEASED_LDM_PARAMS) and size.resolution == 512
    assert size.unet["block_out_channels"] == [320, 640, 1280, 1280] and size.vision["num_hidden_layers"] == 24
