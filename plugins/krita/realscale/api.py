"""The function API: what the menu actions call, and what scripts and tests can call.

``upscale`` does the work and raises; ``upscale_with_dialog`` and ``upscale_again`` add the
dialog and the remembered settings; ``action_upscale`` and ``action_upscale_again`` are the
menu actions themselves: they turn every failure into one readable message box.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

from . import document as pixels
from . import settings as stored
from .errors import Cancelled, PluginError
from .jobs import run_with_progress
from .settings import Settings

TITLE = "Real-ESRGAN"
MESSAGE_OBJECT_NAME = "realscale_message"
INSTALL_HINT = ("Install the worker with `realscale install krita` (from the realscale package, "
                "in the Python environment that has torch), then try again.")
INCOMPLETE = ("The realscale plug-in is incomplete ({} missing from its folder): reinstall it "
              "from the release zip (`realscale package krita`) or with "
              "`realscale install krita`.")
VENDORED = ("realscale_client.py", "realscale_wire.py")
"""The modules ``realscale install`` and ``realscale package`` copy in beside this file."""
UPDATE_OFFER_OBJECT_NAME = "realscale_update_offer"
UPDATE_BUTTON = "Update the engine"

_client = None
_busy = False
_lock = threading.Lock()
"""Held around every use of the client: it serves one request at a time."""
_create_lock = threading.Lock()


def client_module():
    """The vendored worker client (``realscale_client.py`` beside this file, with the
    ``realscale_wire.py`` it imports)."""
    try:
        from . import realscale_client
    except ImportError as exc:
        incomplete = incomplete_message()
        if incomplete is None:
            raise
        raise PluginError(incomplete) from exc
    return realscale_client


def incomplete_message(names=VENDORED) -> str | None:
    """The one-sentence message when one of the vendored modules ``names`` is missing from
    the plug-in's folder (a copy made by hand), else None."""
    here = os.path.dirname(os.path.abspath(__file__))
    missing = [name for name in names if not os.path.isfile(os.path.join(here, name))]
    if not missing:
        return None
    return INCOMPLETE.format(" and ".join(missing) + (" are" if len(missing) > 1 else " is"))


def client():
    """The worker client, started lazily and kept for the whole Krita session."""
    global _client
    with _create_lock:
        if _client is None:
            _client = client_module().WorkerClient(host="krita")
        return _client


def close_client() -> None:
    """End the worker (it is started again on the next upscale)."""
    global _client
    worker, _client = _client, None
    if worker is not None:
        worker.close()


def upscale(document=None, settings: Settings | None = None, parent=None):
    """Upscale ``document`` (default: the active one) with ``settings`` (default: the last
    used) behind a progress dialog; return the new layer. Raises PluginError, Cancelled or
    the client's WorkerError, and leaves the document unchanged when it does."""
    global _busy
    from krita import Krita

    if _busy:
        raise PluginError("An upscale is already running; wait for it or cancel it first.")
    if document is None:
        document = Krita.instance().activeDocument()
    if document is None:
        raise PluginError("Open an image first.")
    settings = (settings if settings is not None else stored.load()).normalised()
    source = pixels.capture(document, settings.target)
    module = client_module()
    worker = client()
    layout = module.PixelLayout(channels=source.channels, depth=source.depth, order=source.order)

    timing = _Timing(source.width * source.height)

    def call(progress, cancel):
        with _ClientLock(cancel):
            return worker.upscale(
                source.data, source.width, source.height, layout,
                model=settings.model, scale=settings.scale, tile=settings.tile,
                device=settings.device, precision=settings.wire_precision, download=True,
                progress=timing.wrap(progress), cancel=cancel,
            )

    _busy = True
    try:
        result = run_with_progress(worker, call, parent if parent is not None else _window())
    finally:
        _busy = False
    layer = pixels.apply(source, result.data, result.width, result.height,
                         settings.scale_label)
    rate = timing.rate()
    if rate:
        stored.remember_rate(
            stored.rate_key(settings.model, settings.device, settings.wire_precision), rate)
    return layer


