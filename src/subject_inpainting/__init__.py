"""Subject inpainting: paint a subject, given by one or a few photos, into a region of a scene.

``PaintSettings`` says how to paint, ``PaintRequest`` what, and a ``Session`` paints requests with a model loaded
once (``SubjectInpaintPipeline`` in ``subject_inpainting.pipeline`` is the model-level API).
"""

__version__ = "0.1.0"

# torch-free: the command line imports these before it checks its inputs
from .session import PaintRequest, PaintResult, Session
from .settings import PaintSettings, SettingsError

__all__ = ["PaintRequest", "PaintResult", "PaintSettings", "Session", "SettingsError", "__version__"]
