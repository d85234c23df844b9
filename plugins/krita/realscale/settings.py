"""Upscale settings, remembered in Krita's own settings file (kritarc, group [realscale]).

Besides the choices themselves, the group keeps the speed of the last runs (input pixels per
second for each model, device and precision), so the dialog can estimate the time of the next
one before the worker has measured anything.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass

GROUP = "realscale"
TARGETS = ("layer", "canvas")
PRECISIONS = ("auto", "exact", "fast")
"""auto: the worker's choice; exact: fp32; fast: the device's fast precision (bf16/fp16)."""
FAST_VALUES = ("bf16", "fp16")
MIN_TILE = 16
MAX_SCALE = 16.0
RATES_KEY = "rates"
MAX_RATES = 32
_DEVICE = re.compile(r"[a-z]+(:[0-9]{1,3})?")


@dataclass
class Settings:
    """What one upscale does. ``tile`` 0 lets the worker choose the tile size; ``device`` is
    "auto" or a worker device name ("cpu", "cuda:0"); ``fast`` is what "fast" precision meant
    on that device when it was chosen (kept so Upscale Again needs no device list)."""

    model: str = "realesrgan-x4plus"
    scale: float = 4.0
    target: str = "layer"
    tile: int = 0
    device: str = "auto"
    precision: str = "auto"
    fast: str = ""

    @property
    def scale_label(self) -> str:
        """The scale as people write it: "x4", "x2.5"."""
        return f"x{self.scale:g}"

    @property
    def wire_precision(self) -> str:
        """The precision the worker is asked for: auto, fp32, bf16 or fp16."""
        if self.precision == "exact":
            return "fp32"
        if self.precision == "fast" and self.fast in FAST_VALUES:
            return self.fast
        return "auto"

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
        device = self.device if isinstance(self.device, str) else ""
        device = device.strip().lower()
        if device == "cuda":  # settings saved before devices were listed
            device = "cuda:0"
        return Settings(
            model=model or default.model,
            scale=scale,
            target=self.target if self.target in TARGETS else default.target,
            tile=tile,
            device=device if _DEVICE.fullmatch(device) else default.device,
            precision=self.precision if self.precision in PRECISIONS else default.precision,
            fast=self.fast if self.fast in FAST_VALUES else "",
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


def rate_key(model: str, device: str, precision: str) -> str:
    """The key of a remembered speed: model, device and wire precision."""
    return f"{model}|{device}|{precision}"


def load_rates() -> dict[str, float]:
    """Input pixels per second of earlier runs, by ``rate_key``."""
    from krita import Krita

    text = Krita.instance().readSetting(GROUP, RATES_KEY, "")
    try:
        raw = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    rates = {}
    for key, value in raw.items():
        if isinstance(key, str) and isinstance(value, (int, float)) and math.isfinite(value) \
                and value > 0:
            rates[key] = float(value)
    return rates


def remember_rate(key: str, pixels_per_second: float) -> None:
    """Keep the speed of a finished run (the newest few runs only)."""
    from krita import Krita

    if not (math.isfinite(pixels_per_second) and pixels_per_second > 0):
        return
    rates = load_rates()
    rates.pop(key, None)
    rates[key] = round(pixels_per_second, 1)
    kept = dict(list(rates.items())[-MAX_RATES:])
    Krita.instance().writeSetting(GROUP, RATES_KEY, json.dumps(kept, separators=(",", ":")))
