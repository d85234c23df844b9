"""Scenarios the test driver runs inside the real Krita (Krita's own Python 3, with PyQt5 in
Krita 5 and PyQt6 in Krita 6).

Each scenario is a generator taking the driver's Context: a ``yield N`` hands the event loop
N milliseconds. Actions are triggered as the menu triggers them (``QAction.trigger``) or by
their keyboard shortcut; the robot fills in the plug-in's dialog and answers its message
boxes and progress dialog. Everything the pytest side checks goes into ``ctx.record``.
"""

import importlib.util
import os
import signal
import sys
import time

from realscale_testdriver.qt import (
    QT_MAJOR,
    QT_VERSION,
    QApplication,
    QDialogButtonBox,
    QMessageBox,
    QPushButton,
    Qt,
    QTest,
)

UPSCALE = "realscale_upscale"
AGAIN = "realscale_upscale_again"
#: Ctrl+Alt+Shift (the modifiers of Upscale Again's default shortcut, Ctrl+Alt+Shift+U).
UPSCALE_AGAIN_KEYS = (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                      | Qt.KeyboardModifier.ShiftModifier)


def noop(ctx):
    """Warm a fresh profile: start, note where things are, quit."""
    ctx.record("app_data", ctx.app.getAppDataLocation())
    ctx.record("version", ctx.app.version())
    ctx.record("qt", QT_VERSION)
    yield 10


# -- helpers ----------------------------------------------------------------------------------


def watch_messages(ctx):
    """Record the text of every realscale message box, then press its OK button."""
    messages = []

    def answer(box):
        messages.append(box.text())
        box.button(QMessageBox.StandardButton.Ok).click()

    ctx.robot.on("realscale_message", answer)
    ctx.record("messages", messages)
    return messages


def dialog_values(dialog):
    return {
        "model": dialog.settings().model,
        "purpose": dialog.purpose.currentText(),
        "models": [dialog.model.itemData(i) for i in range(dialog.model.count())],
        "scale": dialog.scale.value(),
        "target": dialog.target.currentData(),
        "tile": dialog.tile.currentData(),
        "device": dialog.device.currentData(),
        "devices": [[dialog.device.itemData(i), dialog.device.itemText(i)]
                    for i in range(dialog.device.count())],
        "precision": dialog.precision.currentData(),
        "precision_note": dialog.precision_note.text(),
        "size_line": dialog.size_line.text(),
        "time_line": dialog.time_line.text(),
        "warning": dialog.warning.text() if dialog.warning.isVisible() else "",
        "note": dialog.note.text(),
        "title": dialog.windowTitle(),
        "measured": sorted(list(key) for key in dialog.measured),
        "measuring": dialog.measuring,
    }


def model_groups(dialog):
    """{purpose label: [(model name, entry text)]}, walking the purpose list as a user would,
    with the elided texts found at each step; the purpose shown before is chosen again."""
    groups, elided = {}, []
    before, model = dialog.purpose.currentIndex(), dialog.model.currentData()
    for index in range(dialog.purpose.count()):
        dialog.purpose.setCurrentIndex(index)
        QApplication.processEvents()
        groups[dialog.purpose.itemText(index)] = [
            [dialog.model.itemData(i), dialog.model.itemText(i)]
            for i in range(dialog.model.count())]
        elided += elided_texts(dialog)
    dialog.purpose.setCurrentIndex(before)
    found = dialog.model.findData(model)
    if found >= 0:
        dialog.model.setCurrentIndex(found)
    QApplication.processEvents()
    return groups, elided


