"""The "Upscale with Real-ESRGAN" dialog: what to use, and what it will cost, at a glance.

Models are picked by purpose first (photos, anime, video frames), then by name; devices are
what the worker reports (CPU, each GPU with its free memory). The dialog says how large the
result will be, roughly how long it will take (from a rate the worker measures on a small tile
while the dialog is open, or from the last run), warns before a result Krita cannot
comfortably hold, and says what the fast precision costs. Every combo box is sized from Qt's
font metrics of its longest entry, so nothing is cut off.

Everything the worker is asked runs on threads (``_Task``); a timer hands the answers back to
the GUI thread. The texts come from the small functions at the end of this module.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from .qt import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSize,
    QStyle,
    QStyleOptionComboBox,
    QTimer,
    QVBoxLayout,
)
from .settings import MAX_SCALE, Settings, rate_key

DIALOG_OBJECT_NAME = "realscale_dialog"
TILE_CHOICES = (0, 64, 128, 256, 512, 1024)
TARGET_LABELS = (("layer", "Active layer"), ("canvas", "Whole visible canvas"))
PURPOSES = (("photo", "Photos and real-world images"), ("anime", "Anime and illustrations"),
            ("video", "Video frames, fast"))
OTHER = ("other", "Other models")
WEIGHTS_FILE = ("file", "A weights file (.pth, .safetensors)")
#: Devices offered when the worker cannot list its own (an older worker).
FALLBACK_DEVICES = (
    {"name": "cpu", "label": "CPU", "kind": "cpu", "fast": None},
    {"name": "cuda:0", "label": "NVIDIA GPU (CUDA)", "kind": "cuda", "fast": "fp16"},
    {"name": "mps", "label": "Apple GPU (MPS)", "kind": "mps", "fast": None},
)
PRECISION_LABELS = {"auto": "Automatic", "exact": "Exact (fp32)"}
GIB = 1024 ** 3
MEMORY_SHARE = 0.5
"""The share of the machine's memory a result may take before the dialog warns: Krita's own
default memory limit (Settings > Configure Krita > Performance) is half the RAM."""
COMBO_MARGIN = 6
"""Pixels added to the widest entry, for the style's frame rounding."""


@dataclass(frozen=True)
class Source:
    """What the dialog needs to know of the image to be upscaled."""

    width: int
    height: int
    #: Bytes per pixel of the document's colour space (4 for 8-bit RGBA, 16 for F32 RGBA).
    pixel_bytes: int
    #: Layers (and masks) in the document: each is scaled to the new size.
    layers: int
    #: The machine's memory in bytes (0: unknown).
    memory: int = 0