class _Timing:
    """Input pixels per second of one upscale, from its progress reports: from the first
    report (the model is loaded by then) to the last, so the worker's start and the model's
    loading do not count, as they do not in the worker's own measurement."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self.first = None  # (time, done, total)
        self.last = None

    def wrap(self, progress):
        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if self.first is None:
                self.first = (now, done, total)
            self.last = (now, done, total)
            if progress is not None:
                progress(done, total)
        return report

    def rate(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        (start, done0, total), (end, done1, _) = self.first, self.last
        if total <= 0 or done1 <= done0 or end - start < 0.05:
            return 0.0
        return self.pixels * (done1 - done0) / total / (end - start)


def ask_settings(parent=None, document=None) -> Settings | None:
    """Show the dialog with the last settings; return the chosen ones (saved), or None."""
    from .dialog import UpscaleDialog
    from .qt import run_modal

    dialog = UpscaleDialog(stored.load(), models, parent if parent is not None else _window(),
                           source=source_info(document), load_devices=devices,
                           measure=measure, rates=stored.load_rates())
    try:
        if not run_modal(dialog):
            return None
        chosen = dialog.settings()
    finally:
        dialog.deleteLater()
    stored.save(chosen)
    return chosen


def devices() -> list:
    """The worker's devices: dicts with name, label, kind, free_bytes, total_bytes, fast."""
    with _ClientLock(lambda: False):
        return client().devices()


def measure(model: str, device: str, precision: str, cancel=None) -> dict:
    """The worker's speed for these choices: input pixels per second on a small tile.
    ``cancel`` (polled) ends it early: the dialog no longer wants it."""
    stopped = cancel if cancel is not None else (lambda: False)
    with _ClientLock(stopped):
        return client().measure(model, device=device, precision=precision, cancel=stopped)


def source_info(document=None):
    """What the dialog shows of ``document`` (default: the active one): its size, bytes per
    pixel and layers, and the machine's memory."""
    from krita import Krita

    from .dialog import Source

    if document is None:
        document = Krita.instance().activeDocument()
    if document is None:
        return None
    layout = pixels.LAYOUTS.get((document.colorModel(), document.colorDepth()))
    pixel_bytes = layout[0] * pixels.BYTES_PER_SAMPLE[layout[1]] if layout else 4
    return Source(document.width(), document.height(), pixel_bytes,
                  _count_nodes(document.rootNode()), _physical_memory())


def _count_nodes(node) -> int:
    return sum(1 + _count_nodes(child) for child in node.childNodes())


def _physical_memory() -> int:
    """The machine's memory in bytes, 0 when it cannot be told."""
    try:
        if sys.platform == "win32":
            import ctypes

            class _Status(ctypes.Structure):
                _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong),
                            ("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                            ("page_total", ctypes.c_ulonglong),
                            ("page_free", ctypes.c_ulonglong),
                            ("virtual_total", ctypes.c_ulonglong),
                            ("virtual_free", ctypes.c_ulonglong),
                            ("extended", ctypes.c_ulonglong)]

            status = _Status()
            status.length = ctypes.sizeof(_Status)
            if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
                return int(status.total)
            return 0
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 0


def models() -> list:
    """The worker's models: dicts with name, scale, architecture, embedded, available..."""
    try:
        with _ClientLock(lambda: False):
            return client().models()
    except Exception as exc:  # noqa: BLE001 - one readable message for the dialog
        raise PluginError(message_for(exc)) from exc


class _ClientLock:
    """Wait for the client (polling ``cancel``, which raises Cancelled), then hold it."""

    def __init__(self, cancel) -> None:
        self.cancel = cancel

    def __enter__(self) -> None:
        while not _lock.acquire(timeout=0.1):
            if self.cancel():
                raise Cancelled()

    def __exit__(self, *exc) -> None:
        _lock.release()


def upscale_with_dialog(document=None, parent=None):
    """Ask for the settings, then upscale; return the new layer, or None when dismissed."""
    from krita import Krita

    if document is None and Krita.instance().activeDocument() is None:
        raise PluginError("Open an image first.")
    ensure_engine(parent)
    chosen = ask_settings(parent, document)
    if chosen is None:
        return None
    return upscale(document, chosen, parent)


def upscale_again(document=None, parent=None):
    """Upscale with the last settings (the defaults when there are none), no dialog."""
    ensure_engine(parent)
    return upscale(document, stored.load(), parent)


def ensure_engine(parent=None) -> None:
    """With no worker configured, offer to set the engine up (first use), and return once it
    answers; raises Cancelled when the user declines, PluginError when it fails."""
    from . import engine

    if engine.configured(client_module()):
        return
    close_client()
    engine.set_up(parent if parent is not None else _window())
    close_client()  # the next request reads the new worker config