def elided_texts(dialog):
    """Every text of the dialog that its widget cannot show whole at the current size, by
    Qt's font metrics: combo box entries against the box's text field (as the style lays
    it out), one-line labels against their content width, wrapped labels against the height
    their text needs."""
    from realscale.qt import QComboBox, QLabel, QStyle, QStyleOptionComboBox

    problems = []
    for combo in dialog.findChildren(QComboBox):
        if not combo.isVisible():
            continue
        option = QStyleOptionComboBox()
        combo.initStyleOption(option)
        field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                             QStyle.SubControl.SC_ComboBoxEditField, combo)
        metrics = combo.fontMetrics()
        for i in range(combo.count()):
            text = combo.itemText(i)
            # Qt draws the current text one pixel in from each side of the field.
            if metrics.horizontalAdvance(text) > field.width() - 2:
                problems.append([combo.objectName(), text, metrics.horizontalAdvance(text),
                                 field.width() - 2])
        view = combo.view()
        for i in range(combo.count()):
            text = combo.itemText(i)
            if metrics.horizontalAdvance(text) > view.viewport().width() and view.isVisible():
                problems.append([combo.objectName() + " list", text])
    for label in dialog.findChildren(QLabel):
        if not label.isVisible() or not label.text():
            continue
        text = label.text().replace("&", "")
        room = label.contentsRect()
        if label.wordWrap():
            if label.heightForWidth(label.width()) > label.height():
                problems.append([label.objectName() or text, text, label.height(),
                                 label.heightForWidth(label.width())])
        elif label.fontMetrics().horizontalAdvance(text) > room.width():
            problems.append([label.objectName() or text, text,
                             label.fontMetrics().horizontalAdvance(text), room.width()])
    return problems


def choose(dialog, values):
    """Set the dialog's fields as a user would: the model through its purpose first."""
    model = values["model"]
    for index in range(dialog.purpose.count()):
        dialog.purpose.setCurrentIndex(index)
        found = dialog.model.findData(model)
        if found >= 0:
            dialog.model.setCurrentIndex(found)
            break
    else:
        raise AssertionError(f"the dialog offers no model {model!r}")
    for name in ("target", "tile", "device", "precision"):
        if name not in values:
            continue
        combo = getattr(dialog, name)
        index = combo.findData(values[name])
        if index < 0:
            raise AssertionError(f"the dialog offers no {name} {values[name]!r}")
        combo.setCurrentIndex(index)
    dialog.scale.setValue(values["scale"])


def answer_dialog(ctx, key, values=None, wait_measure=False):
    """Once the model list is in: record what the dialog shows, set ``values`` and press
    Upscale, or press Cancel when ``values`` is None. With ``wait_measure``, the texts are
    recorded (again, as ``key + "_chosen"``) once the worker has timed the chosen settings."""
    state = {"done": False, "chosen": False}

    def handler(dialog):
        if state["done"] or not dialog.models_ready:
            return
        buttons = dialog.findChild(QDialogButtonBox, "buttons")
        if not state["chosen"]:
            ctx.record(key, dialog_values(dialog))
            groups, elided = model_groups(dialog)
            ctx.record(key + "_groups", groups)
            ctx.record(key + "_elided", elided)
            if values is None:
                state["done"] = True
                buttons.button(QDialogButtonBox.StandardButton.Cancel).click()
                return
            choose(dialog, values)
            state["chosen"] = True
            state["since"] = time.monotonic()
        if wait_measure and dialog.measuring and time.monotonic() - state["since"] < 120:
            return
        state["done"] = True
        ctx.record(key + "_chosen", dialog_values(dialog))
        ctx.record(key + "_chosen_elided", elided_texts(dialog))
        buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    ctx.robot.on("realscale_dialog", handler)
    return state


def watch_progress(ctx, state, on_first_tile=None):
    """Note what the progress dialog shows on each robot tick (the event loop turning while
    the worker runs); call ``on_first_tile(dialog)`` once the first tile is done."""
    state.update({"ticks": 0, "values": [], "labels": [], "acted": False})

    def handler(dialog):
        state["ticks"] += 1
        value = dialog.value()
        if not state["values"] or state["values"][-1] != value:
            state["values"].append(value)
        if not state["labels"] or state["labels"][-1] != dialog.labelText():
            state["labels"].append(dialog.labelText())
        if on_first_tile is not None and not state["acted"] and value >= 1:
            state["acted"] = True
            state["acted_at"] = time.monotonic()
            on_first_tile(dialog)

    ctx.robot.on("realscale_progress", handler)
    return state


def click_cancel(dialog):
    for button in dialog.findChildren(QPushButton):
        if button.text().replace("&", "") == "Cancel":
            button.click()
            return
    raise AssertionError("the progress dialog has no Cancel button")


