"""Draw both Resolve dialogs the way the scripts build them: docs/images/resolve-dialog.png.

DaVinci Resolve cannot run here, so each script (realscale_resolve.py for Studio,
realscale_resolve.lua for every edition) runs against the in-memory Resolve of
tests/fakes/resolve.py, with a real realscale worker answering its questions (models, devices,
a measured rate) and the sample clip under the playhead. Once the lists are filled, the
window's widget tree, exactly as the script built it through the UIManager, is drawn with
Pillow: groups as rows and columns split by their weights, each widget as a labelled box with
its current text. It is a drawing of the layout and the texts, not of Resolve's own look.

    .venv/bin/python scripts/screenshots/resolve.py [--out docs/images/resolve-dialog.png]

Texts that would not fit their box at the drawing's font size are listed on standard error
(and make the script exit 1): the check the issue asks for, as far as a drawing can make it.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "hosts" / "resolve")]

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from fakes.resolve import FakeBmd, FakeResolve, FakeWidget, FakeWindow  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "realesrgan-inputs" / "video" / "onepiece_demo.mp4"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
ROW = 30
PAD = 8
BACKGROUND, PANEL, BOX, EDGE, TEXT, FAINT, ACCENT = (
    "#1f1f22", "#2a2a2e", "#3a3a40", "#55555c", "#e6e6e6", "#8c8c94", "#c8822a")


class Watcher:
    """The person at the dialog: waits until realscale answered, keeps the window, closes."""

    def __init__(self) -> None:
        self.window: FakeWindow | None = None

    def __call__(self, window: FakeWindow, _dispatcher: Any) -> None:
        estimate = window.widgets["Estimate"].Text
        if "Asking" in estimate or "timing" in estimate:
            return
        self.window = window
        window.click("Close")


def scene() -> FakeResolve:
    resolve = FakeResolve()
    media = resolve.add_media(str(SAMPLE))
    item = resolve.timeline.add_clip(media, track=1, record=86400 + 100, source_start=40,
                                     length=96)
    resolve.timeline.current_item = item
    return resolve


def run_python(resolve: FakeResolve, watcher: Watcher) -> None:
    runpy.run_path(str(ROOT / "plugins" / "resolve" / "realscale_resolve.py"), init_globals={
        "resolve": resolve, "fusion": resolve.Fusion(), "bmd": FakeBmd(watcher, timeout=300)},
        run_name="__main__")


def run_lua(resolve: FakeResolve, watcher: Watcher) -> None:
    from resolve_lua import run_lua_script

    run_lua_script(resolve, watcher, timeout=300)


# ---------------------------------------------------------------------------------------------
# Drawing a widget tree


class Painter:
    def __init__(self, draw: ImageDraw.ImageDraw, font: Any, small: Any) -> None:
        self.draw = draw
        self.font = font
        self.small = small
        self.cut: list[str] = []

    def height(self, widget: FakeWidget, width: int) -> int:
        if widget.kind == "VGroup":
            return sum(self.height(c, width) for c in widget.children) + PAD * (
                len(widget.children) - 1)
        if widget.kind == "HGroup":
            return max((self.height(c, w) for c, w in self.columns(widget, width)), default=0)
        if widget.kind == "Label" and widget.props.get("WordWrap"):
            return max(ROW, len(self.wrap(str(widget.Text), width)) * 18 + 6)
        return ROW

    def columns(self, group: FakeWidget, width: int) -> list[tuple[FakeWidget, int]]:
        weights = [float(c.props.get("Weight", 1) or 0) for c in group.children]
        fixed = [i for i, w in enumerate(weights) if w == 0]
        total = sum(weights) or 1
        space = width - PAD * (len(group.children) - 1) - 120 * len(fixed)
        return [(c, 120 if i in fixed else int(space * weights[i] / total))
                for i, c in enumerate(group.children)]

    def wrap(self, text: str, width: int) -> list[str]:
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            for word in paragraph.split(" "):
                candidate = f"{line} {word}".strip()
                if line and self.draw.textlength(candidate, font=self.small) > width - 8:
                    lines.append(line)
                    line = word
                else:
                    line = candidate
            lines.append(line)
        return lines

    def fits(self, text: str, width: int, font: Any) -> None:
        if text and self.draw.textlength(text, font=font) > width:
            self.cut.append(text)

    def paint(self, widget: FakeWidget, x: int, y: int, width: int) -> int:
        kind, height = widget.kind, self.height(widget, width)
        draw = self.draw
        text = str(widget.props.get("Text", ""))
        if kind == "VGroup":
            top = y
            for child in widget.children:
                top += self.paint(child, x, top, width) + PAD
        elif kind == "HGroup":
            left = x
            for child, w in self.columns(widget, width):
                self.paint(child, left, y, w)
                left += w + PAD
        elif kind == "Label":
            if widget.props.get("WordWrap"):
                for i, line in enumerate(self.wrap(text, width)):
                    draw.text((x + 2, y + 4 + 18 * i), line, font=self.small, fill=TEXT)
            else:
                self.fits(text, width - 4, self.font)
                draw.text((x + 2, y + 7), text, font=self.font, fill=FAINT)
        elif kind in ("ComboBox", "LineEdit", "SpinBox"):
            draw.rounded_rectangle((x, y, x + width, y + ROW - 2), 3, fill=BOX, outline=EDGE)
            shown = {"ComboBox": lambda: str(widget.CurrentText),
                     "SpinBox": lambda: str(widget.Value)}.get(kind, lambda: str(widget.Text))()
            colour = TEXT
            if kind == "LineEdit" and not shown:
                shown, colour = str(widget.props.get("PlaceholderText", "")), FAINT
            room = width - (34 if kind != "LineEdit" else 12)
            self.fits(shown, room, self.font)
            draw.text((x + 7, y + 6), shown, font=self.font, fill=colour)
            if kind == "ComboBox":
                draw.polygon([(x + width - 20, y + 11), (x + width - 10, y + 11),
                              (x + width - 15, y + 18)], fill=TEXT)
            elif kind == "SpinBox":
                draw.polygon([(x + width - 20, y + 12), (x + width - 10, y + 12),
                              (x + width - 15, y + 6)], fill=TEXT)
                draw.polygon([(x + width - 20, y + 16), (x + width - 10, y + 16),
                              (x + width - 15, y + 22)], fill=TEXT)
        elif kind == "CheckBox":
            draw.rectangle((x + 2, y + 7, x + 16, y + 21), fill=ACCENT if widget.Checked
                           else BOX, outline=EDGE)
            self.fits(text, width - 26, self.font)
            draw.text((x + 24, y + 6), text, font=self.font, fill=TEXT)
        elif kind == "Button":
            draw.rounded_rectangle((x, y, x + width, y + ROW - 2), 4, fill=EDGE)
            self.fits(text, width - 8, self.font)
            length = draw.textlength(text, font=self.font)
            draw.text((x + (width - length) / 2, y + 6), text, font=self.font, fill=TEXT)
        else:
            draw.rectangle((x, y, x + width, y + height), outline=EDGE)
            draw.text((x + 4, y + 4), kind, font=self.small, fill=FAINT)
        return height


def render(windows: list[tuple[str, FakeWindow]], out: Path) -> list[str]:
    font, small = ImageFont.truetype(FONT, 14), ImageFont.truetype(FONT, 12)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    sizes = []
    for _, window in windows:
        width = int(window.props["Geometry"][2])
        height = Painter(scratch, font, small).height(window.layout, width - 2 * PAD)
        sizes.append((width, height + 2 * PAD + 28))
    canvas = Image.new("RGB", (sum(w for w, _ in sizes) + 30 * (len(sizes) + 1),
                               max(h for _, h in sizes) + 60), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    painter = Painter(draw, font, small)
    left = 30
    for (caption, window), (width, height) in zip(windows, sizes, strict=True):
        draw.text((left, 12), caption, font=font, fill=FAINT)
        top = 40
        draw.rectangle((left, top, left + width, top + height), fill=PANEL, outline=EDGE)
        draw.rectangle((left, top, left + width, top + 26), fill=BOX)
        draw.text((left + 10, top + 5), str(window.props["WindowTitle"]), font=font,
                  fill=TEXT)
        painter.paint(window.layout, left + PAD, top + 28 + PAD, width - 2 * PAD)
        left += width + 30
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(64).save(out, optimize=True)
    return painter.cut


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" /
                        "resolve-dialog.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "worker.json"
        config.write_text(json.dumps({"python": sys.executable, "version": 1}))
        os.environ["REALSCALE_WORKER_CONFIG"] = str(config)
        os.environ["TMPDIR"] = folder
        windows = []
        for caption, run in (("Studio: Workspace > Scripts > Edit > Upscale clip with "
                              "Real-ESRGAN", run_python),
                             ("Every edition: ... > Upscale clip with Real-ESRGAN (Lua)",
                              run_lua)):
            watcher = Watcher()
            run(scene(), watcher)
            assert watcher.window is not None, "the dialog never showed"
            windows.append((caption, watcher.window))
        cut = render(windows, args.out)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KB)")
    for text in cut:
        print(f"does not fit its box: {text!r}", file=sys.stderr)
    return 1 if cut else 0


if __name__ == "__main__":
    raise SystemExit(main())
