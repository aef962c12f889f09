"""Configs read from the original's LDM settings."""

from __future__ import annotations

import pytest

from subject_inpainting.models.configs import RELEASED_LDM_PARAMS, scheduler_config_from_ldm


def test_ldm_parameterization_names_what_the_unet_predicts():
    assert scheduler_config_from_ldm(RELEASED_LDM_PARAMS)["prediction_type"] == "epsilon"  # Paint-by-Example
    assert scheduler_config_from_ldm({**RELEASED_LDM_PARAMS, "parameterization": "v"})["prediction_type"] == (
        "v_prediction"
    )
    with pytest.raises(ValueError, match="parameterization 'x0' is not supported"):
        scheduler_config_from_ldm({**RELEASED_LDM_PARAMS, "parameterization": "x0"})
