"""Test-only Krita plug-in: runs one scenario from tests/hosts/krita/krita_scenarios.py.

Installed only into test profiles. With REALSCALE_KRITA_SCENARIO naming a JSON spec
({"scenarios": path, "scenario": name, "params": {...}, "out": folder, "timeout": s}), it
waits for the main window, runs the scenario (a generator: each ``yield`` gives the event
loop that many milliseconds), writes ``result.json`` into ``out`` and quits Krita. A robot
timer answers the dialogs the scenario expects and records (and closes) any other modal
window, so a headless run never hangs on one.
"""

import hashlib
import importlib.util
import json
import os
import sys
import threading
import time
import traceback

from krita import Extension, InfoObject, Krita

from .qt import QApplication, QDialog, QTimer

SCENARIO_ENV = "REALSCALE_KRITA_SCENARIO"
EXIT_SCENARIO_FAILED = 3
EXIT_WATCHDOG = 4
EXIT_UNCAUGHT = 5
#: Windows the robot leaves alone unless a handler is set (closing the progress dialog
#: would cancel the upscale).
LEFT_ALONE = {"realscale_progress", "realscale_setup_progress"}


class Robot:
    """Answers windows by objectName while a scenario runs, also inside nested loops."""

    def __init__(self, context):
        self.context = context
        self.handlers = {}
        self.unexpected = []
        self.ticks = {}
        self.timer = QTimer()
        self.timer.setInterval(30)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def on(self, object_name, handler):
        """Call ``handler(widget)`` on every tick while a visible window has this name."""
        self.handlers[object_name] = handler

    def off(self, object_name):
        self.handlers.pop(object_name, None)

    def tick(self):
        try:
            handled = set()
            for widget in QApplication.topLevelWidgets():
                name = widget.objectName()
                if widget.isVisible() and name in self.handlers:
                    self.ticks[name] = self.ticks.get(name, 0) + 1
                    handled.add(name)
                    self.handlers[name](widget)
            modal = QApplication.activeModalWidget()
            if modal is not None and modal.isVisible() and modal.objectName() not in handled \
                    and modal.objectName() not in self.handlers \
                    and modal.objectName() not in LEFT_ALONE:
                text = modal.text() if hasattr(modal, "text") else ""
                self.unexpected.append({"class": type(modal).__name__,
                                        "name": modal.objectName(),
                                        "title": modal.windowTitle(), "text": text})
                if isinstance(modal, QDialog):
                    modal.reject()
                else:
                    modal.close()
        except BaseException:  # noqa: BLE001 - a robot failure fails the scenario
            self.context.fail(traceback.format_exc())


class Context:
    """What a scenario works with: Krita, the robot, records, files."""

    def __init__(self, spec, driver):
        self.spec = spec
        self.params = spec.get("params", {})
        self.out = spec["out"]
        self.driver = driver
        self.app = Krita.instance()
        self.records = {}
        self.failures = []
        self.triggers = []
        self.records["triggers"] = self.triggers
        self.robot = Robot(self)

    # -- results --------------------------------------------------------------------------

    def record(self, key, value):
        self.records[key] = value

    def fail(self, text):
        self.failures.append(text)

    def path(self, name):
        return os.path.join(self.out, name)

    # -- Krita ----------------------------------------------------------------------------

    @property
    def window(self):
        return self.app.activeWindow()

    def open(self, path):
        """Open an image in a new view (batch mode: no import dialogs)."""
        document = self.app.openDocument(path)
        if document is None:
            raise RuntimeError("Krita could not open " + path)
        document.setBatchmode(True)
        self.window.addView(document)
        document.waitForDone()
        return document

    def show(self, document):
        """Add a view of a document made by the scenario (createDocument)."""
        document.setBatchmode(True)
        self.window.addView(document)
        return document

    def ready(self, document, seconds=30.0):
        """Hand Krita's event loop turns (``yield from ctx.ready(doc)`` in a scenario) until
        the new view has an active layer: Krita 5.2 leaves it empty for a moment after
        addView, and a user's click on a menu item comes later than that."""
        deadline = time.monotonic() + seconds
        while document.activeNode() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no active layer {seconds:.0f}s after opening the document")
            yield 20

    def activate(self, document):
        """Make the view of ``document`` the active one (the actions work on it)."""
        for view in self.window.views():
            if view.document() == document:
                view.setVisible()
                return
        raise RuntimeError("no view shows that document")

    def action(self, name):
        action = self.app.action(name)
        if action is None:
            raise RuntimeError("Krita has no action " + name)
        return action

    def trigger(self, name):
        """Trigger a menu action as the menu would; returns when it has finished."""
        action = self.action(name)
        document = self.app.activeDocument()
        self.triggers.append([name, id(action), len(self.app.windows()),
                              document.fileName() if document is not None else None])
        if not action.isEnabled():
            raise RuntimeError(f"the action {name} is disabled")
        action.trigger()

    def layers(self, document, parent=None):
        """[(name, type, visible)] of a level of the layer stack, bottom to top."""
        parent = parent or document.rootNode()
        return [[n.name(), n.type(), bool(n.visible())] for n in parent.childNodes()]

    def snapshot(self, document):
        """Everything "the document is unchanged" compares, pixels included."""
        document.waitForDone()
        w, h = document.width(), document.height()
        nodes = []
        for node in document.rootNode().childNodes():
            digest = hashlib.sha256(bytes(node.pixelData(0, 0, w, h))).hexdigest()
            nodes.append([node.name(), node.type(), bool(node.visible()), node.colorModel(),
                          node.colorDepth(), node.colorProfile(), digest])
        active = document.activeNode()
        return {
            "size": [w, h], "resolution": [document.xRes(), document.yRes()],
            "colour": [document.colorModel(), document.colorDepth(), document.colorProfile()],
            "nodes": nodes, "active": active.name() if active is not None else None,
            "projection": hashlib.sha256(bytes(document.pixelData(0, 0, w, h))).hexdigest(),
        }

    def export(self, document, name):
        """Export the flattened image, keeping depth, alpha and profile."""
        path = self.path(name)
        info = InfoObject()
        info.setProperty("alpha", True)
        info.setProperty("forceSRGB", False)
        info.setProperty("saveSRGBProfile", False)
        info.setProperty("compression", 1)
        document.waitForDone()
        if not document.exportImage(path, info):
            raise RuntimeError("exportImage failed for " + path)
        return path

    def dump(self, node, document, name):
        """The node's pixels as Krita gives them (raw bytes) in a file."""
        path = self.path(name)
        data = bytes(node.pixelData(0, 0, document.width(), document.height()))
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def close_all(self):
        for document in list(self.app.documents()):
            document.setModified(False)
            document.close()


