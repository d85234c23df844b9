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

Installed by ``realscale install gimp`` (or from the zip ``realscale package gimp`` makes),
with the modules it imports beside it: ``realscale_wire.py``, ``realscale_client.py``,
``realscale_setup.py`` (the engine's set-up, update and removal) and
``realscale_gimp_engine.py`` (their dialogs). On first use the engine is set up; an engine
that speaks another protocol is offered its update; Filters > Enhance > Real-ESRGAN engine...
shows the engine (``plug-in-realscale-engine``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import threading
import time
import zipfile

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, GLib, GObject  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # realscale_client.py is installed beside this file

PROCEDURE = "plug-in-realscale-upscale"
ENGINE_PROCEDURE = "plug-in-realscale-engine"
BINARY = "realscale-upscale"
TITLE = "Upscale with Real-ESRGAN"
DEFAULT_MODEL = "realesrgan-x4plus"
INSTALL_HINT = ("set the engine up by running Filters > Enhance > Upscale with Real-ESRGAN... "
                "from GIMP, or with `realscale install gimp`")
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


VENDORED = ("realscale_wire", "realscale_client", "realscale_setup", "realscale_gimp_engine")
"""The modules installed beside this file (by ``realscale install gimp`` or in the release
zip): without one of them the plug-in is incomplete."""


def _vendored(name: str):
    """The module ``name`` beside the plug-in; a missing one (or one it needs) is a plug-in
    copied in part, said in one sentence with how to install it whole."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if exc.name in VENDORED:
            msg = (f"the plug-in is incomplete: {exc.name}.py is missing from {HERE}; install "
                   "it again from the realscale release zip or with `realscale install gimp`")
        else:
            msg = f"{name}.py beside the plug-in in {HERE} cannot be loaded ({exc}); {INSTALL_HINT}"
        raise PluginError(msg) from exc


def _client_module():
    return _vendored("realscale_client")


def _worker_failure(exc: Exception) -> PluginError:
    """The client's error as the one sentence GIMP shows."""
    realscale_client = _client_module()
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, realscale_client.WorkerNotInstalled) and "realscale install" not in text:
        text = f"{text.rstrip('.')}; {INSTALL_HINT}"
    return PluginError(text)


def upscale_with_worker(client, data: bytearray, width: int, height: int, transfer: Transfer,
                        *, model: str, scale: float, tile: int, device: str, precision: str,
                        progress):
    """Send the pixels to the worker; return (bytes, width, height) or raise PluginError."""
    realscale_client = _client_module()
    try:
        layout = realscale_client.PixelLayout(channels=transfer.channels, depth=transfer.depth)
        # download=True: the model list says which models download, and how much, before
        # the user picks one.
        result = client.upscale(
            data, width, height, layout, model=model, scale=scale, tile=tile, device=device,
            precision=precision, download=True,
            progress=lambda done, total: progress(done / total if total else 1.0),
        )
        return result.data, result.width, result.height
    except realscale_client.WorkerError as exc:
        raise _worker_failure(exc) from exc


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


def upscale_layer(image: Gimp.Image, drawables, client, settings: dict) -> float:
    """Do the whole job; return the worker's speed in input pixels per second. Raises
    PluginError with the message for the user."""
    model, scale, tile = settings["model"], settings["scale"], settings["tile"]
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
    started = time.monotonic()
    result, new_width, new_height = upscale_with_worker(
        client, data, width, height, transfer, model=model, scale=scale, tile=tile,
        device=settings["device"], precision=settings["wire_precision"],
        progress=_sub_progress(READ_SHARE, WORK_SHARE),
    )
    seconds = time.monotonic() - started
    del data
    Gimp.progress_set_text("Real-ESRGAN: adding the upscaled layer")
    _add_result(image, source, transfer, result, new_width, new_height, scale)
    return width * height / max(seconds, 1e-3)


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


# -- what the procedure offers: models, devices, precisions --------------------------------

PURPOSES = {
    "photo": "Photos and real-world images",
    "anime": "Anime and illustrations",
    "video": "Video frames, fast",
}
"""The purposes of the catalogue's models, in the order the model list shows them."""
CATALOGUE_MEMBER = "realscale/catalogue_data/catalogue.json"
"""The model catalogue inside realscale's wheel."""
DEVICE_LABELS = {
    "auto": "Automatic (a GPU when there is one, else the CPU)",
    "cpu": "CPU",
    "cuda": "First NVIDIA GPU (cuda)",
    **{f"cuda:{n}": f"NVIDIA GPU {n} (cuda:{n})" for n in range(8)},
    "mps": "Apple GPU (mps)",
}
"""Every device name a script may pass; the dialog relabels those the engine reports and
greys out the others."""
PRECISIONS = {
    "exact": "Exact (fp32)",
    "fast": "Fast (bf16 on CPUs that have it, fp16 on GPUs)",
}
FAST_COST = ("Fast is about twice as quick; its result differs from Exact by about 54 dB "
             "PSNR, too little to see.")
MAX_RESULT_PIXELS = 256_000_000
"""The engine refuses a result larger than this (its input limit)."""
MAX_IMAGE_SIDE = 524_288
"""GIMP's largest image side (GIMP_MAX_IMAGE_SIZE)."""


def shipped_catalogue() -> tuple[list[dict], str]:
    """The models of the realscale this plug-in came with, and where they were read from:
    ``catalogue.json`` beside this file, else the catalogue inside realscale's wheel, which
    the plug-in folder carries for the engine set-up. ([], "") when neither is there."""
    plain = os.path.join(HERE, "catalogue.json")
    wheels = sorted(glob.glob(os.path.join(HERE, "*.whl"))
                    + glob.glob(os.path.join(HERE, "*", "*.whl")))
    for path in [plain, *wheels]:
        try:
            if path.endswith(".whl"):
                with zipfile.ZipFile(path) as wheel:
                    document = json.loads(wheel.read(CATALOGUE_MEMBER))
            else:
                with open(path, encoding="utf-8") as handle:
                    document = json.load(handle)
            models = [m for m in document["models"] if isinstance(m.get("name"), str)]
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
            continue
        if models:
            return models, path
    return [], ""


def _catalogue_facts(entry: dict) -> dict:
    """One catalogue entry as the fields of the worker's models reply the dialog uses."""
    sources = [s for s in entry.get("sources") or [] if isinstance(s, dict)]
    embedded = any(s.get("kind") == "package" for s in sources)
    sizes = [s.get("size") for s in sources if s.get("kind") == "url"]
    facts = {"name": entry["name"], "scale": entry.get("scale"),
             "purpose": entry.get("purpose"), "purpose_label": entry.get("purpose_label"),
             "description": entry.get("description", ""), "default": bool(entry.get("default"))}
    if not embedded:
        facts["download_bytes"] = next((s for s in sizes if isinstance(s, int)), 0)
    return facts


def _worker_facts(reply: dict, known: dict | None = None) -> dict:
    """A model of the worker's models reply as the dialog uses it, over what the catalogue
    said (``known``): the worker knows what is on disk; the catalogue fills in fields an
    older worker does not send."""
    facts = dict(known or {})
    facts.update({k: v for k, v in reply.items() if v is not None})
    facts.pop("download_bytes", None)
    if "download_bytes" in reply or reply.get("available") is False:
        facts["download_bytes"] = reply.get("download_bytes") or (known or {}).get(
            "download_bytes") or 0
    return facts


WORKER_QUERY_SECONDS = 60.0
"""How long registration waits for a configured worker's model list."""
_shared: dict = {}


def shared_client():
    """The worker client of this plug-in process: the one that told registration (or the
    run's procedure) its models does the upscale too."""
    if "client" not in _shared:
        _shared["client"] = _client_module().WorkerClient(host="gimp")
    return _shared["client"]


RUNNING = "-run" in sys.argv
"""GIMP started this process to run the procedure (not to register it)."""


def run_engine() -> Engine | None:
    """When running: the engine, asked once what it offers (models on disk, devices) before
    the procedure's choices are built; None when registering, or when no engine answers
    (its error is kept for ``run`` to report)."""
    if not RUNNING:
        return None
    if "engine" not in _shared:
        try:
            engine = Engine(shared_client())
            engine.ask()
        except PluginError as exc:
            engine = None
            _shared["engine_error"] = exc
        _shared["engine"] = engine
    return _shared["engine"]


def offered_models() -> list[dict]:
    """The models the model argument offers, in the order the list shows them.

    From the catalogue shipped with the plug-in (the zip's wheel) when it is there: GIMP
    builds the choice at registration, when no worker may exist yet (the engine is set up on
    first use), and keeps it until the plug-in file changes, so it must not depend on a
    worker's state. A plug-in installed by ``realscale install`` carries no wheel but has a
    configured worker: its model list is asked for instead. Else only the default model."""
    if "models" not in _shared:
        entries, _origin = shipped_catalogue()
        models = [_catalogue_facts(e) for e in entries] or _configured_worker_models()
        _shared["models"] = ordered_models(models or [{"name": DEFAULT_MODEL, "default": True}])
    return _shared["models"]


def _configured_worker_models() -> list[dict]:
    try:
        realscale_client = _client_module()
        realscale_client.read_config(host="gimp")
        client = shared_client()
    except Exception:  # noqa: BLE001 - no worker set up: the default model only
        return []
    found: list[dict] = []

    def ask() -> None:
        with contextlib.suppress(Exception):  # a broken worker: the default model only
            found.extend(_worker_facts(m) for m in client.models())

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(WORKER_QUERY_SECONDS)
    if thread.is_alive():  # still starting: leave it, and never reuse its client
        _shared.pop("client", None)
        return []
    return found


def _megabytes(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{max(1, round(count / 1e6))} MB"


def model_label(facts: dict) -> str:
    """"Photos and real-world images: realesrgan-x4plus (x4)", with the download's size for
    a model that is not on this machine yet."""
    purpose = facts.get("purpose_label") or PURPOSES.get(facts.get("purpose") or "", "")
    label = f"{purpose}: {facts['name']}" if purpose else facts["name"]
    details = [f"x{facts['scale']}"] if facts.get("scale") else []
    if "download_bytes" in facts:
        size = facts["download_bytes"]
        details.append(f"downloads {_megabytes(size)}" if size else "downloads on first use")
    return f"{label} ({', '.join(details)})" if details else label


def ordered_models(models: list[dict]) -> list[dict]:
    """By purpose (photos, anime, video, then the rest), the default first within one."""
    order = list(PURPOSES)

    def key(item: tuple[int, dict]) -> tuple:
        index, facts = item
        purpose = facts.get("purpose")
        rank = order.index(purpose) if purpose in order else len(order)
        return rank, not facts.get("default"), index

    return [facts for _, facts in sorted(enumerate(models), key=key)]


def model_choice(engine: Engine | None) -> tuple[Gimp.Choice, str]:
    """The model argument's choice and its default (see ``offered_models``); when running,
    labelled as the engine has them (models it already holds say no download)."""
    models = offered_models()
    replies = engine.models if engine is not None else {}
    choice = Gimp.Choice.new()
    for index, facts in enumerate(models):
        if facts["name"] in replies:
            facts = _worker_facts(replies[facts["name"]], facts)
        choice.add(facts["name"], index, model_label(facts), facts.get("description", ""))
    default = next((f["name"] for f in models if f.get("default")), models[0]["name"])
    return choice, default


def device_choice(engine: Engine | None) -> Gimp.Choice:
    """Every device name a script may pass; when running, those the engine reports carry
    their names and free memory, the others are greyed out. (Built whole each time: GIMP
    3.0.4 crashes when an entry of a choice is replaced.)"""
    devices = engine.devices if engine is not None else None
    reported = {d.get("name"): d for d in devices or []}
    cuda = [d for d in devices or [] if str(d.get("name", "")).startswith("cuda")]
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(DEVICE_LABELS.items()):
        device = reported.get(nick) or (cuda[0] if nick == "cuda" and cuda else None)
        choice.add(nick, index, device_label(device) if device else label, "")
        if devices is not None and device is None and nick != "auto":
            choice.set_sensitive(nick, False)
    return choice


def precision_choice() -> Gimp.Choice:
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(PRECISIONS.items()):
        choice.add(nick, index, label, FAST_COST if nick == "fast" else "")
    return choice


def device_label(device: dict) -> str:
    """A reported device as the list shows it: the CPU's label, a GPU's name and free memory."""
    label = device.get("label") or device.get("name", "?")
    name = device.get("name", "")
    if name and name not in label:
        label = f"{label} ({name})"
    free = device.get("free_bytes")
    if isinstance(free, int) and device.get("kind") != "cpu":
        label = f"{label}, {_megabytes(free)} free"
    return label


def wire_precision(precision: str, device: str, devices: list[dict] | None) -> str:
    """The worker's precision for the dialog's choice: Exact is fp32; Fast is the reduced
    precision the device is fast in ("auto" lets the engine choose when that is unknown)."""
    if precision != "fast":
        return "fp32"
    if not devices:
        return "auto"
    if device in ("auto", "cuda"):
        gpus = [d for d in devices if d.get("kind") not in ("cpu", None)]
        chosen = gpus[0] if gpus else next((d for d in devices if d.get("kind") == "cpu"), None)
    else:
        chosen = next((d for d in devices if d.get("name") == device), None)
    return (chosen or {}).get("fast") or "fp32"


# -- what the dialog says: result size, memory, time ----------------------------------------


def result_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def parse_memsize(text: str) -> int | None:
    """GIMP's memory sizes ("12341892k", "4G", "512M", "1048576") in bytes."""
    text = (text or "").strip()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    try:
        if text and text[-1].lower() in units:
            return int(float(text[:-1]) * units[text[-1].lower()])
        return int(text)
    except ValueError:
        return None


def tile_cache_bytes() -> int | None:
    """GIMP's tile cache (Edit > Preferences > System Resources): past it GIMP swaps image
    data to disk and every step slows down."""
    try:
        return parse_memsize(Gimp.gimprc_query("tile-cache-size"))
    except Exception:  # noqa: BLE001 - not every GIMP answers: no warning then
        return None


def image_bytes_after(image: Gimp.Image, source: Gimp.Drawable, scale: float) -> int:
    """Memory the image holds after the upscale: every layer scaled with the image, plus
    the new layer."""
    total = 0
    for layer in [*image.get_layers(), source]:
        try:
            bpp = Babl.format_get_bytes_per_pixel(layer.get_format())
        except Exception:  # noqa: BLE001 - an older babl: assume float RGBA
            bpp = 16
        width, height = result_size(layer.get_width(), layer.get_height(), scale)
        total += width * height * bpp
    return total


def size_warning(image: Gimp.Image, source: Gimp.Drawable, scale: float,
                 cache: int | None) -> str:
    """One sentence when the result is too large to make or to hold comfortably, else ""."""
    width, height = result_size(source.get_width(), source.get_height(), scale)
    if width * height > MAX_RESULT_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
        return (f"Too large: {width} × {height} px is more than the engine's limit of "
                f"{MAX_RESULT_PIXELS // 1_000_000} megapixels; choose a smaller scale.")
    needed = image_bytes_after(image, source, scale)
    if cache and needed > cache:
        return (f"Large: the image will need about {_megabytes(needed)}, more than GIMP's "
                f"tile cache ({_megabytes(cache)}, Edit > Preferences > System Resources), "
                "so GIMP will swap to disk and slow down.")
    return ""


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {round(seconds)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def speed_key(model: str, device: str, precision: str) -> str:
    return f"{model}|{device}|{precision}"


def read_speeds(text: str) -> dict[str, float]:
    try:
        speeds = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(speeds, dict):
        return {}
    return {k: float(v) for k, v in speeds.items()
            if isinstance(k, str) and isinstance(v, (int, float)) and v > 0}


def remember_speed(config, key: str, pixels_per_second: float) -> None:
    """Keep the last run's speed in the procedure's settings (GIMP saves them with the last
    values), the most recent first, at most 24."""
    speeds = read_speeds(config.get_property("speeds"))
    speeds.pop(key, None)
    kept = {key: round(pixels_per_second, 1), **dict(list(speeds.items())[:23])}
    config.set_property("speeds", json.dumps(kept))


# -- the engine, asked before and while the dialog is open ---------------------------------


class Engine:
    """The worker the dialog talks to: what it reports (models on disk, devices) and the
    speeds it measures in a background thread, so the dialog never waits on it. The same
    client then does the upscale, with its model already loaded."""

    def __init__(self, client) -> None:
        self.client = client
        self.models: dict[str, dict] = {}
        self.devices: list[dict] | None = None
        self.measured: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._wanted: tuple | None = None
        self._thread: threading.Thread | None = None
        self._running: str | None = None  # the key being measured now
        self._halt = threading.Event()  # set: the running measurement is no longer wanted

    def ask(self) -> None:
        """What the worker offers (on the main thread, before the dialog)."""
        realscale_client = _client_module()
        try:
            self.models = {m["name"]: m for m in self.client.models()}
        except realscale_client.WorkerError as exc:
            raise _worker_failure(exc) from exc
        if hasattr(self.client, "devices"):
            try:
                self.devices = list(self.client.devices())
            except realscale_client.WorkerError:
                self.devices = None  # an engine without the request: names only

    def can_measure(self) -> bool:
        return hasattr(self.client, "measure")

    def measure(self, key: str, model: str, device: str, precision: str, done) -> None:
        """Measure in the background (latest request wins); ``done()`` runs on the GTK main
        loop afterwards. A measurement running for other settings is given up (the worker
        stops it), so the chosen one starts at once rather than after a whole measurement
        of a large model the user has just moved away from."""
        with self._lock:
            self._wanted = (key, model, device, precision, done)
            if self._running is not None and self._running != key:
                self._halt.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, daemon=True)
                self._thread.start()

    def busy(self) -> bool:
        with self._lock:
            return self._wanted is not None or (
                self._thread is not None and self._thread.is_alive())

    def wait(self) -> None:
        """End a measurement still running before the client does anything else: the
        upscale the user asked for would otherwise wait for it at the worker."""
        with self._lock:
            self._wanted = None
            if self._running is not None:
                self._halt.set()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _work(self) -> None:
        while True:
            with self._lock:
                wanted, self._wanted = self._wanted, None
                if wanted is None:
                    self._running = None
                    return
                key, model, device, precision, done = wanted
                self._running = key
                self._halt.clear()
            if key not in self.measured and key not in self.failed:
                try:
                    reply = self.client.measure(model, device=device, precision=precision,
                                                cancel=self._halt.is_set)
                    self.measured[key] = float(reply["pixels_per_second"])
                except Exception as exc:  # noqa: BLE001 - said in the dialog, never raised
                    if not self._halt.is_set():  # given up: measured again if chosen again
                        self.failed[key] = str(exc).strip() or type(exc).__name__
            GLib.idle_add(done)


# -- the dialog -----------------------------------------------------------------------------


class UpscaleDialog:
    """GIMP's procedure dialog for the arguments, with lines under them that follow the
    choices: the result's size, the time it will take, a warning for a result too large to
    hold, and what Fast costs."""

    INFO = ("size-info", "estimate-info", "warning-info", "precision-info")

    def __init__(self, procedure, config, image, source, engine: Engine | None) -> None:
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi

        GimpUi.init(BINARY)
        self.config, self.image, self.source, self.engine = config, image, source, engine
        self.cache = tile_cache_bytes()
        self.dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title=TITLE)
        self.labels = {name: self.dialog.get_label(name, "", False, False) for name in self.INFO}
        for label in self.labels.values():
            label.set_xalign(0.0)
            label.set_line_wrap(True)
            label.set_max_width_chars(60)
        self.dialog.fill(["model", "scale", "size-info", "device", "precision",
                          "precision-info", "tile", "estimate-info", "warning-info"])
        self.labels["precision-info"].set_text(FAST_COST)
        for name in ("model", "scale", "device", "precision"):
            config.connect(f"notify::{name}", lambda *_: self.update())
        self.update()

    def settings(self) -> dict:
        return _settings(self.config, self.engine.devices if self.engine else None)

    def update(self) -> bool:
        settings = self.settings()
        width, height = self.source.get_width(), self.source.get_height()
        new_w, new_h = result_size(width, height, settings["scale"])
        self.labels["size-info"].set_text(f"{width} × {height} → {new_w} × {new_h} px")
        self.labels["warning-info"].set_text(
            size_warning(self.image, self.source, settings["scale"], self.cache))
        self.labels["estimate-info"].set_text(self.estimate(settings, width * height))
        return False  # as a GLib idle callback: once

    def estimate(self, settings: dict, pixels: int) -> str:
        key = speed_key(settings["model"], settings["device"], settings["precision"])
        engine = self.engine
        if engine is not None and key in engine.measured:
            seconds = pixels / engine.measured[key]
            return f"Time: {duration(seconds)} (speed measured just now on this device)."
        remembered = read_speeds(self.config.get_property("speeds")).get(key)
        if remembered:
            return f"Time: {duration(pixels / remembered)} (speed of the last upscale)."
        if engine is None or not engine.can_measure():
            return "Time: unknown until the first upscale with these settings."
        facts = engine.models.get(settings["model"], {})
        if "download_bytes" in facts:
            return "Time: measured once the model is downloaded (with the first upscale)."
        if key in engine.failed:
            return f"Time: could not be measured ({engine.failed[key]})."
        engine.measure(key, settings["model"], settings["device"],
                       settings["wire_precision"], self.update)
        return "Time: measuring the speed on this device…"

    def run(self) -> bool:
        script = os.environ.get(DIALOG_SCRIPT)
        if script:
            _drive(self, script)
        try:
            return bool(self.dialog.run())
        finally:
            self.dialog.destroy()


def _settings(config, devices: list[dict] | None) -> dict:
    model = (config.get_property("model") or "").strip()
    device = (config.get_property("device") or "").strip() or "auto"
    precision = config.get_property("precision") or "exact"
    return {"model": model, "scale": config.get_property("scale"),
            "tile": config.get_property("tile"), "device": device, "precision": precision,
            "wire_precision": wire_precision(precision, device, devices)}


# -- tests drive the real dialog through a script ------------------------------------------

DIALOG_SCRIPT = "REALSCALE_GIMP_DIALOG"
"""Tests only: a JSON file saying what to set in the dialog, where to record what it shows
(and a picture of it), and which button to press."""


def _drive(dialog: UpscaleDialog, path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        script = json.load(handle)
    state = {"step": "start", "deadline": time.monotonic() + float(script.get("timeout", 120))}
    initial = {name: dialog.config.get_property(name)
               for name in ("model", "scale", "tile", "device", "precision")}

    def tick() -> bool:
        if state["step"] == "start":
            for name, value in script.get("set", {}).items():
                dialog.config.set_property(name, value)  # as a user's pick: the same notify
            state["step"] = "settle"
            return True
        engine = dialog.engine
        if engine is not None and engine.busy() and time.monotonic() < state["deadline"]:
            return True
        while Gtk.events_pending():
            Gtk.main_iteration()
        record = {"initial": initial,
                  "config": {name: dialog.config.get_property(name) for name in initial},
                  "labels": {name: label.get_text() for name, label in dialog.labels.items()},
                  "choices": _choices(dialog),
                  "measured": sorted(engine.measured) if engine is not None else [],
                  "measuring": engine is not None and engine.busy()}
        if script.get("snapshot"):
            _snapshot(dialog.dialog, script["snapshot"])
        with open(script["record"], "w", encoding="utf-8") as out:
            json.dump(record, out, indent=1)
        response = Gtk.ResponseType.OK if script.get("respond") == "ok" else (
            Gtk.ResponseType.CANCEL)
        dialog.dialog.response(response)
        return False

    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    GLib.timeout_add(300, tick)


def _choices(dialog: UpscaleDialog) -> dict:
    found = {}
    for name in ("model", "device", "precision"):
        spec = dialog.config.find_property(name)
        choice = Gimp.param_spec_choice_get_choice(spec)
        found[name] = [[nick, choice.get_label(nick)] for nick in choice.list_nicks()]
    return found


def _snapshot(window, path: str) -> None:
    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk

    gdk_window = window.get_window()
    pixbuf = Gdk.pixbuf_get_from_window(gdk_window, 0, 0, gdk_window.get_width(),
                                        gdk_window.get_height())
    pixbuf.savev(path, "png", [], [])


# -- first use: set the engine up; the engine procedure: see, update, remove it --------------


def _setup_module():
    """realscale_setup beside the plug-in (the zip carries it with realscale's wheel)."""
    return _vendored("realscale_setup")


def engine_missing() -> bool:
    """No worker config at all: the engine was never set up here (first use)."""
    try:
        return not os.path.exists(_client_module().config_path())
    except PluginError:
        return False


def _engine_dialogs():
    """realscale_gimp_engine beside the plug-in: the engine's dialogs (loads GTK)."""
    return _vendored("realscale_gimp_engine")


def set_up_engine(driven: dict | None) -> None:
    """First use, interactive: the set-up dialog; returns once the engine answers, raises
    PluginError when the user cancels (CANCELLED) or the set-up failed."""
    dialogs = _engine_dialogs()
    dialog = dialogs.SetupDialog(_setup_module())
    _finish_job(dialog, dialog.run(None if driven is None else driven.get("setup", {})),
                "set up")


def outdated_engine():
    """When the engine did not start and realscale_setup finds it speaks another protocol,
    and the plug-in set it up (so it may replace it): what realscale_setup says of it; else
    None. (A worker of another protocol frames its messages in that protocol, which the client
    cannot read: it reports a worker that stopped answering, not the version, so any start
    failure of an engine the plug-in set up is checked.)"""
    error = _shared.get("engine_error")
    cause = error.__cause__ if error is not None else None
    try:
        client = _client_module()
        if not isinstance(cause, client.WorkerError) or isinstance(cause, (
                client.WorkerNotInstalled, client.WorkerOutOfMemory, client.WorkerCancelled)):
            return None
        setup = _setup_module()
        if not setup.engine_info(ask=False).managed:
            return None
        info = setup.engine_info()  # runs the engine's Python: its realscale and protocol
    except PluginError:
        return None
    if info.protocol in (None, client.PROTOCOL_VERSION) or not info.update_offered:
        return None
    return info


def update_engine(info, driven: dict | None) -> None:
    """The engine speaks another protocol: the update dialog; returns once the updated engine
    answers, raises PluginError when the user cancels (CANCELLED) or the update failed."""
    dialogs = _engine_dialogs()
    dialog = dialogs.UpdateDialog(_setup_module(), info)
    _finish_job(dialog, dialog.run(None if driven is None else driven.get("update", {})),
                "updated")


def _finish_job(dialog, result, done: str) -> None:
    if result is None or result.cancelled:
        raise PluginError(CANCELLED)
    if not result.ok:
        log = dialog.job.log_path if dialog.job is not None else ""
        raise PluginError(f"the engine could not be {done}: "
                          + _engine_dialogs().with_log(result.message, log))


CANCELLED = "cancelled"
ENGINE_FAILED = "Real-ESRGAN engine"
"""How the engine procedure's errors begin."""


def _driven() -> dict | None:
    """Tests only: the dialog script, read once per run."""
    path = os.environ.get(DIALOG_SCRIPT)
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# -- the plug-in ----------------------------------------------------------------------------


class RealscaleUpscale(Gimp.PlugIn):
    """The plug-in: one image procedure."""

    def do_set_i18n(self, _name):
        return False

    def do_query_procedures(self):
        return [PROCEDURE, ENGINE_PROCEDURE]

    def do_create_procedure(self, name):
        if name == ENGINE_PROCEDURE:
            return self._engine_procedure(name)
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("Upscale with Real-ESRGAN...")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "Upscale a layer with Real-ESRGAN into a new layer",
            "Enlarges the image by the scale and adds the layer upscaled by a Real-ESRGAN "
            "model above it (the source layer is kept, hidden), in one undo step. The work "
            "is done by the realscale engine. Scripts pass the model and the device by name "
            "(\"realesrgan-x4plus\", \"cpu\", \"cuda:0\"), the precision as \"exact\" (fp32) "
            "or \"fast\" (bf16 or fp16, as fast as the device allows).",
            name,
        )
        procedure.set_attribution("realscale", "realscale contributors", "2025")
        flags = GObject.ParamFlags.READWRITE
        engine = run_engine()
        models, default_model = model_choice(engine)
        procedure.add_choice_argument(
            "model", "_Model", "What the picture is, and the Real-ESRGAN model for it",
            models, default_model, flags)
        procedure.add_double_argument(
            "scale", "S_cale", "How many times larger the image becomes", 1.0, 16.0, 4.0,
            flags)
        procedure.add_int_argument(
            "tile", "_Tile size", "Tile size in pixels; 0 chooses one automatically", 0,
            16384, 0, flags)
        procedure.add_choice_argument(
            "device", "_Device", "Where the model runs", device_choice(engine), "auto",
            flags)
        procedure.add_choice_argument(
            "precision", "P_recision", FAST_COST, precision_choice(), "exact", flags)
        procedure.add_string_aux_argument(
            "speeds", "Speeds", "Input pixels per second of the last upscales (JSON)", "{}",
            flags)
        return procedure

    def _engine_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN,
                                            self.run_engine_dialog, None)
        procedure.set_image_types("")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        procedure.set_menu_label("Real-ESRGAN engine...")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "See, update or remove the Real-ESRGAN engine",
            "Shows the version, location, backend and device of the realscale engine the "
            "upscale uses, and updates it to the plug-in's version or removes it.", name)
        procedure.set_attribution("realscale", "realscale contributors", "2025")
        return procedure

    def run_engine_dialog(self, procedure, run_mode, _image, _drawables, _config, _data):
        if run_mode != Gimp.RunMode.INTERACTIVE:
            return _failure(procedure, "the engine dialog is interactive: run it from "
                            "Filters > Enhance > Real-ESRGAN engine...", ENGINE_FAILED)
        try:
            driven = _driven()
            setup = _setup_module()
            _engine_dialogs().EngineDialog(setup).run(None if driven is None else
                                                      driven.get("engine", {}))
        except PluginError as exc:
            return _failure(procedure, str(exc), ENGINE_FAILED)
        except Exception as exc:  # GIMP shows nothing for an uncaught error
            return _failure(procedure, f"unexpected error: {type(exc).__name__}: {exc}",
                            ENGINE_FAILED)
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())

    def run(self, procedure, run_mode, image, drawables, config, _data):
        engine = None
        try:
            engine = run_engine()
            if engine is None and run_mode == Gimp.RunMode.INTERACTIVE:
                engine = _engine_for_user(drawables)
            if engine is None:
                raise _shared["engine_error"]
            if run_mode == Gimp.RunMode.INTERACTIVE:
                source = _check_drawables(drawables)
                dialog = UpscaleDialog(procedure, config, image, source, engine)
                accepted = dialog.run()
                engine.wait()
                if not accepted:
                    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            settings = _settings(config, engine.devices)
            speed = upscale_layer(image, drawables, engine.client, settings)
            if run_mode != Gimp.RunMode.NONINTERACTIVE:
                remember_speed(config, speed_key(settings["model"], settings["device"],
                                                 settings["precision"]), speed)
        except PluginError as exc:
            if str(exc) == CANCELLED:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            return _failure(procedure, str(exc))
        except Exception as exc:  # GIMP shows nothing for an uncaught error
            return _failure(procedure, f"unexpected error: {type(exc).__name__}: {exc}")
        finally:
            Gimp.progress_end()
            if engine is not None:
                engine.client.close()
        Gimp.displays_flush()
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _engine_for_user(drawables) -> Engine | None:
    """Interactive, and no engine answered: on first use set it up, and where it speaks
    another protocol offer its update; then go on with the upscale. None otherwise."""
    if engine_missing():
        _check_drawables(drawables)
        set_up_engine(_driven())  # first use: set the engine up, then go on
    else:
        info = outdated_engine()
        if info is None:
            return None
        _check_drawables(drawables)
        update_engine(info, _driven())
    _shared.pop("engine", None)
    _shared.pop("client", None)
    return run_engine()


def _failure(procedure, text: str, what: str = "Real-ESRGAN upscale failed"):
    text = text.strip() or "the upscale failed for an unknown reason"
    message = f"{what}: {text}"
    print(f"{BINARY}: {message}", file=sys.stderr)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


if __name__ == "__main__":
    Gimp.main(RealscaleUpscale.__gtype__, sys.argv)