def describe(ctx, document):
    active = document.activeNode()
    return {
        "size": [document.width(), document.height()],
        "resolution": [document.xRes(), document.yRes()],
        "colour": [document.colorModel(), document.colorDepth(), document.colorProfile()],
        "layers": ctx.layers(document),
        "active": active.name() if active is not None else None,
        "active_colour": [active.colorModel(), active.colorDepth(), active.colorProfile()]
        if active is not None else None,
    }


def finished(ctx, document, key, layer, export=True):
    """Record the document after an upscale, export it and dump the new layer's pixels."""
    ctx.record(key, describe(ctx, document))
    if export:
        ctx.export(document, key + ".png")
    node = document.nodeByName(layer)
    if node is None:
        raise AssertionError(f"no layer {layer!r} after the upscale: {ctx.layers(document)}")
    ctx.dump(node, document, key + ".raw")


def menu_actions(window):
    """{menu path: [action objectNames]} for the Image and Tools > Scripts menus."""
    found = {}
    for entry in window.qwindow().menuBar().actions():
        menu = entry.menu()
        if menu is None:
            continue
        name = entry.objectName().lower()
        if name == "image":
            found["image"] = [a.objectName() for a in menu.actions()]
        if name == "tools":
            for sub in menu.actions():
                if sub.menu() is not None and sub.objectName().lower() == "scripts":
                    found["tools/scripts"] = [a.objectName() for a in sub.menu().actions()]
    return found


def bindings():
    """Which PyQt the plug-in chose, which ones this Krita has loaded, and what the Krita
    makes of an import of the other one (5.3 and later refuse it; 5.1 and 5.2 have no guard,
    and importing the other there would load a second Qt, so it is not tried)."""
    import pykrita

    from realscale import qt as plugin_qt

    wrong = "PyQt5" if QT_MAJOR >= 6 else "PyQt6"
    found = {
        "plugin": plugin_qt.BINDING,
        "plugin_qt": plugin_qt.QT_VERSION,
        "qt": QT_VERSION,
        "loaded": sorted({name.partition(".")[0] for name in sys.modules
                          if name.partition(".")[0] in ("PyQt5", "PyQt6")}),
        "other": wrong,
        # find_spec only looks for the package: it neither imports nor loads Qt.
        "other_installed": importlib.util.find_spec(wrong) is not None,
        "refused": None,
    }
    if hasattr(pykrita, "qt_major_version"):
        try:
            __import__(wrong + ".QtCore")
            found["refused"] = "imported"
        except ImportError as exc:
            found["refused"] = str(exc)
    return found


def press(window, key, modifiers):
    """A real key press on the main window (shortcuts go through Qt's shortcut map)."""
    qwindow = window.qwindow()
    qwindow.activateWindow()
    QApplication.setActiveWindow(qwindow)
    QTest.keyClick(qwindow, key, modifiers)


# -- scenarios ----------------------------------------------------------------------------------


