"""The engine's dialogs in GIMP: the first-use set-up, the update of an engine that speaks
another protocol, and Filters > Enhance > Real-ESRGAN engine...

Beside ``realscale-upscale.py``, which imports it when one of them is needed; each runs one job
of ``realscale_setup`` (beside it too) with its phases and pip's progress, Cancel stopping it.
GTK is only loaded here, so a script's non-interactive upscale never starts it.
"""

from __future__ import annotations

import json
import os

import gi
from gi.repository import GLib

BINARY = "realscale-upscale"


def gtk():
    """GTK, with GimpUi set up for this plug-in (its theme, its dialogs' parent)."""
    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    from gi.repository import GimpUi, Gtk

    GimpUi.init(BINARY)
    return Gtk


def with_log(message: str, log: str) -> str:
    """The failure's sentences, naming the log unless they already do."""
    return message if not log or log in message else f"{message} The full log is in {log}."


class JobDialog:
    """A dialog that explains, then runs one realscale_setup job with its phases and pip's
    progress, Cancel stopping it; a failure stays on screen in one or two sentences with the
    log's path. ``run()`` returns the job's Result, or None when the user closed it first."""

    def __init__(self, title: str, intro: str) -> None:
        self.Gtk = Gtk = gtk()
        self.dialog = Gtk.Dialog(title=title, modal=True)
        self.dialog.set_default_size(560, -1)
        self.cancel_button = self.dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.box = self.dialog.get_content_area()
        self.box.set_spacing(8)
        self.box.set_border_width(12)
        self.labels: dict[str, Gtk.Label] = {}
        self.text("intro", intro)
        self.grid = Gtk.Grid(column_spacing=12, row_spacing=6)
        self.box.pack_start(self.grid, False, False, 0)
        self.rows = 0
        self.bar = Gtk.ProgressBar(show_text=True)
        self.bar.set_no_show_all(True)
        self.box.pack_end(self.bar, False, False, 0)
        self.text("status", "")
        self.job = None
        self.outcome = None
        self.on_done = None

    def text(self, name: str, text: str):
        label = self.Gtk.Label(label=text, xalign=0.0, wrap=True, max_width_chars=70,
                               selectable=True)
        self.labels[name] = label
        self.box.pack_start(label, False, False, 0)
        return label

    def row(self, name: str, title: str, widget=None, text: str = ""):
        Gtk = self.Gtk
        if widget is None:
            widget = Gtk.Label(label=text, xalign=0.0, wrap=True, max_width_chars=56,
                               selectable=True)
            self.labels[name] = widget
        self.grid.attach(Gtk.Label(label=title, xalign=1.0, yalign=0.0), 0, self.rows, 1, 1)
        widget.set_hexpand(True)
        self.grid.attach(widget, 1, self.rows, 1, 1)
        self.rows += 1
        return widget

    def start(self, job) -> None:
        """Run ``job`` on its thread and follow it until it ends."""
        self.job = job
        self.grid.set_sensitive(False)
        self.bar.show()
        job.start()
        self.Gtk.Widget.grab_focus(self.cancel_button)
        GLib.timeout_add(100, self._poll)

    def _poll(self) -> bool:
        job = self.job
        progress = job.progress()
        message = f" ({progress.message})" if progress.message else ""
        self.labels["status"].set_text(f"{progress.label}{message}")
        if progress.fraction is None:
            self.bar.pulse()
            self.bar.set_text(progress.label)
        else:
            self.bar.set_fraction(progress.fraction)
            self.bar.set_text(f"{progress.fraction * 100:.0f} %")
        if not job.done:
            return True
        result = job.result
        self.outcome = result
        if not (result.ok or result.cancelled):
            self.bar.hide()
            self.labels["status"].set_text(with_log(result.message, job.log_path))
            self.cancel_button.set_label("_Close")
        if self.on_done is not None:  # tests: what the dialog says now
            self.on_done()
        if result.ok or result.cancelled:
            self.dialog.response(self.Gtk.ResponseType.ACCEPT)
        elif self.on_done is not None:
            self.dialog.response(self.Gtk.ResponseType.CANCEL)  # Close, as a user would
        return False

    def respond(self, response) -> bool:
        """What a button does; True when the dialog should close."""
        if self.job is not None and not self.job.done:
            self.job.cancel()  # the poll closes the dialog once the job has cleaned up
            self.labels["status"].set_text("Cancelling…")
            return False
        return True

    def run(self, driven: dict | None = None):
        self.dialog.show_all()
        if driven is not None:
            drive_job_dialog(self, driven)
        try:
            while True:
                response = self.dialog.run()
                if response == self.Gtk.ResponseType.ACCEPT:
                    return self.outcome
                if response == self.Gtk.ResponseType.OK and self.job is None:
                    self.on_ok()
                    continue
                if self.respond(response):
                    return self.outcome
        finally:
            if self.job is not None and not self.job.done:
                self.job.cancel()
                self.job.wait()
            self.dialog.destroy()

    def on_ok(self) -> None:
        """The action button (install, update)."""


