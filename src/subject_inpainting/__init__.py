"""Subject inpainting: paint a subject, given by one or a few photos, into a region of a scene."""

__version__ = "0.1.0"

from .settings import PaintSettings, SettingsError

__all__ = ["PaintSettings", "SettingsError", "__version__"]