def upscale_matches_cli(ctx):
    """The actions on real images, each result exported for the pixel comparison."""
    from realscale import api, settings

    p = ctx.params
    window = ctx.window
    ctx.record("menus", menu_actions(window))
    ctx.record("shortcuts", {name: ctx.action(name).shortcut().toString()
                             for name in (UPSCALE, AGAIN)})
    ctx.record("texts", {name: ctx.action(name).text() for name in (UPSCALE, AGAIN)})
    messages = watch_messages(ctx)

    # 1. 8-bit RGBA through the dialog, with layers above and below the source.
    document = ctx.open(p["rgba8"])
    yield from ctx.ready(document)
    yield 200
    root = document.rootNode()
    source = root.childNodes()[0]
    under = document.createNode("Under", "paintlayer")
    root.addChildNode(under, source)
    source.remove()
    root.addChildNode(source, under)
    over = document.createNode("Over", "paintlayer")
    root.addChildNode(over, source)
    yield 200
    document.setActiveNode(source)
    yield 200
    ctx.record("rgba8_before", describe(ctx, document))
    ctx.record("enabled", {name: ctx.action(name).isEnabled() for name in (UPSCALE, AGAIN)})
    dialog = answer_dialog(ctx, "dialog_first", {
        "model": p["model"], "scale": 4.0, "target": "layer", "tile": p["tile"],
        "device": "cpu", "precision": "auto"}, wait_measure=True)
    progress = watch_progress(ctx, {})
    started = time.monotonic()
    ctx.trigger(UPSCALE)
    ctx.record("rgba8_seconds", time.monotonic() - started)
    ctx.record("rgba8_progress", dict(progress))
    ctx.record("rgba8_dialog_answered", dialog["done"])
    finished(ctx, document, "rgba8", "Background (Real-ESRGAN x4)")
    yield 100

    # 2. 16-bit RGBA (Adobe RGB profile): Upscale Again from its keyboard shortcut.
    document = ctx.open(p["rgba16"])
    yield from ctx.ready(document)
    yield 300
    ctx.record("rgba16_before", describe(ctx, document))
    press(window, Qt.Key.Key_U, UPSCALE_AGAIN_KEYS)
    yield 100
    finished(ctx, document, "rgba16", "Background (Real-ESRGAN x4)")

    # 3. 8-bit grey through the dialog: the whole visible canvas, x2.
    document = ctx.open(p["gray8"])
    yield from ctx.ready(document)
    yield 300
    ctx.record("gray8_before", describe(ctx, document))
    answer_dialog(ctx, "dialog_second", {
        "model": p["model"], "scale": 2.0, "target": "canvas", "tile": p["tile"],
        "device": "cpu", "precision": "exact"})
    ctx.trigger(UPSCALE)
    finished(ctx, document, "gray8", "Visible (Real-ESRGAN x2)")

    # 4. 16-bit grey: Upscale Again from the menu action (the last settings: canvas, x2).
    document = ctx.open(p["gray16"])
    yield from ctx.ready(document)
    yield 300
    ctx.record("gray16_before", describe(ctx, document))
    ctx.trigger(AGAIN)
    finished(ctx, document, "gray16", "Visible (Real-ESRGAN x2)")

    # 5. Float RGBA through the function API (converted from the 8-bit crop, same profile).
    for depth in ("F32", "F16"):
        document = ctx.open(p["rgba8"])
        yield from ctx.ready(document)
        yield 200
        document.setColorSpace("RGBA", depth, document.colorProfile())
        document.waitForDone()
        ctx.dump(document.activeNode(), document, f"rgba_{depth.lower()}_input.raw")
        api.upscale(document, settings.Settings(p["model"], 4.0, "layer", p["tile"], "cpu"))
        finished(ctx, document, "rgba_" + depth.lower(), "Background (Real-ESRGAN x4)",
                 export=False)
        yield 100

    # 6. The dialog shows the last settings; Cancel there changes nothing.
    before = ctx.snapshot(document)
    answer_dialog(ctx, "dialog_remembered", None)
    ctx.trigger(UPSCALE)
    ctx.record("dialog_cancel_unchanged", ctx.snapshot(document) == before)
    ctx.record("message_count", len(messages))
    ctx.record("menus_end", menu_actions(window))
    ctx.record("bindings", bindings())
    yield 50


