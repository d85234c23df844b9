"""The engine from inside Krita: set it up on first use, show it, update or remove it.

The work itself is ``realscale_setup`` (vendored beside this file, standard library only):
finding a Python, making the environment, pip with progress and cancel, writing the worker
config only once the new engine has answered. This module is its Krita face: the set-up
dialog (what, where, how big, which backend), a progress dialog with the phases and Cancel,
one or two sentences on failure with the log's path, and the "Real-ESRGAN Engine..." dialog.
"""

from __future__ import annotations

import os

from .errors import Cancelled, PluginError
from .qt import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QEventLoop,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressDialog,
    QPushButton,
    Qt,
    QTimer,
    QVBoxLayout,
    run_modal,
)

SETUP_OBJECT_NAME = "realscale_setup"
PROGRESS_OBJECT_NAME = "realscale_setup_progress"
ENGINE_OBJECT_NAME = "realscale_engine"
POLL_MS = 100
SETUP_MISSING = ("This copy of the realscale plug-in cannot set up its engine "
                 "(realscale_setup.py is missing): import the zip made by "
                 "`realscale package krita`, or run `realscale install krita`.")


def setup_module():
    """The vendored ``realscale_setup`` (beside this file; it imports the client)."""
    from .api import VENDORED, incomplete_message

    try:
        from . import realscale_setup
    except ImportError as exc:
        incomplete = incomplete_message(VENDORED)
        if incomplete is not None:
            raise PluginError(incomplete) from exc
        if incomplete_message(("realscale_setup.py",)) is not None:
            raise PluginError(SETUP_MISSING) from exc
        raise
    return realscale_setup


def configured(client_module) -> bool:
    """True when the worker config exists and names a Python that exists (or an address)."""
    try:
        config = client_module.read_config(host="krita")
    except Exception:  # noqa: BLE001 - missing or unusable: the set-up is offered
        return False
    python = config.get("python")
    return bool(config.get("address")) or (isinstance(python, str) and os.path.isfile(python))


def set_up(parent=None) -> None:
    """Ask, install, report: returns once the engine answers; raises Cancelled when the user
    cancels (nothing is left behind) and PluginError (with the log's path) on failure."""
    setup = setup_module()
    plan = busy_call(setup.detect, "Looking for Python on this computer...", parent)
    dialog = SetupDialog(plan, parent)
    try:
        if not run_modal(dialog):
            raise Cancelled()
        folder, backend = dialog.folder(), dialog.backend()
    finally:
        dialog.deleteLater()
    job = setup.install(plan, backend, folder=folder)
    run_job(job, "Setting up the Real-ESRGAN engine", parent)


def failure_text(result) -> str:
    """The job's one or two sentences, and where the whole log is."""
    text = result.message.strip()
    if result.log and result.log not in text:
        text += f" The full log is in {result.log}."
    return text