class SetupDialog(JobDialog):
    """First use: what will be installed, where (changeable), how big, which backend; then
    the install with its progress."""

    def __init__(self, setup) -> None:
        self.setup = setup
        self.plan = plan = setup.detect()
        super().__init__(
            "Set up the Real-ESRGAN engine",
            "Upscaling needs realscale's engine, which is not set up on this computer yet. It "
            "is installed once, for you alone, into its own Python environment; the plug-in "
            "then uses it.")
        Gtk = self.Gtk
        version = plan.version or "?"
        self.row("what", "Installs:", text=f"realscale {version} (the plug-in's version) and "
                 "what it needs, from the package index pip uses")
        self.row("python", "Python:", text=plan.python.label if plan.python else (
            "uv will fetch one" if plan.uv else "none found"))
        self.backends = Gtk.ComboBoxText()
        for backend in plan.backends:
            recommended = " (recommended)" if backend.name == plan.backend.name else ""
            self.backends.append(backend.name, f"{backend.label}{recommended}")
        self.backends.set_active_id(plan.backend.name)
        self.backends.connect("changed", lambda *_: self._size())
        self.row("backend", "Backend:", self.backends)
        self.row("size", "Size:", text="")
        self.folder = Gtk.Entry(text=plan.folder)
        self.row("folder", "Folder:", self.folder)
        self.install_button = self.dialog.add_button("_Install", Gtk.ResponseType.OK)
        self.install_button.set_sensitive(not plan.problem)
        self.labels["status"].set_text(plan.problem)
        self._size()

    def backend(self):
        name = self.backends.get_active_id()
        return next((b for b in self.plan.backends if b.name == name), self.plan.backend)

    def _size(self) -> None:
        self.labels["size"].set_text(f"{self.backend().size_text} on disk")

    def on_ok(self) -> None:
        self.install_button.set_sensitive(False)
        folder = self.folder.get_text().strip() or self.plan.folder
        self.start(self.setup.install(self.plan, self.backend(), folder=folder))


class UpdateDialog(JobDialog):
    """The engine speaks another protocol than the plug-in: say so, offer the update to the
    plug-in's version (same folder and backend, with its progress); the upscale goes on after
    it."""

    def __init__(self, setup, info) -> None:
        self.setup = setup
        super().__init__("Update the Real-ESRGAN engine",
                         f"{info.message} The upscale goes on once the engine is updated.")
        for name, title, value in (("version", "Version:", info.version),
                                   ("location", "Location:", info.folder),
                                   ("backend", "Backend:", info.backend)):
            self.row(name, title, text=value or "unknown")
        self.update_button = self.dialog.add_button("_Update the engine",
                                                    self.Gtk.ResponseType.OK)

    def on_ok(self) -> None:
        self.update_button.set_sensitive(False)
        self.start(self.setup.update())


class EngineDialog(JobDialog):
    """Filters > Enhance > Real-ESRGAN engine...: the engine's version, location, backend
    and device, with Update (to the plug-in's version) and Remove."""

    def __init__(self, setup) -> None:
        self.setup = setup
        info = setup.engine_info()
        super().__init__("Real-ESRGAN engine", info.message)
        self.info = info
        where = info.folder or (os.path.dirname(os.path.dirname(info.python))
                                if info.python else info.address or "")
        for name, title, value in (("version", "Version:", info.version),
                                   ("location", "Location:", where),
                                   ("backend", "Backend:", info.backend),
                                   ("device", "Device:", info.device)):
            self.row(name, title, text=value or "unknown")
        self.cancel_button.set_label("_Close")
        Gtk = self.Gtk
        self.update_button = self.dialog.add_button("_Update", Gtk.ResponseType.OK)
        self.update_button.set_sensitive(bool(info.update_offered))
        self.remove_button = self.dialog.add_button("_Remove", Gtk.ResponseType.REJECT)
        self.remove_button.set_sensitive(bool(info.managed))

    def on_ok(self) -> None:
        self._buttons_off()
        self.start(self.setup.update())

    def respond(self, response) -> bool:
        if response == self.Gtk.ResponseType.REJECT and self.job is None:
            self._buttons_off()
            self.start(self.setup.remove())
            return False
        return super().respond(response)

    def _buttons_off(self) -> None:
        self.update_button.set_sensitive(False)
        self.remove_button.set_sensitive(False)


def drive_job_dialog(dialog: JobDialog, script: dict) -> None:
    """Tests only: set the folder and backend as a user would, record what the dialog says,
    press a button; after a job, record how it ended."""
    Gtk = dialog.Gtk
    buttons = {"ok": Gtk.ResponseType.OK, "install": Gtk.ResponseType.OK,
               "update": Gtk.ResponseType.OK, "remove": Gtk.ResponseType.REJECT,
               "cancel": Gtk.ResponseType.CANCEL, "close": Gtk.ResponseType.CANCEL}
    state = {"step": "start"}

    def record(name: str) -> None:
        path = script.get(f"record_{name}")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump({"labels": {k: v.get_text() for k, v in dialog.labels.items()},
                           "sensitive": {k: b.get_sensitive() for k, b in _buttons(dialog)}},
                          out, indent=1)

    def tick() -> bool:
        if state["step"] == "start":
            if script.get("folder") and hasattr(dialog, "folder"):
                dialog.folder.set_text(script["folder"])
            if script.get("backend") and hasattr(dialog, "backends"):
                dialog.backends.set_active_id(script["backend"])
            record("before")
            state["step"] = "pressed"
            dialog.dialog.response(buttons[script.get("respond", "cancel")])
            return True
        job = dialog.job
        if job is None or job.done:
            return False
        cancel_at = script.get("cancel_at_phase")
        if cancel_at and job.progress().phase == cancel_at:
            dialog.dialog.response(Gtk.ResponseType.CANCEL)
            return False
        return True

    dialog.on_done = lambda: record("after")
    GLib.timeout_add(200, tick)


def _buttons(dialog: JobDialog):
    for name in ("cancel_button", "install_button", "update_button", "remove_button"):
        if hasattr(dialog, name):
            yield name, getattr(dialog, name)
