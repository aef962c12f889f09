"""subject-inpainting's ComfyUI nodes: paint a subject into a region of a photo from ComfyUI.

ComfyUI loads this folder from ``ComfyUI/custom_nodes/`` and registers ``NODE_CLASS_MAPPINGS``; the nodes
(``subject_inpaint_nodes``) paint through the ``subject-inpainting`` package, which must be installed in
ComfyUI's Python. ``README.md`` beside this file says how to install and use them.
"""

try:
    import subject_inpainting  # noqa: F401
except ImportError as e:  # ComfyUI prints this line where it lists the custom nodes that failed to load
    raise ImportError(
        "the subject-inpainting package is not installed in ComfyUI's Python; install it with that Python "
        "(python -m pip install subject-inpainting) and restart ComfyUI"
    ) from e

from .subject_inpaint_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_models_folder

register_models_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
