#!/usr/bin/env python3
"""realscale for GIMP 3.0 and 3.2: Filters > Enhance > Upscale with Real-ESRGAN...

Registers the image procedure ``plug-in-realscale-upscale`` (model, scale, tile, device).
The layer's pixels go, in the image's own precision, to the realscale worker through the
standard-library client installed beside this file (``realscale_client.py``); GIMP's Python
never imports torch. The result becomes a new layer above the source in the image enlarged
by the scale, the source is hidden, and all of it is one undo step. Nothing in the image
changes before the worker has answered, so a failure leaves the image as it was. In GIMP 3.2
a vector or link layer is upscaled as GIMP renders it, and the result is an ordinary raster
layer (the source keeps its path or file, hidden).

Installed by ``realscale install gimp`` (or from the zip ``realscale package gimp`` makes).
"""

from __future__ import annotations

import os
import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, GLib, GObject  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # realscale_client.py is installed beside this file

PROCEDURE = "plug-in-realscale-upscale"
BINARY = "realscale-upscale"
TITLE = "Upscale with Real-ESRGAN"
DEFAULT_MODEL = "realesrgan-x4plus"
INSTALL_HINT = "install or repair the worker with `realscale install gimp`"
# Pixels cross between GIMP and Python in strips of about this many bytes, so a large
# result never needs a second full-size copy on either side.
STRIP_BYTES = 8 << 20
# Tests only: a file to which every progress value given to GIMP is appended.
PROGRESS_TRACE = os.environ.get("REALSCALE_GIMP_PROGRESS_TRACE", "")
# Share of the progress bar given to reading pixels, the worker, and writing the result.
READ_SHARE, WORK_SHARE = 0.05, 0.85

# GIMP precision (component type) -> babl component type, client depth, bytes per component.
# u32 and double have no client depth: they travel as float32 (the network computes in
# float32 anyway) and GIMP converts back into the image's precision on write.
_COMPONENTS = {
    "U8": ("u8", "u8", 1),
    "U16": ("u16", "u16", 2),
    "U32": ("float", "f32", 4),
    "HALF": ("half", "f16", 2),
    "FLOAT": ("float", "f32", 4),
    "DOUBLE": ("float", "f32", 4),
}


class PluginError(Exception):
    """A failure the user can act on; its text is the whole message GIMP shows."""


class Transfer:
    """How one layer's pixels travel: babl format, client channels and depth.

    Always the non-linear (sRGB-encoded, ``R'G'B'``/``Y'``) babl encodings, which are what the
    network was trained on, in the image's own colour space, so the values are exactly the
    image's encoded values and nothing is converted for an image with its own profile.
    """

    def __init__(self, image: Gimp.Image, drawable: Gimp.Drawable) -> None:
        component = _component(image.get_precision())
        babl_type, self.depth, size = _COMPONENTS[component]
        base = image.get_base_type()
        alpha = drawable.has_alpha()
        self.indexed = base == Gimp.ImageBaseType.INDEXED
        self.gray = base == Gimp.ImageBaseType.GRAY
        if self.gray:
            encoding, self.channels = ("Y'A", 2) if alpha else ("Y'", 1)
            self.layer_type = Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
        else:  # RGB, and indexed images read through their palette as RGB
            encoding, self.channels = ("R'G'B'A", 4) if alpha else ("R'G'B'", 3)
            self.layer_type = Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE
        self.bpp = self.channels * size
        self.format = _format_name(f"{encoding} {babl_type}", drawable)


def _component(precision: Gimp.Precision) -> str:
    name = precision.value_name.upper()  # e.g. GIMP_PRECISION_U16_NON_LINEAR
    for component in _COMPONENTS:
        if f"_{component}_" in name:
            return component
    msg = f"this image's precision ({precision.value_nick}) is not supported"
    raise PluginError(msg)


def _format_name(encoding: str, drawable: Gimp.Drawable) -> str:
    """The babl format name for ``encoding`` in the drawable's colour space.

    For the built-in sRGB space this is the plain name (``R'G'B'A u16``); for an image with
    its own profile babl names the space-specific format, which Gegl looks up by that name.
    """
    try:
        space = Babl.format_get_space(drawable.get_format())
        return Babl.get_name(Babl.format_with_space(encoding, space))
    except Exception:  # an older babl without these: plain sRGB is right
        return encoding