class SetupDialog(QDialog):
    """What will be installed, where (changeable), how big, and with which backend."""

    def __init__(self, plan, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName(SETUP_OBJECT_NAME)
        self.setWindowTitle("Set up Real-ESRGAN")
        self.plan = plan
        version = plan.version or "?"
        intro = QLabel(
            "Real-ESRGAN runs in its own engine, a Python environment beside Krita. It is not "
            f"set up yet: the plug-in can install realscale {version} (the plug-in's own "
            "version) and what it needs from the Python package index now, then go on with "
            "the upscale.", self)
        intro.setObjectName("intro")
        intro.setWordWrap(True)

        self.backends = QComboBox(self)
        self.backends.setObjectName("backend")
        for backend in plan.backends:
            label = f"{backend.label}, {backend.size_text}"
            if backend.recommended:
                label += " (recommended here)"
            self.backends.addItem(label, backend.name)
        self.backends.setCurrentIndex(max(0, self.backends.findData(plan.backend.name)))

        self.path = QLineEdit(plan.folder, self)
        self.path.setObjectName("folder")
        browse = QPushButton("&Change...", self)
        browse.setObjectName("browse")
        browse.clicked.connect(self._browse)
        where = QHBoxLayout()
        where.addWidget(self.path, 1)
        where.addWidget(browse)

        python = QLabel(plan.python.label if plan.python is not None else
                        ("none found: uv will fetch one" if plan.uv else "none found"), self)
        python.setObjectName("python")
        self.problem = QLabel(plan.problem, self)
        self.problem.setObjectName("problem")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("font-weight: bold")
        self.problem.setVisible(bool(plan.problem))

        form = QFormLayout()
        form.addRow("&Backend:", self.backends)
        form.addRow("&Folder:", where)
        form.addRow("Python:", python)

        standard = QDialogButtonBox.StandardButton
        self.buttons = QDialogButtonBox(standard.Ok | standard.Cancel, parent=self)
        self.buttons.setObjectName("buttons")
        install = self.buttons.button(standard.Ok)
        install.setText("&Install")
        install.setEnabled(not plan.problem)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(520)

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Folder for the engine",
                                                  os.path.dirname(self.folder()))
        if chosen:
            self.path.setText(os.path.join(chosen, "realscale-engine"))

    def folder(self) -> str:
        return os.path.abspath(os.path.expanduser(self.path.text().strip() or self.plan.folder))

    def backend(self) -> str:
        return self.backends.currentData() or self.plan.backend.name


def run_job(job, title: str, parent=None):
    """Run a realscale_setup job on its thread behind a progress dialog with its phases, pip's
    progress and Cancel; return its Result once it succeeded, raise Cancelled after Cancel and
    PluginError (its sentences and the log's path) when it failed."""
    dialog = QProgressDialog(title + "...", "Cancel", 0, 1000, parent)
    dialog.setObjectName(PROGRESS_OBJECT_NAME)
    dialog.setWindowTitle("Real-ESRGAN")
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(0)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setMinimumWidth(460)
    loop = QEventLoop()

    def on_cancel() -> None:
        if not job.done:
            job.cancel()
            dialog.setLabelText("Cancelling: stopping pip and removing what was installed...")

    def tick() -> None:
        if job.done:
            loop.quit()
            return
        if job.cancelled:
            return
        progress = job.progress()
        text = progress.label + (f": {progress.message}" if progress.message else "")
        dialog.setLabelText(text)
        if progress.fraction is None:
            dialog.setRange(0, 0)
        else:
            if dialog.maximum() == 0:
                dialog.setRange(0, 1000)
            dialog.setValue(int(progress.fraction * 1000))

    dialog.canceled.connect(on_cancel)
    timer = QTimer()
    timer.setInterval(POLL_MS)
    timer.timeout.connect(tick)
    job.start()
    dialog.show()
    timer.start()
    try:
        if not job.done:
            run_modal(loop)
        if not job.done:  # Krita is quitting: stop pip
            job.cancel()
            job.wait(30.0)
    finally:
        timer.stop()
        dialog.reset()  # stops the dialog's own timer, which could show it again
        dialog.hide()  # not close(): that emits canceled
        dialog.deleteLater()
        QApplication.processEvents()
    result = job.result
    if result.cancelled:
        raise Cancelled()
    if not result.ok:
        raise PluginError(failure_text(result))
    return result


def busy_call(function, text: str, parent=None):
    """Call ``function`` (a second or two) on a thread while a busy dialog shows ``text``."""
    import threading

    box = {}

    def work() -> None:
        try:
            box["value"] = function()
        except Exception as exc:  # noqa: BLE001 - raised again on the GUI thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="realscale-setup-detect", daemon=True)
    dialog = QProgressDialog(text, "", 0, 0, parent)
    dialog.setObjectName(PROGRESS_OBJECT_NAME)
    dialog.setWindowTitle("Real-ESRGAN")
    dialog.setCancelButton(None)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(0)
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: None if thread.is_alive() else loop.quit())
    thread.start()
    dialog.show()
    timer.start()
    try:
        if thread.is_alive():
            run_modal(loop)
    finally:
        timer.stop()
        # reset() stops QProgressDialog's own timer, which would show it again later.
        dialog.reset()
        dialog.hide()
        dialog.deleteLater()
    if "error" in box:
        raise PluginError(f"Looking at this computer failed: {box['error']}") from box["error"]
    return box["value"]