class UpscaleDialog(QDialog):
    """Asks for the settings of one upscale; ``settings()`` reads them back.

    ``load_models`` and ``load_devices`` (optional) return the worker's model and device
    lists; they run on a thread so the dialog opens at once, and the lists fill in when they
    arrive (``models_ready`` is then True; ``models_error`` holds the message when it failed).
    ``measure(model, device, precision, cancel=...)`` returns the worker's measured rate
    (it polls ``cancel`` and ends early once that is true); ``rates`` are the remembered
    ones (``settings.rate_key`` -> input pixels per second).
    """

    def __init__(self, settings: Settings, load_models=None, parent=None, *,
                 source: Source | None = None, load_devices=None, measure=None,
                 rates: dict | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(DIALOG_OBJECT_NAME)
        self.setWindowTitle("Upscale with Real-ESRGAN")
        self.models_ready = False
        self.models_error = ""
        self.source = source
        self.rates = dict(rates or {})
        self.measured: dict[tuple, dict] = {}
        self._measure = measure
        self._measure_failed = set()
        self._measuring = None  # (key, task)
        self._entries: dict[str, dict] = {}
        self._devices: dict[str, dict] = {}
        self._devices_reported = False
        self._initial = settings
        self._filling = False

        self.purpose = self._combo("purpose", "What the image is: each model is trained for "
                                   "one kind of picture.")
        self.model = self._combo("model", "The model, by its name in the realscale catalogue")
        self.path = QLineEdit(self)
        self.path.setObjectName("path")
        self.path.setPlaceholderText("/path/to/weights.pth")
        self.path.setToolTip("The path of a Real-ESRGAN or ESRGAN weights file")
        self.about = self._label("about", wrap=True)

        self.scale = QDoubleSpinBox(self)
        self.scale.setObjectName("scale")
        self.scale.setRange(1.0, MAX_SCALE)
        self.scale.setDecimals(2)
        self.scale.setSingleStep(1.0)
        self.scale.setPrefix("x")
        self.scale.setValue(settings.scale)
        self.scale.setToolTip("How much larger the image gets. Other scales than the model's "
                              "own are resized from the model's result.")

        self.target = self._combo("target", "")
        for key, label in TARGET_LABELS:
            self.target.addItem(label, key)
        self.target.setCurrentIndex(max(0, self.target.findData(settings.target)))

        self.size_line = self._label("size_line")
        self.time_line = self._label("time_line")

        self.device = self._combo("device", "Where the model runs: the worker's CPU or one of "
                                  "its GPUs")
        self.precision = self._combo("precision", "Exact computes in 32-bit floats; Fast in "
                                     "the device's fast format (bf16 on CPUs that have it, "
                                     "fp16 on GPUs)")
        self.precision_note = self._label("precision_note", wrap=True)

        self.tile = self._combo("tile", "Pixels per tile: smaller tiles need less memory. "
                                "Automatic fits them to the memory the device has.")
        choices = list(TILE_CHOICES)
        if settings.tile not in choices:
            choices.append(settings.tile)
        for tile in sorted(choices):
            self.tile.addItem("Automatic" if tile == 0 else f"{tile} px", tile)
        self.tile.setCurrentIndex(self.tile.findData(settings.tile))

        self.warning = self._label("warning", wrap=True)
        self.warning.setStyleSheet("font-weight: bold")
        self.warning.hide()
        self.note = self._label("note", wrap=True)
        self.note.hide()

        form = QFormLayout()
        form.addRow("&Purpose:", self.purpose)
        form.addRow("&Model:", self.model)
        form.addRow("&Weights file:", self.path)
        form.addRow("", self.about)
        form.addRow("&Scale:", self.scale)
        form.addRow("&Upscale:", self.target)
        form.addRow("Result:", self.size_line)
        form.addRow("Time:", self.time_line)
        form.addRow("&Device:", self.device)
        form.addRow("P&recision:", self.precision)
        form.addRow("", self.precision_note)
        form.addRow("&Tile size:", self.tile)
        self.form = form

        standard = QDialogButtonBox.StandardButton
        buttons = QDialogButtonBox(standard.Ok | standard.Cancel, parent=self)
        buttons.setObjectName("buttons")
        buttons.button(standard.Ok).setText("&Upscale")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.warning)
        layout.addWidget(self.note)
        layout.addWidget(buttons)

        self._fill_models([], settings.model)
        self._fill_devices(FALLBACK_DEVICES if load_devices is None else [], settings.device)
        self._fill_precision(settings.precision)

        self.purpose.currentIndexChanged.connect(self._purpose_changed)
        self.model.currentIndexChanged.connect(self._model_changed)
        self.path.textChanged.connect(self._update)
        self.scale.valueChanged.connect(self._update)
        self.device.currentIndexChanged.connect(self._device_changed)
        self.precision.currentIndexChanged.connect(self._update)

        self._loader = None
        self._poll = QTimer(self)
        self._poll.setInterval(100)
        self._poll.timeout.connect(self._check_tasks)
        if load_models is not None:
            self._loader = _Task(lambda _halted: _load_lists(load_models, load_devices))
            self._loader.start()
        else:
            self.models_ready = True
        self._poll.start()
        self._update()

    # -- building blocks ------------------------------------------------------------------

    def _combo(self, name: str, tip: str) -> QComboBox:
        combo = QComboBox(self)
        combo.setObjectName(name)
        if tip:
            combo.setToolTip(tip)
        return combo

    def _label(self, name: str, wrap: bool = False) -> QLabel:
        label = QLabel("", self)
        label.setObjectName(name)
        label.setWordWrap(wrap)
        return label

    # -- the lists from the worker ---------------------------------------------------------

    def _check_tasks(self) -> None:
        loader = self._loader
        if loader is not None and not loader.is_alive():
            self._loader = None
            if loader.error is not None:
                self.models_error = loader.error
                self.note.setText("The model list is not available: " + loader.error)
                self.note.show()
            else:
                models, devices = loader.result
                chosen = self.settings()
                self._fill_models(models, chosen.model)
                self._devices_reported = bool(devices)
                self._fill_devices(devices or FALLBACK_DEVICES, chosen.device)
                self._fill_precision(chosen.precision)
            self.models_ready = True
            self._update()
        if self._measuring is not None and not self._measuring[1].is_alive():
            key, task = self._measuring
            self._measuring = None
            if task.halt.is_set():
                pass  # given up for other choices: measured again if chosen again
            elif task.error is not None or not isinstance(task.result, dict):
                self._measure_failed.add(key)
            else:
                self._store_measure(key, task.result)
            self._update()

    def _fill_models(self, models, current: str) -> None:
        self._entries = {}
        for entry in models:
            name = entry.get("name", "") if isinstance(entry, dict) else ""
            if name and name not in self._entries:
                self._entries[name] = entry
        if current and current not in self._entries and not _looks_like_path(current):
            self._entries[current] = {"name": current}
        self._filling = True
        try:
            self.purpose.clear()
            for key, label in purposes(self._entries.values()):
                self.purpose.addItem(label, key)
            self.purpose.addItem(WEIGHTS_FILE[1], WEIGHTS_FILE[0])
            if _looks_like_path(current):
                self.path.setText(current)
                self.purpose.setCurrentIndex(self.purpose.findData(WEIGHTS_FILE[0]))
            else:
                key = purpose_of(self._entries.get(current, {}))
                self.purpose.setCurrentIndex(max(0, self.purpose.findData(key)))
            self._fill_model_list(current)
        finally:
            self._filling = False
        fit_combo(self.purpose)

    def _fill_model_list(self, current: str | None = None) -> None:
        key = self.purpose.currentData()
        self.model.clear()
        widest = [model_label(entry) for entry in self._entries.values()]
        for entry in self._entries.values():
            if purpose_of(entry) == key:
                self.model.addItem(model_label(entry), entry["name"])
        if current is not None and self.model.findData(current) >= 0:
            self.model.setCurrentIndex(self.model.findData(current))
        is_file = key == WEIGHTS_FILE[0]
        self.model.setVisible(not is_file)
        self.form.labelForField(self.model).setVisible(not is_file)
        self.path.setVisible(is_file)
        self.form.labelForField(self.path).setVisible(is_file)
        # Wide enough for every model of every purpose: the dialog keeps its width.
        fit_combo(self.model, widest)

    def _fill_devices(self, devices, current: str) -> None:
        self._devices = {}
        for device in devices:
            if isinstance(device, dict) and isinstance(device.get("name"), str):
                self._devices[device["name"]] = device
        self._filling = True
        try:
            self.device.clear()
            self.device.addItem(device_label({"name": "auto"}, self._auto_device()), "auto")
            for name, device in self._devices.items():
                self.device.addItem(device_label(device), name)
            if self.device.findData(current) < 0:
                self.device.addItem(f"{current} (not found now)", current)
            self.device.setCurrentIndex(self.device.findData(current))
        finally:
            self._filling = False
        fit_combo(self.device)

    def _fill_precision(self, current: str) -> None:
        fast = self.fast_value()
        self._filling = True
        try:
            self.precision.clear()
            self.precision.addItem(PRECISION_LABELS["auto"], "auto")
            self.precision.addItem(PRECISION_LABELS["exact"], "exact")
            self.precision.addItem(f"Fast ({fast})" if fast else "Fast (not on this device)",
                                   "fast")
            item = self.precision.model().item(2)
            if item is not None:
                item.setEnabled(bool(fast))
            if current == "fast" and not fast:
                current = "auto"
            self.precision.setCurrentIndex(max(0, self.precision.findData(current)))
        finally:
            self._filling = False
        fit_combo(self.precision, ["Fast (bf16)", "Fast (fp16)", "Fast (not on this device)"])

    # -- reacting to choices ---------------------------------------------------------------

    def _purpose_changed(self) -> None:
        if self._filling:
            return
        self._filling = True
        try:
            self._fill_model_list(None)
        finally:
            self._filling = False
        self._model_changed()

    def _model_changed(self) -> None:
        if self._filling:
            return
        self._update()

    def _device_changed(self) -> None:
        if self._filling:
            return
        self._fill_precision(self.precision.currentData() or "auto")
        self._update()

    def _update(self) -> None:
        """Refresh the lines that depend on the choices, and start a measurement."""
        if self._filling:
            return
        chosen = self.settings()
        entry = self._entries.get(chosen.model, {})
        self.about.setText(entry.get("description", "") if isinstance(entry, dict) else "")
        self.about.setVisible(bool(self.about.text()))
        self.size_line.setText(size_text(self.source, chosen.scale))
        warning = memory_warning(self.source, chosen.scale)
        self.warning.setText(warning)
        self.warning.setVisible(bool(warning))
        device = self.resolved_device()
        self.precision_note.setText(precision_text(
            device, self.fast_value(), entry.get("architecture", ""), self._speedup(chosen)))
        self.time_line.setText(self._time_text(chosen))
        self._fit_wrapped()
        self._start_measure(chosen)

    def _fit_wrapped(self) -> None:
        """Give each wrapped text the height it needs at its width: a dialog's layout does
        not grow the window for height-for-width widgets by itself."""
        for label in (self.about, self.precision_note, self.warning, self.note):
            width = label.width() if label.isVisible() else self.model.minimumWidth()
            label.setMinimumHeight(label.heightForWidth(max(width, 1)))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit_wrapped()

    def resolved_device(self) -> dict:
        """The device the worker will use: the chosen one, or for Automatic the first GPU
        (else the CPU)."""
        name = self.device.currentData() or "auto"
        if name == "auto":
            return self._auto_device()
        return self._devices.get(name, {"name": name, "kind": name.partition(":")[0]})

    def _auto_device(self) -> dict:
        if not self._devices_reported:
            return {"name": "auto", "kind": "unknown", "label": "", "fast": None}
        devices = list(self._devices.values())
        for device in devices:
            if device.get("kind") not in (None, "cpu"):
                return device
        return devices[0] if devices else {"name": "cpu", "kind": "cpu", "fast": None}

    def fast_value(self) -> str:
        """The device's fast precision ("bf16", "fp16"), or "" when it has none."""
        fast = self.resolved_device().get("fast")
        return fast if fast in ("bf16", "fp16") else ""

    # -- measuring -------------------------------------------------------------------------

    def _key(self, chosen: Settings, precision: str | None = None) -> tuple:
        return (chosen.model, chosen.device, precision or chosen.wire_precision)

    def _store_measure(self, key: tuple, reply: dict) -> None:
        rate = reply.get("pixels_per_second")
        if not isinstance(rate, (int, float)) or rate <= 0:
            self._measure_failed.add(key)
            return
        self.measured[key] = reply
        resolved = reply.get("precision")
        if key[2] == "auto" and isinstance(resolved, str):
            self.measured.setdefault((key[0], key[1], resolved), reply)

    def _start_measure(self, chosen: Settings) -> None:
        if self._measure is None or not self.models_ready:
            return
        wanted = [self._key(chosen)]
        fast = self.fast_value()
        if fast:  # the other precision too, for what "fast" gains here
            wanted += [self._key(chosen, "fp32"), self._key(chosen, fast)]
        if self._measuring is not None:
            # One at a time; one for settings no longer chosen is given up (the worker
            # stops it), so the wanted one starts next rather than after a whole
            # measurement of a large model the user has just moved away from.
            key, task = self._measuring
            if key not in wanted:
                task.halt.set()
            return
        for key in wanted:
            if key not in self.measured and key not in self._measure_failed:
                task = _Task(lambda halted, key=key, measure=self._measure:
                             measure(*key, cancel=halted))
                self._measuring = (key, task)
                task.start()
                return

    @property
    def measuring(self) -> bool:
        """True while the worker times a tile for the current choices."""
        return self._measuring is not None or self._loader is not None

    def _rate(self, chosen: Settings) -> tuple[float, str]:
        """(input pixels per second, where it comes from) for the current choices."""
        key = self._key(chosen)
        if key in self.measured:
            return float(self.measured[key]["pixels_per_second"]), "measured"
        remembered = self.rates.get(rate_key(*key))
        if remembered:
            return float(remembered), "last run"
        return 0.0, ""

    def _time_text(self, chosen: Settings) -> str:
        rate, origin = self._rate(chosen)
        where = device_short(self.resolved_device())
        if rate and self.source is not None:
            seconds = self.source.width * self.source.height / rate
            how = "measured on a tile just now" if origin == "measured" else "from the last run"
            return f"{duration_text(seconds)} on {where} ({how})"
        if self._measure is not None and (self.measuring or self._key(chosen)
                                          not in self._measure_failed):
            return f"measuring the speed of {where}..."
        return "known after the first run"

    def _speedup(self, chosen: Settings) -> float:
        fast = self.fast_value()
        exact = self.measured.get(self._key(chosen, "fp32"))
        quick = self.measured.get(self._key(chosen, fast)) if fast else None
        if exact and quick:
            return float(quick["pixels_per_second"]) / float(exact["pixels_per_second"])
        return 0.0

    # -- the answer ------------------------------------------------------------------------

    def done(self, result: int) -> None:
        """Closing ends a measurement still running: the upscale the user asked for would
        otherwise wait for it at the worker."""
        self._poll.stop()
        if self._measuring is not None:
            self._measuring[1].halt.set()
        super().done(result)

    def settings(self) -> Settings:
        """The settings as the dialog shows them."""
        if self.purpose.currentData() == WEIGHTS_FILE[0]:
            model = self.path.text().strip()
        else:
            model = self.model.currentData() or ""
        tile = self.tile.currentData()
        return Settings(
            model=model or self._initial.model,
            scale=round(self.scale.value(), 2),
            target=self.target.currentData() or "layer",
            tile=int(tile) if tile is not None else 0,
            device=self.device.currentData() or "auto",
            precision=self.precision.currentData() or "auto",
            fast=self.fast_value(),
        ).normalised()


