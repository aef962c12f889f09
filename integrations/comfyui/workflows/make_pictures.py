"""Writes the example workflows' input pictures, from the toy world the embedded model was trained on, and the
pack's icon.

- ``subject-inpaint-scene.png``: a held-out toy scene whose region to paint is transparent (ComfyUI's ``LoadImage``
  gives it as the ``MASK``, 1 where the picture is transparent);
- ``subject-inpaint-reference.png``: a photo of a held-out toy subject, cut out onto white;
- ``../icon.png``: the scene with its region, the reference, and what the embedded model paints (the nodes'
  defaults, seed 0).

    python integrations/comfyui/workflows/make_pictures.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from subject_inpainting import PaintRequest, PaintSettings, Session
from subject_inpainting.toy import world
from subject_inpainting.weights import default_model

HERE = Path(__file__).parent
CASE = 3  # the held-out subject and the case's seed
SIZE = 256
CELL = 200


def main() -> None:
    identity = world.split_identities(world.trained_world(default_model()), "heldout", CASE + 1)[CASE]
    case = world.make_case(identity, seed=CASE, size=SIZE)
    alpha = np.where(case.mask, 0, 255).astype(np.uint8)
    Image.fromarray(np.dstack([case.scene, alpha]), "RGBA").save(HERE / "subject-inpaint-scene.png")
    Image.fromarray(case.reference, "RGB").save(HERE / "subject-inpaint-reference.png")

    request = PaintRequest(case.scene, case.reference, mask=case.mask, settings=PaintSettings(keep_known=True))
    (painted,) = Session(dtype="float32").paint_one(request)
    shown = case.scene.copy()
    shown[case.mask] = (0.5 * shown[case.mask] + 0.5 * np.array([255, 0, 255])).astype(np.uint8)
    reference = Image.new("RGB", (SIZE, SIZE), "white")
    reference.paste(
        Image.fromarray(case.reference), ((SIZE - case.reference.shape[1]) // 2, (SIZE - case.reference.shape[0]) // 2)
    )
    icon = Image.new("RGB", (3 * CELL, CELL), "white")
    for k, picture in enumerate([Image.fromarray(shown), reference, painted]):
        icon.paste(picture.resize((CELL, CELL), Image.Resampling.LANCZOS), (k * CELL, 0))
    icon.save(HERE.parent / "icon.png")


if __name__ == "__main__":
    main()