class EngineDialog(QDialog):
    """Tools > Scripts > Real-ESRGAN Engine...: version, location, backend and device of the
    engine, with Update, Remove and Set up."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName(ENGINE_OBJECT_NAME)
        self.setWindowTitle("Real-ESRGAN Engine")
        self.info = None
        self.action = ""
        self.ready = False
        self.summary = QLabel("Asking the engine...", self)
        self.summary.setObjectName("summary")
        self.summary.setWordWrap(True)
        self.fields = {}
        form = QFormLayout()
        for key, label in (("version", "Version:"), ("folder", "Location:"),
                           ("backend", "Backend:"), ("device", "Device:"),
                           ("size", "Size on disk:"), ("config", "Worker config:")):
            field = QLabel("", self)
            field.setObjectName(key)
            field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = field
            form.addRow(label, field)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        self.buttons.setObjectName("buttons")
        self.buttons.rejected.connect(self.reject)
        self.update_button = self._button("&Update", "update")
        self.remove_button = self._button("&Remove", "remove")
        self.setup_button = self._button("&Set up...", "setup")
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(520)

        import threading

        setup = setup_module()
        self._thread = threading.Thread(target=self._ask, args=(setup,), daemon=True,
                                        name="realscale-engine-info")
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._check)
        self._thread.start()
        self._timer.start()

    def _button(self, text: str, action: str) -> QPushButton:
        button = self.buttons.addButton(text, QDialogButtonBox.ButtonRole.ActionRole)
        button.setObjectName(action)
        button.setEnabled(False)
        button.clicked.connect(lambda: self._choose(action))
        return button

    def _choose(self, action: str) -> None:
        self.action = action
        self.accept()

    def _ask(self, setup) -> None:
        try:
            self.info = setup.engine_info()
        except Exception as exc:  # noqa: BLE001 - engine_info never raises; be sure anyway
            self.info = setup.EngineInfo(setup_module()._client.config_path(),
                                         message=f"The engine could not be asked: {exc}")

    def _check(self) -> None:
        if self._thread.is_alive():
            return
        self._timer.stop()
        info = self.info
        self.summary.setText(info.message)
        size = f"{info.size_bytes / 1024 ** 2:.0f} MB" if info.size_bytes else ""
        values = {"version": info.version, "folder": info.folder or (
            os.path.dirname(os.path.dirname(info.python)) if info.python else info.address),
            "backend": info.backend, "device": info.device, "size": size,
            "config": info.config}
        for key, value in values.items():
            self.fields[key].setText(str(value) if value else "-")
        self.update_button.setEnabled(bool(info.managed))
        self.remove_button.setEnabled(bool(info.managed))
        self.setup_button.setEnabled(info.python is None and info.address is None)
        self.ready = True


def manage(parent=None) -> str:
    """The engine dialog and what the user chose there: "update", "remove", "setup" or ""
    (closed). Runs the chosen job; returns the chosen action."""
    dialog = EngineDialog(parent)
    try:
        run_modal(dialog)
        action = dialog.action
    finally:
        dialog.deleteLater()
    if not action:
        return ""
    setup = setup_module()
    if action == "setup":
        set_up(parent)
        return action
    if action == "update":
        update(parent)
        return action
    run_job(setup.remove(), "Removing the Real-ESRGAN engine", parent)
    return action


def update(parent=None) -> None:
    """Replace the set-up engine with the plug-in's version (same folder and backend) behind
    the progress dialog; raises Cancelled or PluginError (with the log's path)."""
    run_job(setup_module().update(), "Updating the Real-ESRGAN engine", parent)
