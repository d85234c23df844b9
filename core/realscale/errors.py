"""The exceptions realscale raises.

Every message is one sentence a user can act on: what was wrong and what to do.
Callers (the command line, the worker, host plug-ins) show ``str(error)`` as it is.
"""

from __future__ import annotations


class RealscaleError(Exception):
    """Base class for every error realscale raises on purpose."""


class ModelError(RealscaleError):
    """A model name, weights file or catalogue entry could not be used."""


class UnsupportedModelError(ModelError):
    """A weights file holds tensors of an architecture realscale does not know."""


class ImageError(RealscaleError):
    """An input image could not be read or an output image could not be written."""


class ImageReadError(ImageError):
    """An input file is missing, empty, truncated, not an image, or too large."""


class ImageWriteError(ImageError):
    """An output file could not be written; nothing was left behind."""


class OutputSizeError(RealscaleError):
    """The requested scale or output size cannot be made (zero, negative, not a number, or
    both a scale and a target size)."""


class OutputTooLargeError(OutputSizeError):
    """The result would hold more pixels than the limit (the readers' limit, ``--max-pixels``)."""


class DownloadError(ModelError):
    """Official weights could not be downloaded or failed their checksum."""


class DeviceError(RealscaleError):
    """The requested device or precision is not available on this machine."""


class OutOfMemoryError(DeviceError):
    """Even the smallest tile did not fit into the device's memory."""


class Cancelled(RealscaleError):
    """The caller cancelled an upscale; no partial result is returned."""