def _strips(width: int, height: int, bpp: int):
    rows = max(1, STRIP_BYTES // max(1, width * bpp))
    for y in range(0, height, rows):
        yield y, min(rows, height - y)


def read_pixels(drawable: Gimp.Drawable, transfer: Transfer, progress) -> bytearray:
    width, height = drawable.get_width(), drawable.get_height()
    buffer = drawable.get_buffer()
    data = bytearray()
    for y, rows in _strips(width, height, transfer.bpp):
        rect = Gegl.Rectangle.new(0, y, width, rows)
        data += bytes(buffer.get(rect, 1.0, transfer.format, Gegl.AbyssPolicy.NONE))
        progress((y + rows) / height)
    expected = width * height * transfer.bpp
    if len(data) != expected:
        msg = f"GIMP gave {len(data)} bytes of pixels for the layer, expected {expected}"
        raise PluginError(msg)
    return data


def write_pixels(layer: Gimp.Layer, transfer: Transfer, data, width: int, height: int,
                 progress) -> None:
    view = memoryview(data)
    expected = width * height * transfer.bpp
    if len(view) != expected:
        msg = f"the worker returned {len(view)} bytes for {width}x{height}, expected {expected}"
        raise PluginError(msg)
    buffer = layer.get_buffer()
    stride = width * transfer.bpp
    for y, rows in _strips(width, height, transfer.bpp):
        rect = Gegl.Rectangle.new(0, y, width, rows)
        buffer.set(rect, transfer.format, bytes(view[y * stride : (y + rows) * stride]))
        progress((y + rows) / height)
    buffer.flush()
    layer.update(0, 0, width, height)


def upscale_with_worker(data: bytearray, width: int, height: int, transfer: Transfer, *,
                        model: str, scale: float, tile: int, device: str, progress):
    """Send the pixels to the worker; return (bytes, width, height) or raise PluginError."""
    try:
        import realscale_client
    except ImportError as exc:
        msg = (f"realscale's worker client is missing or broken beside the plug-in in {HERE} "
               f"({exc}); {INSTALL_HINT}")
        raise PluginError(msg) from exc
    client = realscale_client.WorkerClient(host="gimp")
    try:
        layout = realscale_client.PixelLayout(channels=transfer.channels, depth=transfer.depth)
        result = client.upscale(
            data, width, height, layout, model=model, scale=scale, tile=tile, device=device,
            progress=lambda done, total: progress(done / total if total else 1.0),
        )
        return result.data, result.width, result.height
    except realscale_client.WorkerError as exc:
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, realscale_client.WorkerNotInstalled) and "realscale install" not in text:
            text = f"{text.rstrip('.')}; {INSTALL_HINT}"
        raise PluginError(text) from exc
    finally:
        client.close()


def _check_drawables(drawables) -> Gimp.Layer:
    if len(drawables) != 1:
        msg = f"select exactly one layer to upscale ({len(drawables)} are selected)"
        raise PluginError(msg)
    drawable = drawables[0]
    if not drawable.is_layer() or drawable.is_layer_mask():
        msg = f"'{drawable.get_name()}' is not a layer: select the layer to upscale"
        raise PluginError(msg)
    if drawable.is_group():
        msg = (f"'{drawable.get_name()}' is a layer group: merge it (Layer > Merge Layer "
               "Group) or select one of its layers")
        raise PluginError(msg)
    return drawable


def _sub_progress(start: float, share: float):
    def update(fraction: float) -> None:
        value = start + share * min(max(fraction, 0.0), 1.0)
        Gimp.progress_update(value)
        if PROGRESS_TRACE:  # the host tests read this to see the bar follow the worker
            with open(PROGRESS_TRACE, "a", encoding="utf-8") as trace:
                trace.write(f"{value:.6f}\n")

    return update


def upscale_layer(image: Gimp.Image, drawables, model: str, scale: float, tile: int,
                  device: str) -> Gimp.Layer:
    """Do the whole job; raises PluginError with the message for the user."""
    model, device = model.strip(), (device.strip() or "auto")
    if not model:
        raise PluginError("no model given: name a model such as realesrgan-x4plus")
    if not scale > 0:
        msg = f"the scale must be greater than 0, got {scale:g}"
        raise PluginError(msg)
    if tile < 0:
        msg = f"the tile size must be 0 (automatic) or a number of pixels, got {tile}"
        raise PluginError(msg)
    source = _check_drawables(drawables)
    transfer = Transfer(image, source)
    width, height = source.get_width(), source.get_height()

    Gimp.progress_init(f"Real-ESRGAN ({model}): upscaling '{source.get_name()}'")
    data = read_pixels(source, transfer, _sub_progress(0.0, READ_SHARE))
    result, new_width, new_height = upscale_with_worker(
        data, width, height, transfer, model=model, scale=scale, tile=tile, device=device,
        progress=_sub_progress(READ_SHARE, WORK_SHARE),
    )
    del data
    Gimp.progress_set_text("Real-ESRGAN: adding the upscaled layer")
    return _add_result(image, source, transfer, result, new_width, new_height, scale)