class _Task(threading.Thread):
    """One call to the worker, off the GUI thread. ``call`` gets a predicate that turns true
    once ``halt`` is set: the call is no longer wanted and should end early."""

    def __init__(self, call) -> None:
        super().__init__(name="realscale-dialog", daemon=True)
        self.call = call
        self.halt = threading.Event()
        self.result = None
        self.error = None

    def run(self) -> None:
        try:
            self.result = self.call(self.halt.is_set)
        except Exception as exc:  # noqa: BLE001 - shown in the dialog as a note
            self.error = str(exc) or type(exc).__name__


def _load_lists(load_models, load_devices) -> tuple[list, list]:
    models = list(load_models())
    devices = []
    if load_devices is not None:
        try:
            devices = list(load_devices())
        except Exception:  # noqa: BLE001 - an older worker: the fixed list stands in
            devices = []
    return models, devices


def _looks_like_path(model: str) -> bool:
    return bool(model) and (os.sep in model or "/" in model
                            or model.lower().endswith((".pth", ".safetensors", ".onnx",
                                                       ".param", ".bin")))


# -- sizing ---------------------------------------------------------------------------------


def fit_combo(combo: QComboBox, texts: list[str] | None = None) -> int:
    """Make ``combo`` wide enough for its longest entry (or for ``texts``) in its own font,
    as the style draws it; its drop-down list too. Returns the width set."""
    metrics = combo.fontMetrics()
    entries = [combo.itemText(i) for i in range(combo.count())] + list(texts or [])
    widest = max([metrics.horizontalAdvance(text) for text in entries] + [0])
    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    size = combo.style().sizeFromContents(QStyle.ContentsType.CT_ComboBox, option,
                                          QSize(widest + COMBO_MARGIN, metrics.height()),
                                          combo)
    width = max(size.width(), combo.minimumSizeHint().width())
    combo.setMinimumWidth(width)
    combo.view().setMinimumWidth(widest + 4 * COMBO_MARGIN)
    return width


