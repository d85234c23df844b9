"""Pixels and layers: read the source from a Krita document and put the result back.

Nothing here talks to the worker. ``capture`` reads everything it needs before the worker
runs and ``apply`` changes the document only once a complete result is at hand, so a cancel
or an error in between leaves the document exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import PluginError

#: (colour model, depth) -> (channels, sample depth for the client, colour order).
#: Krita hands integer RGBA over as B, G, R, A and float RGBA as R, G, B, A; grey is
#: grey, alpha at every depth. The client takes these layouts as they are.
LAYOUTS = {
    ("RGBA", "U8"): (4, "u8", "bgr"),
    ("RGBA", "U16"): (4, "u16", "bgr"),
    ("RGBA", "F16"): (4, "f16", "rgb"),
    ("RGBA", "F32"): (4, "f32", "rgb"),
    ("GRAYA", "U8"): (2, "u8", "rgb"),
    ("GRAYA", "U16"): (2, "u16", "rgb"),
    ("GRAYA", "F16"): (2, "f16", "rgb"),
    ("GRAYA", "F32"): (2, "f32", "rgb"),
}
BYTES_PER_SAMPLE = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
MODEL_NAMES = {
    "RGBA": "RGB", "GRAYA": "greyscale", "CMYKA": "CMYK", "LABA": "L*a*b*", "XYZA": "XYZ",
    "YCbCrA": "YCbCr", "A": "alpha-only",
}
DEPTH_NAMES = {"U8": "8-bit", "U16": "16-bit", "F16": "16-bit float", "F32": "32-bit float"}
SCALE_FILTER = "Bicubic"
MAX_SIDE = 100_000
"""Krita refuses larger images; say so before the worker spends minutes on one."""


@dataclass
class Capture:
    """The source pixels and everything needed to put the result back."""

    document: object
    #: The source layer, or None when the source is the whole visible canvas.
    node: object
    name: str
    width: int
    height: int
    data: bytes
    channels: int
    depth: str
    order: str
    #: (model, depth, profile) of the source pixels.
    colour_space: tuple
    #: Top-level layers the result replaces on screen: hidden once the result is in.
    hide: list = field(default_factory=list)

    @property
    def pixel_size(self) -> int:
        return self.channels * BYTES_PER_SAMPLE[self.depth]


def capture(document, target: str) -> Capture:
    """Read the active layer (``target="layer"``) or the visible canvas (``"canvas"``)."""
    width, height = document.width(), document.height()
    if width < 1 or height < 1:
        raise PluginError("The image is empty.")
    if target == "canvas":
        document.refreshProjection()
        document.waitForDone()
        space = (document.colorModel(), document.colorDepth(), document.colorProfile())
        layout = _layout(space, "The image")
        data = bytes(document.pixelData(0, 0, width, height))
        hide = [node for node in document.topLevelNodes() if node.visible()]
        result = Capture(document, None, "Visible", width, height, data, *layout, space, hide)
    else:
        node = document.activeNode()
        if node is None:
            raise PluginError("Select the layer to upscale in the Layers docker first.")
        if node.type().endswith("mask"):
            raise PluginError(
                f'The active node "{node.name()}" is a mask. Select the layer to upscale, or '
                'choose "Whole visible canvas".')
        space = (node.colorModel(), node.colorDepth(), node.colorProfile())
        layout = _layout(space, f'The layer "{node.name()}"')
        document.waitForDone()
        data = bytes(node.pixelData(0, 0, width, height))
        result = Capture(document, node, node.name(), width, height, data, *layout, space,
                         [node])
    if len(result.data) != width * height * result.pixel_size:
        raise PluginError(
            f"Krita returned {len(result.data)} bytes of pixels for a {width}x{height} image; "
            f"expected {width * height * result.pixel_size}.")
    return result


def _layout(space: tuple, what: str) -> tuple:
    model, depth, _profile = space
    layout = LAYOUTS.get((model, depth))
    if layout is None:
        raise PluginError(
            f"{what} is {DEPTH_NAMES.get(depth, depth)} {MODEL_NAMES.get(model, model)}. "
            "Real-ESRGAN works on RGB and greyscale images only: convert it with "
            "Image > Convert Image Color Space to RGB/Alpha (or Grayscale/Alpha) first, then "
            "upscale.")
    return layout


def result_name(capture: Capture, scale_label: str) -> str:
    """The new layer's name: "Background (Real-ESRGAN x4)"."""
    return f"{capture.name} (Real-ESRGAN {scale_label})"


def check_result(capture: Capture, data, width: int, height: int) -> None:
    """Refuse a result that cannot go into the document, before anything is changed."""
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise PluginError(f"The upscaled image would be {width}x{height} pixels; Krita handles "
                          f"at most {MAX_SIDE} pixels a side. Choose a smaller scale.")
    expected = width * height * capture.pixel_size
    if len(data) != expected:
        raise PluginError(f"The worker returned {len(data)} bytes for a {width}x{height} "
                          f"result; expected {expected}.")


def apply(capture: Capture, data, width: int, height: int, scale_label: str):
    """Resize the image to width x height and add the result above the source; returns the
    new layer. The source stays (hidden), every other layer keeps its place.

    The new layer gets its pixels before it joins the image, so what can fail for want of
    memory fails before the document has changed.
    """
    from .qt import QByteArray

    check_result(capture, data, width, height)
    document = capture.document
    layer = document.createNode(result_name(capture, scale_label), "paintlayer")
    model, depth, profile = capture.colour_space
    if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != capture.colour_space:
        layer.setColorSpace(model, depth, profile)  # a layer unlike its image
    pixels = QByteArray(data if isinstance(data, bytes) else bytes(data))
    if layer.setPixelData(pixels, 0, 0, width, height) is False:
        raise PluginError("Krita did not take the upscaled pixels; the image is unchanged.")
    del pixels

    x_res, y_res = document.xRes(), document.yRes()
    # Krita 5.1's scaleImage passes the resolution through an integer division by 72: put
    # the document's own resolution back afterwards.
    document.scaleImage(width, height, int(round(x_res)), int(round(y_res)), SCALE_FILTER)
    document.waitForDone()
    document.setXRes(x_res)
    document.setYRes(y_res)
    if capture.node is None:
        parent, above = document.rootNode(), None  # None: on top of the stack
    else:
        parent, above = capture.node.parentNode(), capture.node
    if parent.addChildNode(layer, above) is False:
        raise PluginError("Krita did not add the upscaled layer; Edit > Undo takes the image "
                          "back to its size.")
    for node in capture.hide:
        node.setVisible(False)
    document.setActiveNode(layer)
    document.refreshProjection()
    document.waitForDone()
    return layer