class Driver(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.spec = None
        self.started = False
        self.context = None
        self.steps = None
        self.done = False

    def setup(self):
        path = os.environ.get(SCENARIO_ENV)
        if not path:
            return
        with open(path, encoding="utf-8") as handle:
            self.spec = json.load(handle)
        sys.excepthook = self._excepthook  # Krita's own hook opens a modal dialog
        watchdog = threading.Timer(float(self.spec.get("timeout", 300)), self._watchdog)
        watchdog.daemon = True
        watchdog.start()
        app = Krita.instance()
        app.setBatchmode(True)
        app.notifier().setActive(True)
        app.notifier().windowCreated.connect(self._window_created)

    def createActions(self, window):
        pass

    def _window_created(self):
        if self.spec is None or self.started:
            return
        self.started = True
        QTimer.singleShot(0, self._start)

    def _start(self):
        try:
            spec = importlib.util.spec_from_file_location("krita_scenarios",
                                                          self.spec["scenarios"])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.context = Context(self.spec, self)
            self.steps = getattr(module, self.spec["scenario"])(self.context)
            self.started_at = time.monotonic()
        except BaseException:  # noqa: BLE001
            self._finish(traceback.format_exc())
            return
        # Work started in the very first tick hangs exportImage: give Krita a moment.
        QTimer.singleShot(500, self._step)

    def _step(self):
        if self.done:
            return
        try:
            delay = next(self.steps)
        except StopIteration:
            self._finish(None)
            return
        except BaseException:  # noqa: BLE001
            self._finish(traceback.format_exc())
            return
        if self.context.failures:
            self._finish(None)
            return
        QTimer.singleShot(int(delay or 20), self._step)

    def _finish(self, error):
        if self.done:
            return
        self.done = True
        context = self.context
        failures = list(context.failures) if context else []
        if error:
            failures.append(error)
        result = {
            "ok": not failures,
            "failures": failures,
            "records": context.records if context else {},
            "unexpected_windows": context.robot.unexpected if context else [],
            "seconds": round(time.monotonic() - getattr(self, "started_at", time.monotonic()),
                             2),
        }
        _write_json(os.path.join(self.spec["out"], "result.json"), result)
        try:
            if context is not None:
                context.robot.timer.stop()
                context.close_all()
        except BaseException:  # noqa: BLE001
            pass
        # file_quit exits 0; should it not get there, end the process anyway.
        fallback = threading.Timer(20.0, lambda: os._exit(0 if result["ok"] else 1))
        fallback.daemon = True
        fallback.start()
        QTimer.singleShot(0, lambda: Krita.instance().action("file_quit").trigger())

    def _excepthook(self, kind, value, tb):
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(text)
        out = self.spec["out"] if self.spec else "."
        _write_json(os.path.join(out, "result.json"),
                    {"ok": False, "failures": ["uncaught exception:\n" + text]})
        os._exit(EXIT_UNCAUGHT)

    def _watchdog(self):
        out = self.spec["out"]
        _write_json(os.path.join(out, "watchdog.json"), {"fired": True})
        sys.stderr.write("realscale test driver: watchdog fired\n")
        os._exit(EXIT_WATCHDOG)


def _write_json(path, data):
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, default=str)
    os.replace(temp, path)


Krita.instance().addExtension(Driver(Krita.instance()))
