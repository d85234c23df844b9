"""What the Resolve script tests share: the person at the dialog, the timeline they start
from, and the checks of what the scripts left behind. Both scripts (Python for Studio, Lua
for every edition) build the same dialog (same widget IDs), so one User drives either."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from fakes.resolve import FakeDispatcher, FakeResolve, FakeTimelineItem, FakeWindow
from realscale.video.frames import read_frames

HOUR = 86400  # 01:00:00:00 at 24 fps: where the fake timeline starts
STEADY = {"model": "realesr-animevideov3", "scale": "2", "first": 10, "frames": 8}
"""The stretch of the small sample the steady-video tests upscale, with the compact model."""


class User:
    """Fills the dialog, clicks Upscale, watches the status, closes the window when done.

    ``cancel_at``: click Cancel once the status shows this text. ``close_at``: close the
    window (the title bar's X) instead, once the status shows this text.
    """

    def __init__(self, choices: dict[str, Any], cancel_at: str | None = None,
                 close_at: str | None = None, go: bool = True) -> None:
        self.choices = choices
        self.go = go
        """False: look at the dialog as it opens, then close it."""
        self.before_go: Any = None
        """Called with the window once the choices are made, before Upscale is clicked."""
        self.filled: dict[str, Any] = {}
        """Each input once the choices were made."""
        self.opened: dict[str, Any] = {}
        """Each input as the dialog opened: a combo box's text, a check box's state, ..."""
        self.cancel_at = cancel_at
        self.close_at = close_at
        self.state = "fill"
        self.statuses: list[str] = []
        self.result = ""
        self.target = ""
        self.dialog: FakeWindow | None = None

    def __call__(self, window: FakeWindow, dispatcher: FakeDispatcher) -> None:
        items = window.widgets
        if window.id == "RealscaleMessage":
            self.result = items["Message"].Text
            window.click("OK")
            return
        if window.id == "RealscaleSetup":  # no engine: the set-up offer, declined
            self.result = f"{items['Intro'].Text}\n{items['Problem'].Text}"
            window.click("Cancel")
            return
        self.dialog = window
        status = items["Status"].Text
        if status and (not self.statuses or self.statuses[-1] != status):
            self.statuses.append(status)
        if self.state == "fill":
            if "Asking" in getattr(items.get("Estimate"), "Text", ""):
                return  # the lists fill once realscale has answered
            if "Target" in items:
                self.target = items["Target"].Text
            self.opened = {key: shown(widget) for key, widget in items.items()}
            if not self.go:
                self.state = "closed"
                window.click("Close")
                return
            for key, value in self.choices.items():
                widget = items[key]
                if widget.kind == "ComboBox":
                    widget.choose(value)
                elif widget.kind == "SpinBox":
                    widget.Value = value
                elif widget.kind == "CheckBox":
                    widget.Checked = value
                else:
                    widget.Text = value
                window.changed(key)
            self.filled = {key: shown(widget) for key, widget in items.items()}
            if self.before_go is not None:
                self.before_go(window)
            window.click("Go")
            self.state = "wait"
        elif self.state == "wait":
            if self.cancel_at and self.cancel_at in status and items["Go"].Text == "Cancel":
                window.click("Go")
                self.cancel_at = None
            if self.close_at and self.close_at in status and items["Go"].Text == "Cancel":
                window.close()
                self.close_at = None
                self.state = "closing"
            elif items["Go"].Text == "Upscale":
                self.result = status
                self.state = "closed"
                window.click("Close")
        elif self.state == "closing" and items["Go"].Text == "Upscale":
            self.result = status  # the script ends its loop by itself once realscale stopped
            self.state = "closed"


def shown(widget: Any) -> Any:
    """What a person sees in an input."""
    return {"ComboBox": lambda: widget.CurrentText, "CheckBox": lambda: widget.Checked,
            "SpinBox": lambda: widget.Value}.get(widget.kind, lambda: widget.Text)()


def scene(sample: Path, *, source_start: int = 40, length: int = 30,
          **options: Any) -> tuple[FakeResolve, FakeTimelineItem, FakeTimelineItem]:
    """The sample on V1 at 01:00:04:04 using source frames [source_start, +length), with its
    audio on A1; a clip on V2 (a title over it) that must stay above."""
    resolve = FakeResolve(**options)
    media = resolve.add_media(str(sample))
    original = resolve.timeline.add_clip(media, track=1, record=HOUR + 100,
                                         source_start=source_start, length=length)
    above = resolve.timeline.add_clip(media, track=2, record=HOUR, source_start=0, length=20)
    resolve.timeline.current_item = original
    return resolve, original, above


def snapshot(item: FakeTimelineItem) -> tuple[Any, ...]:
    return (item.media_item, item.start, item.length, item.source_start,
            item.timeline.track_of(item), len(item.takes))


def check_frames(output: str, sample: Path, first: int, count: int, size: tuple[int, int] = (
        1280, 960)) -> None:
    """Frame k of the upscaled file is source frame first + k (identity network: every
    second pixel is the source pixel, up to ProRes and bf16 rounding), and no neighbour of
    it fits as well."""
    low = max(first - 4, 0)
    source = np.stack(list(read_frames(str(sample), start_frame=low,
                                       frames=count + 8))).astype(np.int16)
    upscaled = np.stack(list(read_frames(output)))
    assert upscaled.shape == (count, size[1], size[0], 3)
    for k, frame in enumerate(upscaled[:, ::2, ::2].astype(np.int16)):
        error = np.abs(source - frame).mean(axis=(1, 2, 3))
        expected = first + k - low
        assert error[expected] < 2.5, (k, error[expected])
        assert error[expected] <= error.min() + 0.2, (k, int(error.argmin()) + low, first + k)


def python_without_realscale() -> str:
    """The interpreter this virtual environment was made from: real, without realscale."""
    base = shutil.which("python3", path=os.path.join(sys.base_prefix, "bin")) or ""
    found = subprocess.run([base, "-I", "-c", "import realscale"], capture_output=True,
                           cwd=os.path.expanduser("~"), check=False)
    assert found.returncode != 0, f"{base} has realscale; the test needs one without"
    return base


def source_checkout_config() -> dict[str, Any]:
    """A worker config for realscale run from a source tree: an interpreter that does not
    have it, and ``pythonpath`` naming core/ and this environment's packages."""
    core = Path(__file__).resolve().parents[3] / "core"
    return {"version": 1, "python": python_without_realscale(),
            "pythonpath": [str(core), sysconfig.get_paths()["purelib"]]}


def check_steady(output: str, reference: dict[str, np.ndarray]) -> None:
    """The script's file holds exactly what `realscale video --temporal` makes of the same
    stretch, and that differs from the per-frame result as steady video should: the first
    frame is the per-frame one (nothing before it to blend with), every later one is not, and
    consecutive frames differ less (less flicker)."""
    got = np.stack(list(read_frames(output)))
    steady, per_frame = reference["temporal"], reference["per_frame"]
    assert got.shape == steady.shape == per_frame.shape
    assert np.array_equal(got, steady)
    assert np.array_equal(steady[0], per_frame[0])
    assert all(not np.array_equal(steady[k], per_frame[k]) for k in range(1, len(steady)))

    def flicker(frames: np.ndarray) -> float:
        return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean())

    assert flicker(steady) < 0.8 * flicker(per_frame), (flicker(steady), flicker(per_frame))