# -- texts ----------------------------------------------------------------------------------


def purpose_of(entry: dict) -> str:
    """The entry's purpose key: photo, anime, video, or other."""
    purpose = entry.get("purpose") if isinstance(entry, dict) else None
    return purpose if isinstance(purpose, str) and purpose else OTHER[0]


def purposes(entries) -> list[tuple[str, str]]:
    """(key, label) of the purposes the models have, known ones first, "Other models" last."""
    found: dict[str, str] = {}
    for entry in entries:
        key = purpose_of(entry)
        label = entry.get("purpose_label") if key != OTHER[0] else OTHER[1]
        found.setdefault(key, label if isinstance(label, str) and label
                         else dict(PURPOSES).get(key, key))
    order = [key for key, _ in PURPOSES] + sorted(set(found) - {k for k, _ in PURPOSES}
                                                   - {OTHER[0]}) + [OTHER[0]]
    return [(key, found[key]) for key in order if key in found]


def size_bytes_text(count: int) -> str:
    """A size as people read it: "64 MB", "1.2 GB"."""
    if count >= GIB:
        return f"{count / GIB:.1f} GB"
    megabytes = count / 1024 ** 2
    return f"{megabytes:.0f} MB" if megabytes >= 10 else f"{megabytes:.1f} MB"