def cancel_and_failures(ctx):
    """Cancel, a worker that dies, colour models it cannot take, masks, a missing worker:
    each gives at most one message and leaves the document exactly as it was."""
    from realscale import api, settings

    p = ctx.params
    messages = watch_messages(ctx)
    settings.save(settings.Settings(p["model"], 4.0, "layer", p["slow_tile"], "cpu"))

    # 1. Cancel once the first tile is done.
    document = ctx.open(p["big"])
    yield from ctx.ready(document)
    yield 300
    before = ctx.snapshot(document)
    state = watch_progress(ctx, {}, click_cancel)
    ctx.trigger(AGAIN)
    returned = time.monotonic()
    ctx.record("cancel", {
        "progress": {k: v for k, v in state.items() if k != "acted_at"},
        "seconds_to_stop": returned - state.get("acted_at", returned),
        "unchanged": ctx.snapshot(document) == before,
        "messages": list(messages),
    })

    # 2. The worker dies in the middle of an upscale.
    pids = {}

    def kill_worker(dialog):
        pids["killed"] = api.client().pid
        os.kill(pids["killed"], signal.SIGKILL)

    state = watch_progress(ctx, {}, kill_worker)
    ctx.trigger(AGAIN)
    ctx.record("dead_worker", {
        "killed": pids.get("killed"),
        "unchanged": ctx.snapshot(document) == before,
        "messages": list(messages),
    })
    ctx.robot.off("realscale_progress")
    del messages[:]

    # 3. The next upscale starts a new worker and works.
    settings.save(settings.Settings(p["model"], 4.0, "layer", p["tile"], "cpu"))
    small = ctx.open(p["rgba8"])
    yield from ctx.ready(small)
    yield 200
    ctx.record("active_before_restart", ctx.app.activeDocument().fileName())
    ctx.trigger(AGAIN)
    ctx.record("after_restart", {"document": describe(ctx, small), "pid": api.client().pid,
                                 "messages": list(messages)})
    del messages[:]

    # 4. Colour models Real-ESRGAN cannot take.
    unsupported = {}
    for model, depth in (("CMYKA", "U8"), ("LABA", "U16"), ("XYZA", "F32")):
        other = ctx.show(ctx.app.createDocument(64, 48, model, model, depth, "", 72.0))
        yield from ctx.ready(other)
        yield 200
        snap = ctx.snapshot(other)
        ctx.trigger(AGAIN)
        unsupported[model] = {"unchanged": ctx.snapshot(other) == snap,
                              "messages": list(messages)}
        del messages[:]
    ctx.record("unsupported", unsupported)

    # 5. A mask is active.
    ctx.activate(small)
    yield 200
    mask = small.createNode("Mask", "transparencymask")
    small.activeNode().addChildNode(mask, None)
    small.setActiveNode(mask)
    yield 200
    snap = ctx.snapshot(small)
    ctx.trigger(AGAIN)
    ctx.record("mask", {"unchanged": ctx.snapshot(small) == snap, "messages": list(messages)})
    del messages[:]

    # 6. No worker installed: the config names nothing. The set-up dialog opens (first use);
    # Cancel there changes nothing and says nothing.
    os.environ["REALSCALE_WORKER_CONFIG"] = p["missing_config"]
    api.close_client()
    small.setActiveNode(small.rootNode().childNodes()[-1])
    yield 100
    snap = ctx.snapshot(small)
    setup = watch_setup(ctx, {})
    ctx.trigger(AGAIN)
    ctx.record("missing_worker", {"unchanged": ctx.snapshot(small) == snap,
                                  "messages": list(messages), "setup": setup,
                                  "config_exists": os.path.exists(p["missing_config"])})
    ctx.record("unexpected", list(ctx.robot.unexpected))
    yield 50


def installed_by_cli(ctx):
    """After ``realscale install krita``: the menus, the shortcut, one upscale."""
    from realscale import settings
    p = ctx.params
    window = ctx.window
    ctx.record("menus", menu_actions(window))
    ctx.record("shortcuts", {name: ctx.action(name).shortcut().toString()
                             for name in (UPSCALE, AGAIN)})
    messages = watch_messages(ctx)
    settings.save(settings.Settings(p["model"], 4.0, "layer", p["tile"], "cpu"))
    document = ctx.open(p["rgba8"])
    yield from ctx.ready(document)
    yield 300
    press(window, Qt.Key.Key_U, UPSCALE_AGAIN_KEYS)
    yield 100
    finished(ctx, document, "rgba8", "Background (Real-ESRGAN x4)")
    ctx.record("message_count", len(messages))
    ctx.record("bindings", bindings())


def screenshots(ctx):
    """For scripts/screenshots/krita.py: the dialog on a real image once the worker has timed
    the chosen model (dialog.png), then Krita's window with the result layer (result.png)."""
    p = ctx.params
    document = ctx.open(p["image"])
    yield from ctx.ready(document)
    yield 500
    state = {"done": False, "chosen": False}

    def handler(dialog):
        if state["done"] or not dialog.models_ready:
            return
        if not state["chosen"]:
            choose(dialog, {"model": p["model"], "scale": 4.0, "device": "cpu",
                            "target": "layer", "precision": "auto"})
            state["chosen"] = True
            state["since"] = time.monotonic()
            return
        if dialog.measuring and time.monotonic() - state["since"] < 120:
            return
        state["done"] = True
        QApplication.processEvents()
        ctx.record("elided", elided_texts(dialog))
        ctx.record("dialog", dialog_values(dialog))
        dialog.grab().save(ctx.path("dialog.png"), "PNG")
        dialog.findChild(QDialogButtonBox, "buttons").button(
            QDialogButtonBox.StandardButton.Ok).click()

    ctx.robot.on("realscale_dialog", handler)
    ctx.trigger(UPSCALE)
    yield 300
    window = ctx.window.qwindow()
    window.showMaximized()
    yield 1000
    zoom = ctx.app.action("zoom_to_100pct")
    if zoom is not None:
        zoom.trigger()
    yield 1000
    window.grab().save(ctx.path("result.png"), "PNG")
    ctx.record("layers", ctx.layers(document))