def worker_facts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What this environment's real worker reports: (models, devices), asked through the
    host client as a plug-in asks it."""
    import importlib.util

    import realscale.wire  # noqa: F401 - shared with the client
    from realscale.install import client_file

    spec = importlib.util.spec_from_file_location("resolve_test_client", str(client_file()))
    assert spec is not None and spec.loader is not None
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    with client.WorkerClient(sys.executable) as worker:
        return worker.models(), worker.devices()


PURPOSE_ORDER = ("photo", "anime", "video")


def check_lists(items: dict[str, Any], models: list[dict[str, Any]],
                devices: list[dict[str, Any]]) -> None:
    """The dialog's model list is the worker's models, by purpose (photographs, anime, video
    frames, then the rest), each named with its purpose where the catalogue gives one and
    its weight where it must be downloaded; its device list is the worker's devices."""
    entries = list(items["Model"].entries)
    assert len(entries) == len(models)
    by_name = {m["name"]: m for m in models}
    ranks = []
    for entry in entries:
        [name] = [n for n in by_name if entry == n or entry.endswith(": " + n)
                  or f": {n} (" in entry or entry.startswith(n + " (")]
        model = by_name[name]
        if model.get("purpose_label"):
            assert entry.startswith(f"{model['purpose_label']}: {name}")
        if model.get("download_bytes"):
            assert entry.endswith(f"(download, {model['download_bytes'] / 1e6:.0f} MB)")
        purpose = model.get("purpose")
        ranks.append(PURPOSE_ORDER.index(purpose) if purpose in PURPOSE_ORDER else 3)
    assert ranks == sorted(ranks)
    labels = [d["label"] + (f" ({d['free_bytes'] / 2**30:.1f} GB free)"
                            if d.get("free_bytes") is not None and d["kind"] != "cpu" else "")
              for d in devices]
    assert list(items["Device"].entries) == labels