def model_label(entry: dict) -> str:
    """"realesrgan-x4plus  (x4)"; "realesrnet-x4plus  (x4, download 64 MB)"."""
    details = []
    scale = entry.get("scale")
    if scale:
        details.append(f"x{scale}")
    if entry.get("available") is False:
        size = entry.get("download_bytes")
        details.append(f"download {size_bytes_text(size)}" if isinstance(size, int) and size > 0
                       else "download")
    return entry["name"] + (f"  ({', '.join(details)})" if details else "")


def device_label(device: dict, auto: dict | None = None) -> str:
    """"CPU (AMD EPYC, 2 cores)", "NVIDIA GeForce RTX 3060 (10.2 GB free)", "Automatic (...)".
    """
    if device.get("name") == "auto":
        short = device_short(auto or {})
        return "Automatic" if short == "this machine" else f"Automatic ({short})"
    label = device.get("label") or device.get("name", "")
    free = device.get("free_bytes")
    if device.get("kind") not in (None, "cpu") and isinstance(free, int) and free >= 0:
        label += f" ({size_bytes_text(free)} free)"
    return label


def device_short(device: dict) -> str:
    """"this CPU", "NVIDIA GeForce RTX 3060", for the sentences of the dialog."""
    kind = device.get("kind", "cpu")
    if kind == "cpu":
        return "this CPU"
    if kind == "unknown":
        return "this machine"
    return device.get("label") or device.get("name", "the GPU")


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The result's size, rounded as the worker rounds it."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def size_text(source: Source | None, scale: float) -> str:
    """"96 x 80 -> 384 x 320 px"."""
    if source is None:
        return f"x{scale:g} (no image)"
    width, height = output_size(source.width, source.height, scale)
    return f"{source.width} x {source.height} -> {width} x {height} px"