def _add_result(image: Gimp.Image, source: Gimp.Layer, transfer: Transfer, data,
                width: int, height: int, scale: float) -> Gimp.Layer:
    _, off_x, off_y = source.get_offsets()
    image_w, image_h = image.get_width(), image.get_height()
    covers_image = (off_x, off_y, source.get_width(), source.get_height()) == (
        0, 0, image_w, image_h)
    if covers_image:
        new_image_w, new_image_h = width, height  # the worker's rounding decides, exactly
    else:
        new_image_w, new_image_h = max(1, round(image_w * scale)), max(1, round(image_h * scale))
    write_progress = _sub_progress(READ_SHARE + WORK_SHARE, 1.0 - READ_SHARE - WORK_SHARE)

    image.undo_group_start()
    layer = None
    inserted = False
    try:
        # An indexed layer cannot hold the new colours: the image becomes RGB (undoable).
        if transfer.indexed and not image.convert_rgb():
            raise PluginError("could not convert the indexed image to RGB")
        layer = Gimp.Layer.new(image, f"{source.get_name()} (Real-ESRGAN x{scale:g})", width,
                               height, transfer.layer_type, source.get_opacity(),
                               source.get_mode())
        if layer is None:
            raise PluginError("GIMP could not create the new layer")
        write_pixels(layer, transfer, data, width, height, write_progress)
        if (new_image_w, new_image_h) != (image_w, image_h) and not image.scale(
                new_image_w, new_image_h):
            msg = f"GIMP could not scale the image to {new_image_w}x{new_image_h}"
            raise PluginError(msg)
        parent = source.get_parent()
        if not image.insert_layer(layer, parent, image.get_item_position(source)):
            raise PluginError("GIMP could not add the new layer to the image")
        inserted = True
        layer.set_offsets(round(off_x * scale), round(off_y * scale))
        source.set_visible(False)
        image.set_selected_layers([layer])
    except Exception:
        if layer is not None and not inserted:
            layer.delete()
        raise
    finally:
        image.undo_group_end()
    return layer


class RealscaleUpscale(Gimp.PlugIn):
    """The plug-in: one image procedure."""

    def do_set_i18n(self, _name):
        return False

    def do_query_procedures(self):
        return [PROCEDURE]

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("Upscale with Real-ESRGAN...")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "Upscale a layer with Real-ESRGAN into a new layer",
            "Enlarges the image by the scale and adds the layer upscaled by a Real-ESRGAN "
            "model above it (the source layer is kept, hidden), in one undo step. The work "
            "is done by the realscale worker (`realscale install gimp`). Models: "
            "realesrgan-x4plus (photos), realesrgan-x4plus-anime, realesr-animevideov3 (x4, "
            "-x2, -x3; fast), or any name `realscale models` lists.",
            name,
        )
        procedure.set_attribution("realscale", "realscale contributors", "2025")
        flags = GObject.ParamFlags.READWRITE
        procedure.add_string_argument(
            "model", "_Model", "Real-ESRGAN model name (see `realscale models`)",
            DEFAULT_MODEL, flags)
        procedure.add_double_argument(
            "scale", "_Scale", "How many times larger the image becomes", 1.0, 16.0, 4.0,
            flags)
        procedure.add_int_argument(
            "tile", "_Tile size", "Tile size in pixels; 0 chooses one automatically", 0,
            16384, 0, flags)
        procedure.add_string_argument(
            "device", "_Device", "auto, cpu, cuda, cuda:N or mps", "auto", flags)
        return procedure

    def run(self, procedure, run_mode, image, drawables, config, _data):
        if run_mode == Gimp.RunMode.INTERACTIVE and not _dialog(procedure, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        try:
            upscale_layer(image, drawables, config.get_property("model"),
                          config.get_property("scale"), config.get_property("tile"),
                          config.get_property("device"))
        except PluginError as exc:
            return _failure(procedure, str(exc))
        except Exception as exc:  # GIMP shows nothing for an uncaught error
            return _failure(procedure, f"unexpected error: {type(exc).__name__}: {exc}")
        finally:
            Gimp.progress_end()
        Gimp.displays_flush()
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _dialog(procedure, config) -> bool:
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(BINARY)
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title=TITLE)
    dialog.fill(["model", "scale", "tile", "device"])
    try:
        return bool(dialog.run())
    finally:
        dialog.destroy()


def _failure(procedure, text: str):
    text = text.strip() or "the upscale failed for an unknown reason"
    message = f"Real-ESRGAN upscale failed: {text}"
    print(f"{BINARY}: {message}", file=sys.stderr)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


if __name__ == "__main__":
    Gimp.main(RealscaleUpscale.__gtype__, sys.argv)