class SetupUser:
    """At the set-up window (no engine, or one of another protocol): notes what it offers,
    presses its button (Set up / Update the engine) when ``press`` and it is enabled, else
    Cancel; ``cancel_at``: clicks Cancel once the progress shows this text; Close once it
    ended. Any other window goes to ``then`` (the upscale dialog's User)."""

    def __init__(self, then: User | None = None, *, press: bool = True,
                 cancel_at: str | None = None, folder: str | None = None,
                 close: bool = False) -> None:
        self.then = then
        self.close = close
        """With ``cancel_at``: close the window (its title bar's X) instead of Cancel."""
        self.press = press
        self.cancel_at = cancel_at
        self.folder = folder
        self.offered: dict[str, Any] = {}
        """Each widget of the set-up window as it opened."""
        self.backends: list[str] = []
        self.install_enabled = False
        self.progress: list[str] = []
        """Each text the progress line showed, in order."""
        self._seen = 0
        self.cancelled_during = ""
        self.ended: dict[str, Any] = {}
        """Each widget when the set-up ended without an engine (failed, cancelled)."""
        self.state = "offer"

    def __call__(self, window: FakeWindow, dispatcher: FakeDispatcher) -> None:
        if window.id != "RealscaleSetup":
            assert self.then is not None, f"unexpected window {window.id}"
            self.then(window, dispatcher)
            return
        items = window.widgets
        text = items["Progress"].Text
        for shown_text in items["Progress"].texts[self._seen:]:  # each the script set
            if shown_text and (not self.progress or self.progress[-1] != shown_text):
                self.progress.append(shown_text)
        self._seen = len(items["Progress"].texts)
        if self.state == "offer":
            self.offered = {key: shown(widget) for key, widget in items.items()}
            self.install_enabled = bool(items["Install"].Enabled)
            if "Backend" in items:
                self.backends = list(items["Backend"].entries)
            if self.folder is not None:
                items["Folder"].Text = self.folder
                window.changed("Folder")
            self.state = "running"
            if self.press and items["Install"].Enabled:
                window.click("Install")
            else:
                self.ended = dict(self.offered)
                window.click("Cancel")
            return
        if self.cancel_at and self.cancel_at in text and items["Cancel"].Text == "Cancel":
            self.cancelled_during = text
            self.cancel_at = None
            if self.close:
                window.close()  # the script cancels, waits for the clean-up, and ends
            else:
                window.click("Cancel")
        elif items["Cancel"].Text == "Close":
            self.ended = {key: shown(widget) for key, widget in items.items()}
            window.click("Cancel")