def result_bytes(source: Source, scale: float) -> int:
    """What the document will hold after the upscale: every layer at the new size, the new
    layer, and the image's projection."""
    width, height = output_size(source.width, source.height, scale)
    return width * height * source.pixel_bytes * (source.layers + 2)


def memory_warning(source: Source | None, scale: float) -> str:
    """A warning when the result would take more than half the machine's memory, else ""."""
    if source is None or source.memory <= 0:
        return ""
    need = result_bytes(source, scale)
    limit = int(source.memory * MEMORY_SHARE)
    if need <= limit:
        return ""
    width, height = output_size(source.width, source.height, scale)
    return (f"The result ({width} x {height} px, {source.layers + 2} layers with the projection) "
            f"needs about {size_bytes_text(need)} in Krita, more than half this machine's "
            f"{size_bytes_text(source.memory)} of memory (Krita's default limit): Krita may "
            "become very slow or run out of memory. Choose a smaller scale, or merge layers "
            "first.")


def duration_text(seconds: float) -> str:
    """"under a second", "about 12 s", "about 3 min", "about 1.5 h"."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def precision_text(device: dict, fast: str, architecture: str, speedup: float) -> str:
    """One line on what Fast costs on this device for this model.

    Speed: measured here when the worker has timed both precisions, else the project's
    README figures (bf16 on a Zen 5 CPU: x4plus 2.0-2.1x, x4plus-anime 1.8x). Differences
    from Exact in 8-bit values: the README's (RRDBNet in bf16: 99.9th percentile 2-5/255;
    the compact net: 1-2/255, which Automatic accepts)."""
    if not fast:
        return "This device has no fast precision: it computes in fp32 (Exact)."
    if speedup > 0:
        gain = f"about {speedup:.1f}x faster on {device_short(device)} (measured)"
    elif fast == "bf16":
        gain = "about 2x faster on CPUs with bf16"
    else:
        gain = "usually faster on GPUs (not measured by the project)"
    if architecture == "SRVGGNetCompact":
        cost = "99.9% of pixels within 2/255 of Exact; Automatic uses it for this model"
    elif architecture == "RRDBNet" and fast == "bf16":
        cost = "99.9% of pixels within 5/255 of Exact, a few up to 20/255"
    elif fast == "fp16":
        cost = "differences from Exact of a few 1/255 at most; Automatic uses it on GPUs"
    else:
        cost = "small differences from Exact"
    return f"Fast ({fast}): {gain}; {cost}."