def action_engine() -> None:
    """Tools > Scripts > Real-ESRGAN Engine..."""
    from . import engine

    def manage() -> None:
        close_client()  # update and remove replace what the client would start
        engine.manage(_window())

    _report(manage)


def action_upscale() -> None:
    """Tools > Scripts > Upscale with Real-ESRGAN..."""
    _report(lambda: _offering_update(upscale_with_dialog))


def action_upscale_again() -> None:
    """Tools > Scripts > Upscale Again."""
    _report(lambda: _offering_update(upscale_again))


def _offering_update(function):
    """Run ``function``; when it fails because the engine speaks another protocol than this
    plug-in (an engine set up by an older or newer plug-in), offer the update instead of the
    error, run it with its progress, and run ``function`` once more."""
    try:
        return function()
    except (Cancelled, PluginError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a worker failure: is the engine outdated?
        if not offer_update(exc):
            raise
    return function()


def offer_update(exc: BaseException, parent=None) -> bool:
    """After a worker failure ``exc``: True when the engine speaks another protocol and the
    user let the plug-in update it (done, the client closed); False when that is not why it
    failed. Raises Cancelled when the user declines, PluginError when the update fails."""
    from . import engine

    module = client_module()
    if not isinstance(exc, module.WorkerError) or isinstance(
            exc, (module.WorkerCancelled, module.WorkerOutOfMemory)):
        return False
    close_client()
    setup = engine.setup_module()
    if not setup.engine_info(ask=False).managed:
        return False  # not an engine the plug-in set up: there is nothing it could update
    parent = parent if parent is not None else _window()
    info = engine.busy_call(setup.engine_info, "Asking the engine what it is...", parent)
    if not (info.update_offered and info.protocol is not None
            and info.protocol != module.PROTOCOL_VERSION):
        return False
    if not _ask_update(info.message, parent):
        raise Cancelled()
    engine.update(parent)
    return True


def _ask_update(text: str, parent) -> bool:
    """The offer: the engine's own sentence, with "Update the engine" and Cancel."""
    from .qt import QMessageBox, run_modal

    box = QMessageBox(QMessageBox.Icon.Question, TITLE, text,
                      QMessageBox.StandardButton.Cancel, parent)
    box.setObjectName(UPDATE_OFFER_OBJECT_NAME)
    box.setInformativeText("The plug-in cannot use this engine until it is updated; the update "
                           "keeps its folder and backend, then the upscale runs.")
    update = box.addButton(UPDATE_BUTTON, QMessageBox.ButtonRole.AcceptRole)
    update.setObjectName("update")
    box.setDefaultButton(update)
    try:
        run_modal(box)
        return box.clickedButton() is update
    finally:
        box.deleteLater()


def message_for(exc: BaseException) -> str:
    """One readable message for any failure."""
    if isinstance(exc, PluginError):
        return str(exc)
    try:
        module = client_module()
    except PluginError:
        module = None
    if module is not None and isinstance(exc, module.WorkerNotInstalled):
        text = str(exc).strip() or "The realscale worker is not installed."
        return text if "realscale install krita" in text else f"{text} {INSTALL_HINT}"
    if module is not None and isinstance(exc, module.WorkerError):
        return str(exc).strip() or type(exc).__name__
    if isinstance(exc, MemoryError):
        return ("There is not enough memory for this upscale. Try a smaller scale, or upscale a "
                "smaller image or a single layer.")
    return f"Upscaling failed: {type(exc).__name__}: {exc}"


def show_message(text: str, parent=None) -> None:
    """A warning box with one readable message."""
    from .qt import QMessageBox, run_modal

    box = QMessageBox(QMessageBox.Icon.Warning, TITLE, text, QMessageBox.StandardButton.Ok,
                      parent if parent is not None else _window())
    box.setObjectName(MESSAGE_OBJECT_NAME)
    try:
        run_modal(box)
    finally:
        box.deleteLater()


def _report(function) -> None:
    try:
        function()
    except Cancelled:
        pass
    except Exception as exc:  # noqa: BLE001 - the action's one place to tell the user
        try:
            module = client_module()
        except PluginError:
            module = None
        expected = (PluginError, MemoryError) + ((module.WorkerError,) if module else ())
        if not isinstance(exc, expected):
            traceback.print_exc(file=sys.stderr)
        show_message(message_for(exc))


def _window():
    from krita import Krita

    window = Krita.instance().activeWindow()
    return window.qwindow() if window is not None else None
