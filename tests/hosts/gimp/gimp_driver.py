"""Runs INSIDE gimp-console-3.0 or -3.2 (``--batch-interpreter=python-fu-eval``), in a chroot.

The test writes a job (JSON, path in ``$REALSCALE_GIMP_JOB``) and feeds GIMP
``exec(open(<this file>).read())`` on stdin. Each case loads a real image (or, in GIMP 3.2,
makes one whose layer is a vector layer or a link layer to an image file), optionally changes
it (precision, indexed, offsets), calls ``plug-in-realscale-upscale`` through the PDB exactly
as a script would, and records what GIMP reports: status, error message, the image and its
layers before and after, the source layer's and the new layer's raw pixels in a chosen babl
format, and a PNG export. Everything is written to the job's ``result`` file; the test judges
it. The driver itself never raises (gimp-console would exit 64 and the details would be
lost), except when it cannot write its result.
"""

import json
import os
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, Gio  # noqa: E402

VECTOR_FILL = "#d04a1c"
"""The vector layer's fill: a colour, so every channel carries something to upscale."""

PROCEDURE = "plug-in-realscale-upscale"


def _describe_procedure(proc):
    args = []
    for spec in proc.get_arguments():
        arg = {"name": spec.name, "type": spec.value_type.name,
               "spec": type(spec).__gtype__.name}
        if isinstance(spec, Gimp.ParamChoice):  # nicks in order, with labels and the default
            choice = Gimp.param_spec_choice_get_choice(spec)
            arg["choices"] = [[nick, choice.get_label(nick)] for nick in choice.list_nicks()]
            arg["default"] = Gimp.param_spec_choice_get_default(spec)
        args.append(arg)
    return {
        "menu_label": proc.get_menu_label(),
        "menu_paths": list(proc.get_menu_paths()),
        "image_types": proc.get_image_types(),
        "arguments": args,
    }


def _describe_image(image):
    layers = []
    for layer in image.get_layers():
        _, x, y = layer.get_offsets()
        layers.append({
            "name": layer.get_name(),
            "kind": type(layer).__name__,  # Layer, VectorLayer, LinkLayer, ...
            "width": layer.get_width(),
            "height": layer.get_height(),
            "offsets": [x, y],
            "visible": layer.get_visible(),
            "has_alpha": layer.has_alpha(),
            "format": Babl.get_name(layer.get_format()),
        })
    return {
        "width": image.get_width(),
        "height": image.get_height(),
        "precision": image.get_precision().value_nick,
        "base_type": image.get_base_type().value_nick,
        "layers": layers,
        "selected": [layer.get_name() for layer in image.get_selected_layers()],
        "dirty": image.is_dirty(),  # any undo step since clean_all() makes it dirty
    }


def _open(case):
    """The case's image: a file loaded as GIMP opens it, or one made around a GIMP 3.2
    vector layer (an ellipse path, filled) or link layer (to the file ``input``)."""
    make = case.get("make")
    if make is None:
        return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(case["input"]))
    width, height = case["size"]
    image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    if make == "vector":
        path = Gimp.Path.new(image, "outline")
        image.insert_path(path, None, 0)
        x, y, rx, ry = case["ellipse"]
        path.bezier_stroke_new_ellipse(x, y, rx, ry, 0.0)
        layer = Gimp.VectorLayer.new(image, path)
        layer.set_fill_color(Gegl.Color.new(VECTOR_FILL))
    elif make == "blank":  # a large plain layer, for the dialog's size checks
        layer = Gimp.Layer.new(image, "blank", width, height, Gimp.ImageType.RGB_IMAGE, 100.0,
                               Gimp.LayerMode.NORMAL)
    elif make == "link":
        layer = Gimp.LinkLayer.new(image, Gio.File.new_for_path(case["input"]))
    else:
        raise ValueError(f"unknown kind of image to make: {make!r}")
    if layer is None or not image.insert_layer(layer, None, 0):
        raise RuntimeError(f"GIMP could not make the {make} layer")
    return image


def _prepare(image, case):
    layer = image.get_layers()[0]
    if case.get("crop"):  # (x, y, width, height) of a large test image, as a user crops it
        x, y, width, height = case["crop"]
        image.crop(width, height, x, y)
    if case.get("precision"):
        image.convert_precision(getattr(Gimp.Precision, case["precision"]))
    if case.get("indexed"):
        image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE,
                              case["indexed"], False, False, "")
    if case.get("offsets"):
        # A layer smaller than the canvas, away from its corner: the canvas grows around it.
        x, y = case["offsets"]
        image.resize(image.get_width() + x + 3, image.get_height() + y + 5, x, y)
    return layer


