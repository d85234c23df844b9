"""Krita wiring: the two upscale actions, in Tools > Scripts and in the Image menu, and the
engine's, in Tools > Scripts."""

from __future__ import annotations

import os

from krita import Extension, Krita

from . import api
from .qt import QKeySequence

ACTIONS = (
    ("realscale_upscale", "Upscale with Real-ESRGAN...", api.action_upscale),
    ("realscale_upscale_again", "Upscale Again", api.action_upscale_again),
)
#: Only in Tools > Scripts: the engine is no image operation.
ENGINE_ACTION = ("realscale_engine", "Real-ESRGAN Engine...", api.action_engine)
#: The default shortcuts, as in realscale.action.
SHORTCUTS = {"realscale_upscale": "Ctrl+Alt+U", "realscale_upscale_again": "Ctrl+Alt+Shift+U"}
#: objectName of Krita's Image menu in the menu bar (compared ignoring case).
IMAGE_MENU = "image"


class RealscaleExtension(Extension):
    """Adds "Upscale with Real-ESRGAN..." and "Upscale Again" to every main window."""

    def __init__(self, parent) -> None:
        super().__init__(parent)
        # (main window, its actions) waiting for the menu bar to be built.
        self._pending = []
        # Every action made, for Krita's lifetime: an action whose Python wrapper was
        # collected could stop calling its Python slot (seen in Krita 5.1).
        self._actions = []

    def setup(self) -> None:
        notifier = Krita.instance().notifier()
        notifier.setActive(True)
        notifier.windowCreated.connect(self._window_created)

    def createActions(self, window) -> None:
        created = []
        for name, text, handler in ACTIONS:
            # Krita fills in the default shortcut from realscale.action (in its actions
            # folder) and any shortcut the user chose; the menu text is set here.
            action = window.createAction(name, text, "tools/scripts")
            if action.shortcut().isEmpty() and not _action_file_installed():
                # Installed without realscale.action in Krita's actions folder: Krita knows
                # no default shortcut, so give the documented one.
                action.setShortcut(QKeySequence(SHORTCUTS[name]))
            action.triggered.connect(handler)
            created.append(action)
        self._pending.append((window.qwindow(), created))
        name, text, handler = ENGINE_ACTION
        engine = window.createAction(name, text, "tools/scripts")
        engine.triggered.connect(handler)
        self._actions += [*created, engine]

    def _window_created(self) -> None:
        # The menu bar is still empty while createActions runs: add to the Image menu once
        # the window is complete.
        waiting = []
        for qwindow, actions in self._pending:
            if qwindow is not None and not _add_to_image_menu(qwindow, actions):
                waiting.append((qwindow, actions))
        self._pending = waiting


def _add_to_image_menu(qwindow, actions) -> bool:
    """List the actions at the end of the window's Image menu; False when it has none yet."""
    for entry in qwindow.menuBar().actions():
        menu = entry.menu()
        if menu is not None and entry.objectName().lower() == IMAGE_MENU:
            menu.addSeparator()
            for action in actions:
                menu.addAction(action)
            return True
    return False


def _action_file_installed() -> bool:
    folder = Krita.instance().getAppDataLocation()
    return os.path.isfile(os.path.join(folder, "actions", "realscale.action"))
