"""realscale: Real-ESRGAN upscaling, as a library, a command line and a worker for hosts."""

from __future__ import annotations

from .descriptor import ModelDescriptor
from .errors import (
    Cancelled,
    DeviceError,
    ImageError,
    ImageReadError,
    ImageWriteError,
    ModelError,
    OutOfMemoryError,
    OutputSizeError,
    OutputTooLargeError,
    RealscaleError,
    UnsupportedModelError,
)
from .loading import load_model
from .upscale import DEFAULT_MODEL, CancelToken, Upscaler

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "CancelToken",
    "Cancelled",
    "DeviceError",
    "ImageError",
    "ImageReadError",
    "ImageWriteError",
    "ModelDescriptor",
    "ModelError",
    "OutOfMemoryError",
    "OutputSizeError",
    "OutputTooLargeError",
    "RealscaleError",
    "UnsupportedModelError",
    "Upscaler",
    "load_model",
]