def _run_procedure(proc, image, drawables, args, run_mode="NONINTERACTIVE"):
    cfg = proc.create_config()
    cfg.set_property("run-mode", getattr(Gimp.RunMode, run_mode))
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", drawables)
    for name, value in args.items():
        cfg.set_property(name, value)
    # GIMP refuses a value a choice argument does not offer (the property keeps its
    # default, with a warning): a script sees that before anything runs.
    refused = {name: value for name, value in args.items() if cfg.get_property(name) != value}
    if refused:
        return "refused", f"not accepted by the procedure: {refused}", 0.0
    started = time.monotonic()
    result = proc.run(cfg)
    seconds = time.monotonic() - started
    status = result.index(0)
    message = None
    if status != Gimp.PDBStatusType.SUCCESS:
        if result.length() > 1:
            value = result.index(1)
            message = value if isinstance(value, str) else None
        if not message:
            message = Gimp.get_pdb().get_last_error()
    return status.value_nick, message, seconds


def _dump(layer, babl_format, path):
    if babl_format == "native":  # the layer's own format: the image's exact stored values
        babl_format = Babl.get_name(layer.get_format())
    rect = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    data = bytes(layer.get_buffer().get(rect, 1.0, babl_format, Gegl.AbyssPolicy.NONE))
    with open(path, "wb") as out:
        out.write(data)
    return len(data)


def _export_png(image, path):
    """Export with file-png-export, keeping colours under full transparency and the
    profile, so the file holds exactly the layer's values."""
    export = Gimp.get_pdb().lookup_procedure("file-png-export")
    cfg = export.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_property("file", Gio.File.new_for_path(path))
    wanted = {"save-transparent": True, "include-color-profile": True}
    used = {}
    for name, value in wanted.items():
        if cfg.find_property(name) is not None:
            cfg.set_property(name, value)
            used[name] = value
    result = export.run(cfg)
    if result.index(0) != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError(f"file-png-export failed: {Gimp.get_pdb().get_last_error()}")
    return used


def _run_case(proc, case):
    out = {"name": case["name"]}
    trace = os.environ.get("REALSCALE_GIMP_PROGRESS_TRACE")
    if trace:  # the plug-in appends its progress values after this marker
        with open(trace, "a") as f:
            f.write(f"# {case['name']}\n")
    if case.get("dialog") is not None:  # what the plug-in's dialog does in this case
        with open(os.environ["REALSCALE_GIMP_DIALOG"], "w") as f:
            json.dump(case["dialog"], f)
    image = _open(case)
    try:
        layer = _prepare(image, case)
        image.clean_all()
        out["before"] = _describe_image(image)
        if case.get("source_raw"):  # the source's pixels as GIMP renders them, before the run
            out["source_bytes"] = _dump(layer, case["raw_format"], case["source_raw"])
        drawables = [] if case.get("no_drawables") else [layer]
        status, message, seconds = _run_procedure(proc, image, drawables, case["args"],
                                                  case.get("run_mode", "NONINTERACTIVE"))
        out.update(status=status, message=message, seconds=round(seconds, 2))
        out["after"] = _describe_image(image)
        if status == "success":
            new_layer = image.get_layers()[0]
            if case.get("raw"):
                out["raw_bytes"] = _dump(new_layer, case["raw_format"], case["raw"])
            if case.get("export"):
                # Export the upscaled layer alone: with the hidden source still there, GIMP's
                # export merges the visible layers over a transparent one (a composite, not
                # the layer's values).
                for other in image.get_layers()[1:]:
                    image.remove_layer(other)
                out["export_args"] = _export_png(image, case["export"])
    finally:
        image.delete()
    return out


def main():
    with open(os.environ["REALSCALE_GIMP_JOB"]) as f:
        job = json.load(f)
    results = {"gimp_version": Gimp.version(), "cases": []}
    try:
        proc = Gimp.get_pdb().lookup_procedure(PROCEDURE)
        results["registered"] = proc is not None
        if proc is not None:
            results["procedure"] = _describe_procedure(proc)
            for case in job["cases"]:
                try:
                    other = case.get("procedure")
                    results["cases"].append(_run_case(
                        Gimp.get_pdb().lookup_procedure(other) if other else proc, case))
                except Exception:
                    results["cases"].append({"name": case["name"],
                                             "driver_error": traceback.format_exc()})
    except Exception:
        results["driver_error"] = traceback.format_exc()
    with open(job["result"], "w") as f:
        json.dump(results, f, indent=1)


main()
