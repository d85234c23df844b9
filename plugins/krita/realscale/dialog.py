"""The "Upscale with Real-ESRGAN" dialog: model, scale, target, tile size and device."""

from __future__ import annotations

import threading

from .qt import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QTimer,
    QVBoxLayout,
)
from .settings import DEVICES, MAX_SCALE, Settings

DIALOG_OBJECT_NAME = "realscale_dialog"
TILE_CHOICES = (0, 64, 128, 256, 512, 1024)
TARGET_LABELS = (("layer", "Active layer"), ("canvas", "Whole visible canvas"))
DEVICE_LABELS = {"auto": "Automatic", "cpu": "CPU", "cuda": "NVIDIA GPU (CUDA)",
                 "mps": "Apple GPU (MPS)"}


class UpscaleDialog(QDialog):
    """Asks for the settings of one upscale; ``settings()`` reads them back.

    ``load_models`` (optional) returns the worker's model list; it runs on a thread so the
    dialog opens at once, and the list fills in when it arrives (``models_ready`` is then
    True; ``models_error`` holds the message when it failed).
    """

    def __init__(self, settings: Settings, load_models=None, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName(DIALOG_OBJECT_NAME)
        self.setWindowTitle("Upscale with Real-ESRGAN")
        self.models_ready = False
        self.models_error = ""

        self.model = QComboBox(self)
        self.model.setObjectName("model")
        self.model.setEditable(True)
        self.model.setToolTip("A model from the realscale catalogue, or the path of a weights "
                              "file (.pth, .safetensors)")
        self._fill_models([], settings.model)

        self.scale = QDoubleSpinBox(self)
        self.scale.setObjectName("scale")
        self.scale.setRange(1.0, MAX_SCALE)
        self.scale.setDecimals(2)
        self.scale.setSingleStep(1.0)
        self.scale.setPrefix("x")
        self.scale.setValue(settings.scale)
        self.scale.setToolTip("How much larger the image gets. Other scales than the model's "
                              "own are resized from the model's result.")

        self.target = QComboBox(self)
        self.target.setObjectName("target")
        for key, label in TARGET_LABELS:
            self.target.addItem(label, key)
        self.target.setCurrentIndex(max(0, self.target.findData(settings.target)))

        self.tile = QComboBox(self)
        self.tile.setObjectName("tile")
        self.tile.setToolTip("Pixels per tile: smaller tiles need less memory. Automatic fits "
                             "them to the memory the device has.")
        choices = list(TILE_CHOICES)
        if settings.tile not in choices:
            choices.append(settings.tile)
        for tile in sorted(choices):
            self.tile.addItem("Automatic" if tile == 0 else f"{tile} px", tile)
        self.tile.setCurrentIndex(self.tile.findData(settings.tile))

        self.device = QComboBox(self)
        self.device.setObjectName("device")
        for key in DEVICES:
            self.device.addItem(DEVICE_LABELS[key], key)
        self.device.setCurrentIndex(max(0, self.device.findData(settings.device)))

        form = QFormLayout()
        form.addRow("&Model:", self.model)
        form.addRow("&Scale:", self.scale)
        form.addRow("&Upscale:", self.target)
        form.addRow("&Tile size:", self.tile)
        form.addRow("&Device:", self.device)

        standard = QDialogButtonBox.StandardButton
        buttons = QDialogButtonBox(standard.Ok | standard.Cancel, parent=self)
        buttons.setObjectName("buttons")
        buttons.button(standard.Ok).setText("&Upscale")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        self.note = QLabel("", self)
        self.note.setObjectName("note")
        self.note.setWordWrap(True)
        self.note.hide()

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.note)
        layout.addWidget(buttons)

        self._loader = None
        self._poll = QTimer(self)
        self._poll.setInterval(100)
        self._poll.timeout.connect(self._check_models)
        if load_models is not None:
            self._loader = _Loader(load_models)
            self._loader.start()
            self._poll.start()
        else:
            self.models_ready = True

    def _check_models(self) -> None:
        loader = self._loader
        if loader is None or loader.is_alive():
            return
        self._poll.stop()
        if loader.error is not None:
            self.models_error = loader.error
            self.note.setText("The model list is not available: " + loader.error)
            self.note.show()
        else:
            self._fill_models(loader.models or [], self.settings().model)
        self.models_ready = True

    def _fill_models(self, models, current: str) -> None:
        self.model.clear()
        names = []
        for entry in models:
            name = entry.get("name", "") if isinstance(entry, dict) else ""
            if name and name not in names:
                names.append(name)
                self.model.addItem(_model_label(entry), name)
        if current not in names:
            self.model.addItem(current, current)
        self.model.setCurrentIndex(self.model.findData(current))

    def settings(self) -> Settings:
        """The settings as the dialog shows them."""
        index = self.model.currentIndex()
        text = self.model.currentText().strip()
        model = self.model.itemData(index) if index >= 0 and self.model.itemText(index) == text \
            else text
        tile = self.tile.currentData()
        return Settings(
            model=model or Settings().model,
            scale=round(self.scale.value(), 2),
            target=self.target.currentData(),
            tile=int(tile) if tile is not None else 0,
            device=self.device.currentData(),
        ).normalised()


class _Loader(threading.Thread):
    def __init__(self, load) -> None:
        super().__init__(name="realscale-models", daemon=True)
        self.load = load
        self.models = None
        self.error = None

    def run(self) -> None:
        try:
            self.models = list(self.load())
        except Exception as exc:  # noqa: BLE001 - shown in the dialog as a note
            self.error = str(exc) or type(exc).__name__


def _model_label(entry: dict) -> str:
    label = entry["name"]
    scale = entry.get("scale")
    if scale:
        label += f"  (x{scale})"
    if entry.get("available") is False:
        label += ", weights not downloaded"
    return label

