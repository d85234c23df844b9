"""Upscale settings, remembered in Krita's own settings file (kritarc, group [realscale])."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

GROUP = "realscale"
TARGETS = ("layer", "canvas")
DEVICES = ("auto", "cpu", "cuda", "mps")
MIN_TILE = 16
MAX_SCALE = 16.0


@dataclass
class Settings:
    """What one upscale does. ``tile`` 0 lets the worker choose the tile size."""

    model: str = "realesrgan-x4plus"
    scale: float = 4.0
    target: str = "layer"
    tile: int = 0
    device: str = "auto"

    @property
    def scale_label(self) -> str:
        """The scale as people write it: "x4", "x2.5"."""
        return f"x{self.scale:g}"

    def normalised(self) -> Settings:
        """A copy with every invalid value replaced by its default."""
        default = Settings()
        model = self.model.strip() if isinstance(self.model, str) else ""
        try:
            scale = float(self.scale)
        except (TypeError, ValueError):
            scale = default.scale
        if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
            scale = default.scale
        try:
            tile = int(self.tile)
        except (TypeError, ValueError):
            tile = default.tile
        if tile != 0 and tile < MIN_TILE:
            tile = default.tile
        return Settings(
            model=model or default.model,
            scale=scale,
            target=self.target if self.target in TARGETS else default.target,
            tile=tile,
            device=self.device if self.device in DEVICES else default.device,
        )


def load() -> Settings:
    """The last settings used, or the defaults (also for any value that does not parse)."""
    from krita import Krita

    app = Krita.instance()
    default = Settings()
    values = {}
    for key, value in asdict(default).items():
        values[key] = app.readSetting(GROUP, key, str(value))
    return Settings(**values).normalised()


def save(settings: Settings) -> None:
    """Remember these settings for the dialog and for "Upscale Again"."""
    from krita import Krita

    app = Krita.instance()
    for key, value in asdict(settings.normalised()).items():
        app.writeSetting(GROUP, key, f"{value:g}" if isinstance(value, float)
                         else str(value))