# -- first use: the engine set up from inside Krita (issue 14) ---------------------------------


def _texts(widget):
    """{objectName: text} of the labels, line edits and combo boxes of a dialog."""
    from realscale.qt import QComboBox, QLabel, QLineEdit

    found = {}
    for kind in (QLabel, QLineEdit):
        for child in widget.findChildren(kind):
            if child.objectName():
                found[child.objectName()] = child.text()
    for combo in widget.findChildren(QComboBox):
        found[combo.objectName()] = [[combo.itemData(i), combo.itemText(i)]
                                     for i in range(combo.count())]
    return found


def watch_setup(ctx, state, folder=None, backend=None):
    """Record the set-up dialog; with ``folder``, choose it (and ``backend``) and press
    Install, else press Cancel."""
    state.update({"setup_shown": 0})

    def handler(dialog):
        state["setup_shown"] += 1
        if state["setup_shown"] > 1:
            return
        state["setup"] = _texts(dialog)
        buttons = dialog.findChild(QDialogButtonBox, "buttons")
        install = buttons.button(QDialogButtonBox.StandardButton.Ok)
        state["install_enabled"] = install.isEnabled()
        if folder is None or not install.isEnabled():
            buttons.button(QDialogButtonBox.StandardButton.Cancel).click()
            return
        dialog.path.setText(folder)
        if backend is not None:
            dialog.backends.setCurrentIndex(dialog.backends.findData(backend))
        install.click()

    ctx.robot.on("realscale_setup", handler)
    return state


def watch_setup_progress(ctx, state, cancel_in=None):
    """Note the set-up progress dialog's texts; press Cancel once a phase whose label starts
    with one of ``cancel_in`` shows."""
    state.update({"labels": [], "values": [], "cancelled_in": None})

    def handler(dialog):
        text = dialog.labelText()
        if not state["labels"] or state["labels"][-1] != text:
            state["labels"].append(text)
        if not state["values"] or state["values"][-1] != dialog.value():
            state["values"].append(dialog.value())
        if cancel_in and state["cancelled_in"] is None and text.startswith(cancel_in):
            state["cancelled_in"] = text
            click_cancel(dialog)

    ctx.robot.on("realscale_setup_progress", handler)
    return state


def first_use_setup(ctx):
    """No worker config: the upscale command opens the set-up dialog. ``mode``: "install"
    (install into ``folder``, then the upscale goes on, then the engine dialog), "cancel"
    (cancel during pip), "decline" (Cancel in the set-up dialog)."""
    p = ctx.params
    mode = p["mode"]
    messages = watch_messages(ctx)
    document = ctx.open(p["rgba8"])
    yield from ctx.ready(document)
    yield 300
    before = ctx.snapshot(document)
    setup = watch_setup(ctx, {}, None if mode == "decline" else p["folder"], p.get("backend"))
    progress = watch_setup_progress(
        ctx, {}, ("Downloading", "Installing") if mode == "cancel" else None)
    answer_dialog(ctx, "dialog_after_setup", {
        "model": p["model"], "scale": 4.0, "target": "layer", "tile": p["tile"],
        "device": "cpu", "precision": "auto"})
    started = time.monotonic()
    ctx.trigger(UPSCALE)
    ctx.record("seconds", time.monotonic() - started)
    ctx.record("setup", setup)
    ctx.record("progress", progress)
    ctx.record("config_exists", os.path.exists(p["config"]))
    ctx.record("folder_entries", sorted(os.listdir(p["folder"]))
               if os.path.isdir(p["folder"]) else None)
    if mode == "install":
        ctx.record("document", describe(ctx, document))
        ctx.dump(document.nodeByName("Background (Real-ESRGAN x4)"), document, "rgba8.raw")
        engine = {}

        def read_engine(dialog):
            if dialog.ready and "fields" not in engine:
                engine["fields"] = _texts(dialog)
                engine["buttons"] = {name: dialog.findChild(QPushButton, name).isEnabled()
                                     for name in ("update", "remove", "setup")}
                dialog.reject()

        ctx.robot.on("realscale_engine", read_engine)
        ctx.trigger("realscale_engine")
        ctx.record("engine", engine)
        if p.get("other_protocol"):
            yield from engine_of_another_protocol(ctx, document, messages)
    else:
        ctx.record("unchanged", ctx.snapshot(document) == before)
    ctx.record("messages_at_end", list(messages))
    ctx.record("unexpected", list(ctx.robot.unexpected))
    yield 50


