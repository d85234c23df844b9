"""Run one upscale in the worker while Krita stays responsive, behind a progress dialog.

The client call blocks, so it runs in a Python thread; the GUI thread spins a local event
loop and polls the thread's progress. Cancel sets an event the client polls between tiles.
"""

from __future__ import annotations

import contextlib
import threading
import time

from .errors import Cancelled
from .qt import QApplication, QEventLoop, QProgressDialog, Qt, QTimer, run_modal

POLL_MS = 50
CANCEL_GRACE_S = 15.0
"""After Cancel, how long the worker may take to stop before it is ended outright."""
PROGRESS_OBJECT_NAME = "realscale_progress"


class Job(threading.Thread):
    """One ``client.upscale`` call on a background thread."""

    def __init__(self, call) -> None:
        super().__init__(name="realscale-upscale", daemon=True)
        self.call = call
        self.done = 0
        self.total = 0
        self.result = None
        self.error = None
        self.cancel_requested = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.call(progress=self._progress, cancel=self.cancel_requested.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread as it is
            self.error = exc

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)


def run_with_progress(client, call, parent=None, title: str = "Real-ESRGAN"):
    """Run ``call(progress=..., cancel=...)`` in a thread behind a cancellable progress dialog;
    return its result or raise what it raised; after Cancel, always raise ``Cancelled``.
    ``client`` is closed (ending its worker) only when a cancelled call does not stop."""
    job = Job(call)
    dialog = QProgressDialog("Starting the Real-ESRGAN worker...", "Cancel", 0, 0, parent)
    dialog.setObjectName(PROGRESS_OBJECT_NAME)
    dialog.setWindowTitle(title)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(0)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setMinimumWidth(360)
    cancelled_at = []

    def on_cancel() -> None:
        if not cancelled_at and job.is_alive():
            cancelled_at.append(time.monotonic())
            job.cancel_requested.set()
            dialog.setLabelText("Cancelling...")

    loop = QEventLoop()

    def tick() -> None:
        if not job.is_alive():
            loop.quit()
            return
        if cancelled_at:
            if len(cancelled_at) == 1 and time.monotonic() - cancelled_at[0] > CANCEL_GRACE_S:
                cancelled_at.append(True)
                _end_worker(client)  # the waiting thread then fails and ends
            return
        if job.total > 0:
            if dialog.maximum() != job.total:
                dialog.setRange(0, job.total)
            dialog.setValue(min(job.done, job.total))
            tile = min(job.done + 1, job.total)
            dialog.setLabelText(f"Upscaling with Real-ESRGAN: tile {tile} of {job.total}")

    dialog.canceled.connect(on_cancel)
    timer = QTimer()
    timer.setInterval(POLL_MS)
    timer.timeout.connect(tick)
    job.start()
    dialog.show()
    timer.start()
    try:
        if job.is_alive():
            run_modal(loop)
        if job.is_alive():  # the loop was left early (Krita is quitting): stop the worker
            job.cancel_requested.set()
            _end_worker(client)
            job.join(5.0)
            cancelled_at.append(time.monotonic())
    finally:
        timer.stop()
        # No canceled.disconnect(on_cancel) here: in Krita 5.1's PyQt5 it has been seen to
        # cut the menu actions' own connections. The dialog goes, its connections with it;
        # hide() rather than close(), which would emit canceled.
        dialog.hide()
        dialog.deleteLater()
        QApplication.processEvents()
    if cancelled_at:
        raise Cancelled()
    if job.error is not None:
        raise job.error
    return job.result


def _end_worker(client) -> None:
    with contextlib.suppress(Exception):  # best effort on a worker that is failing anyway
        client.close()