def _speak_protocol(folder, version):
    """Make the engine in ``folder`` speak protocol ``version`` (as one set up by another
    realscale would): its installed realscale's PROTOCOL_VERSION, its stale bytecode gone."""
    import glob
    import re

    patched = []
    pattern = os.path.join(folder, "env-*", "lib", "python3*", "site-packages", "realscale",
                           "**", "*.py")
    for path in glob.glob(pattern, recursive=True):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        changed = re.sub(r"(?m)^PROTOCOL_VERSION = \d+$", f"PROTOCOL_VERSION = {version}",
                         text)
        if changed == text:
            continue
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(changed)
        stem = os.path.splitext(os.path.basename(path))[0]
        for cached in glob.glob(os.path.join(os.path.dirname(path), "__pycache__",
                                             stem + ".*.pyc")):
            os.remove(cached)
        patched.append(path)
    return patched


def engine_of_another_protocol(ctx, document, messages):
    """After the first use: the engine is made to speak another protocol, the worker is
    ended (as a restart of Krita would), and Upscale Again runs on a second copy of the
    image. The plug-in offers "Update the engine" (pressed), updates it behind its progress
    dialog and runs the upscale."""
    from realscale import api

    p = ctx.params
    folder = p["folder"]
    ctx.record("envs_before_update", sorted(n for n in os.listdir(folder)
                                            if n.startswith("env-")))
    ctx.record("patched", _speak_protocol(folder, p["other_protocol"]))
    api.close_client()
    offer = {}

    def answer_offer(box):
        if "text" in offer:
            return
        offer["text"] = box.text()
        offer["informative"] = box.informativeText()
        offer["buttons"] = sorted(b.text() for b in box.buttons())
        box.findChild(QPushButton, "update").click()

    ctx.robot.on("realscale_update_offer", answer_offer)
    progress = watch_setup_progress(ctx, {})
    again = ctx.open(p["rgba8_again"])
    yield from ctx.ready(again)
    yield 300
    ctx.trigger(AGAIN)
    ctx.record("offer", offer)
    ctx.record("update_progress", progress)
    ctx.record("envs_after_update", sorted(n for n in os.listdir(folder)
                                           if n.startswith("env-")))
    ctx.record("again_document", describe(ctx, again))
    layer = again.nodeByName("Background (Real-ESRGAN x4)")
    if layer is not None:
        ctx.dump(layer, again, "rgba8-again.raw")
    ctx.record("messages_after_update", list(messages))


def incomplete_plugin(ctx):
    """The plug-in folder without realscale_wire.py (copied by hand, not from the zip): the
    upscale commands and the engine command each give one message saying so."""
    messages = watch_messages(ctx)
    document = ctx.open(ctx.params["rgba8"])
    yield from ctx.ready(document)
    yield 300
    before = ctx.snapshot(document)
    shown = {}
    for action in (UPSCALE, AGAIN, "realscale_engine"):
        ctx.trigger(action)
        yield 100
        shown[action] = list(messages)
        del messages[:]
    ctx.record("messages", shown)
    ctx.record("unchanged", ctx.snapshot(document) == before)
    ctx.record("unexpected", list(ctx.robot.unexpected))
