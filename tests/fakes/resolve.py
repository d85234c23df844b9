"""An in-memory DaVinci Resolve for running the realscale Resolve script end to end.

Written from Resolve's scripting README as fusionscript-stubs 21.0.0 types it: each class
offers only documented methods, under their documented names and parameters
(tests/hosts/resolve/test_resolve_types.py checks that against the stubs), and keeps the state
they act on (bins, clips, tracks, takes). Every call is recorded in ``FakeResolve.calls``, so
tests can check what the script did and did not do. Where the documentation leaves a behaviour open,
the fake makes it a switch so the script is tested both ways:

- ``end_frame_inclusive``: whether AppendToTimeline's and AddTake's ``endFrame`` is the last
  frame (True) or the one after it;
- ``source_end_inclusive``: the same for TimelineItem.GetSourceEndFrame;
- ``track_index_supported``: whether AddTrack honours ``newTrackOptions["index"]`` (Resolve
  before 19.1 only appends tracks).

ImportMedia really reads the file (frame count, rate, size, whether it has audio) with
realscale's ffmpeg probe. A clip with audio that the tests put on the timeline gets its linked
audio item on an audio track, as in Resolve, so tests can check that it stays as it was.
The Fusion UIManager is faked too (FakeUI): widgets keep their properties, a FakeDispatcher
runs a scripted "user" instead of an event loop, and fires timers in real time. Widgets are
built in the Python form (``ui.VGroup({props}, [children])``) and the Lua form, where one
table holds both (``ui:VGroup{ID = "x", child1, child2}``: integer keys are the children).
tests/hosts/resolve/resolve_lua.py hands these same objects to the Lua script the way Resolve's Lua
binding does.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

_ids = itertools.count(1)
MUTATING = ("Add", "Append", "Delete", "Import", "Insert", "Move", "Relink", "Replace",
            "Select", "Set", "Finalize", "Link", "Unlink", "Create")


class Call:
    def __init__(self, owner: object, method: str, args: tuple[Any, ...]) -> None:
        self.owner = owner
        self.method = method
        self.args = args

    @property
    def mutating(self) -> bool:
        return self.method.startswith(MUTATING)

    def __repr__(self) -> str:
        return f"{type(self.owner).__name__}.{self.method}{self.args!r}"


class _Recorded:
    """Records every public method call in the owning FakeResolve."""

    recorder: FakeResolve

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name[:1].isupper() and callable(value):
            recorder = object.__getattribute__(self, "recorder")

            def recorded(*args: Any) -> Any:
                recorder.calls.append(Call(self, name, args))
                return value(*args)

            return recorded
        return value


class FakeMediaPoolItem(_Recorded):
    def __init__(self, recorder: FakeResolve, properties: dict[str, str],
                 has_audio: bool = False) -> None:
        self.recorder = recorder
        self.properties = dict(properties)
        self.unique_id = f"mpi-{next(_ids)}"
        self.has_audio = has_audio

    def GetName(self) -> str:
        return self.properties.get("Clip Name", "")

    def GetClipProperty(self, propertyName: str | None = None) -> str | dict[str, str]:
        if propertyName is None:
            return dict(self.properties)
        return self.properties.get(propertyName, "")

    def SetClipProperty(self, propertyName: str, propertyValue: Any) -> bool:
        self.properties[propertyName] = str(propertyValue)
        return True

    def GetMediaId(self) -> str:
        return self.unique_id

    def GetUniqueId(self) -> str:
        return self.unique_id

    @property
    def frames(self) -> int:
        return int(self.properties["Frames"])


def media_item_for(recorder: FakeResolve, path: str) -> FakeMediaPoolItem:
    """A media pool item for a real video file, with the properties Resolve shows."""
    from realscale.video.probe import frame_times, probe

    times = frame_times(path)
    rate = times.frame_rate()
    width, height = times.size or (0, 0)
    fps = f"{float(rate):.3f}".rstrip("0").rstrip(".")
    has_audio = bool(probe(path).of_kind("audio"))
    return FakeMediaPoolItem(recorder, {
        "Clip Name": os.path.basename(path), "File Path": path,
        "Type": "Video + Audio" if has_audio else "Video",
        "Frames": str(len(times)), "FPS": fps, "Resolution": f"{width}x{height}",
        "Start": "0", "End": str(len(times) - 1),
    }, has_audio)


class FakeFolder(_Recorded):
    def __init__(self, recorder: FakeResolve, name: str) -> None:
        self.recorder = recorder
        self.name = name
        self.clips: list[FakeMediaPoolItem] = []
        self.subfolders: list[FakeFolder] = []
        self.unique_id = f"folder-{next(_ids)}"

    def GetName(self) -> str:
        return self.name

    def GetClipList(self) -> list[FakeMediaPoolItem]:
        return list(self.clips)

    def GetSubFolderList(self) -> list[FakeFolder]:
        return list(self.subfolders)

    def GetUniqueId(self) -> str:
        return self.unique_id


class FakeTimelineItem(_Recorded):
    def __init__(self, recorder: FakeResolve, timeline: FakeTimeline,
                 media_item: FakeMediaPoolItem | None, start: int, source_start: int,
                 length: int, name: str = "") -> None:
        self.recorder = recorder
        self.timeline = timeline
        self.media_item = media_item
        self.name = name
        self.start = start
        self.source_start = source_start
        self.length = length
        self.unique_id = f"item-{next(_ids)}"
        self.takes: list[tuple[FakeMediaPoolItem, int, int]] = []
        """(media item, first frame, last frame) of each take; empty: not a take selector."""
        self.selected_take = 0
        self.audio: FakeTimelineItem | None = None
        """The linked audio item of a clip with sound (on an audio track)."""

    def GetName(self) -> str:
        return self.name or (self.media_item.GetName() if self.media_item else "")

    def GetStart(self, subframe_precision: bool = False) -> int:
        return self.start

    def GetEnd(self, subframe_precision: bool = False) -> int:
        return self.start + self.length

    def GetDuration(self, subframe_precision: bool = False) -> int:
        return self.length

    def GetSourceStartFrame(self) -> int:
        return self.source_start

    def GetSourceEndFrame(self) -> int:
        inclusive = self.recorder.source_end_inclusive
        return self.source_start + self.length - (1 if inclusive else 0)

    def GetLeftOffset(self, subframe_precision: bool = False) -> int:
        return self.source_start

    def GetRightOffset(self, subframe_precision: bool = False) -> int:
        frames = self.media_item.frames if self.media_item else self.length
        return frames - (self.source_start + self.length)

    def GetMediaPoolItem(self) -> FakeMediaPoolItem | None:
        return self.media_item

    def GetUniqueId(self) -> str:
        return self.unique_id

    def GetTrackTypeAndIndex(self) -> list[Any]:
        return ["video", self.timeline.track_of(self)]

    def GetProperty(self, propertyKey: str | None = None) -> Any:
        return {} if propertyKey is None else 0

    def AddTake(self, mediaPoolItem: FakeMediaPoolItem, startFrame: int | None = None,
                endFrame: int | None = None) -> bool:
        assert isinstance(mediaPoolItem, FakeMediaPoolItem), mediaPoolItem
        if self.media_item is None:
            return False
        if not self.takes:
            self.takes.append((self.media_item, self.source_start,
                               self.source_start + self.length - 1))
            self.selected_take = 1
        first = 0 if startFrame is None else startFrame
        last = mediaPoolItem.frames - 1 if endFrame is None else endFrame
        if not self.recorder.end_frame_inclusive and endFrame is not None:
            last -= 1
        if not 0 <= first <= last < mediaPoolItem.frames:
            return False
        self.takes.append((mediaPoolItem, first, last))
        return True

    def GetTakesCount(self) -> int:
        return len(self.takes)

    def GetSelectedTakeIndex(self) -> int:
        return self.selected_take

    def GetTakeByIndex(self, idx: int) -> dict[str, Any]:
        media_item, first, last = self.takes[idx - 1]
        return {"mediaPoolItem": media_item, "startFrame": first, "endFrame": last}

    def SelectTakeByIndex(self, idx: int) -> bool:
        if not 1 <= idx <= len(self.takes):
            return False
        self.selected_take = idx
        media_item, first, last = self.takes[idx - 1]
        self.media_item, self.source_start, self.length = media_item, first, last - first + 1
        return True

    def DeleteTakeByIndex(self, idx: int) -> bool:
        if not 1 <= idx <= len(self.takes):
            return False
        del self.takes[idx - 1]
        if self.selected_take == idx:
            self.SelectTakeByIndex(1)
        elif self.selected_take > idx:
            self.selected_take -= 1
        return True


class FakeTimeline(_Recorded):
    def __init__(self, recorder: FakeResolve, name: str, frame_rate: str,
                 start_frame: int) -> None:
        self.recorder = recorder
        self.name = name
        self.frame_rate = frame_rate
        self.start_frame = start_frame
        self.tracks: dict[str, list[list[FakeTimelineItem]]] = {"video": [[]], "audio": [[]],
                                                                  "subtitle": []}
        self.track_names: dict[str, list[str]] = {"video": ["Video 1"], "audio": ["Audio 1"],
                                                  "subtitle": []}
        self.current_item: FakeTimelineItem | None = None
        self.unique_id = f"timeline-{next(_ids)}"

    def add_clip(self, media_item: FakeMediaPoolItem | None, track: int, record: int,
                 source_start: int, length: int, name: str = "") -> FakeTimelineItem:
        """Test set-up: put a clip on the timeline (not a scripting call); no media item
        makes a generator or title. A clip with audio brings its linked audio item (on the
        audio track of the same number)."""
        while len(self.tracks["video"]) < track:
            self.tracks["video"].append([])
            self.track_names["video"].append(f"Video {len(self.tracks['video'])}")
        item = FakeTimelineItem(self.recorder, self, media_item, record, source_start, length,
                                name)
        self.tracks["video"][track - 1].append(item)
        if media_item is not None and media_item.has_audio:
            item.audio = self._add_audio(media_item, track, record, source_start, length)
        return item

    def _add_audio(self, media_item: FakeMediaPoolItem, track: int, record: int,
                   source_start: int, length: int) -> FakeTimelineItem:
        while len(self.tracks["audio"]) < track:
            self.tracks["audio"].append([])
            self.track_names["audio"].append(f"Audio {len(self.tracks['audio'])}")
        audio = FakeTimelineItem(self.recorder, self, media_item, record, source_start, length)
        self.tracks["audio"][track - 1].append(audio)
        return audio

    def track_of(self, item: FakeTimelineItem) -> int:
        for index, items in enumerate(self.tracks["video"], start=1):
            if any(other is item for other in items):
                return index
        raise ValueError("item is not on the timeline")

    def audio_state(self) -> list[list[tuple[Any, ...]]]:
        """Every audio track's items (media, start, length, source start): tests compare it
        before and after a run."""
        return [[(i.media_item, i.start, i.length, i.source_start) for i in track]
                for track in self.tracks["audio"]]

    def GetName(self) -> str:
        return self.name

    def GetStartFrame(self) -> int:
        return self.start_frame

    def GetEndFrame(self) -> int:
        ends = [i.GetEnd() for t in self.tracks["video"] for i in t]
        return max(ends, default=self.start_frame)

    def GetSetting(self, settingName: str) -> str:
        return self.frame_rate if settingName == "timelineFrameRate" else ""

    def GetTrackCount(self, trackType: str) -> int:
        return len(self.tracks[trackType])

    def GetTrackName(self, trackType: str, trackIndex: int) -> str:
        return self.track_names[trackType][trackIndex - 1]

    def SetTrackName(self, trackType: str, trackIndex: int, name: str) -> bool:
        if not 1 <= trackIndex <= len(self.tracks[trackType]):
            return False
        self.track_names[trackType][trackIndex - 1] = name
        return True

    def AddTrack(self, trackType: str, newTrackOptions: Any = None) -> bool:
        tracks, names = self.tracks[trackType], self.track_names[trackType]
        index = len(tracks) + 1
        if isinstance(newTrackOptions, dict) and self.recorder.track_index_supported:
            wanted = newTrackOptions.get("index")
            if isinstance(wanted, int) and 1 <= wanted <= len(tracks):
                index = wanted
        tracks.insert(index - 1, [])
        names.insert(index - 1, f"Video {len(tracks)}")
        return True

    def DeleteTrack(self, trackType: str, trackIndex: int) -> bool:
        tracks = self.tracks[trackType]
        if not 1 <= trackIndex <= len(tracks) or len(tracks) == 1:
            return False
        del tracks[trackIndex - 1]
        del self.track_names[trackType][trackIndex - 1]
        return True

    def GetItemListInTrack(self, trackType: str, index: int) -> list[FakeTimelineItem]:
        return sorted(self.tracks[trackType][index - 1], key=lambda i: i.start)

    def GetCurrentVideoItem(self) -> FakeTimelineItem | None:
        return self.current_item

    def DeleteClips(self, timelineItems: list[FakeTimelineItem], Bool: bool = False) -> bool:
        for item in timelineItems:
            for track in self.tracks["video"] + self.tracks["audio"]:
                if item in track:
                    track.remove(item)
        return True

    def GetUniqueId(self) -> str:
        return self.unique_id


class FakeMediaPool(_Recorded):
    def __init__(self, recorder: FakeResolve) -> None:
        self.recorder = recorder
        self.root = FakeFolder(recorder, "Master")
        self.current = self.root
        self.selected: list[FakeMediaPoolItem] = []

    def GetRootFolder(self) -> FakeFolder:
        return self.root

    def AddSubFolder(self, folder: FakeFolder, name: str) -> FakeFolder:
        created = FakeFolder(self.recorder, name)
        folder.subfolders.append(created)
        return created

    def GetCurrentFolder(self) -> FakeFolder:
        return self.current

    def SetCurrentFolder(self, folder: FakeFolder) -> bool:
        assert isinstance(folder, FakeFolder)
        self.current = folder
        return True

    def GetSelectedClips(self) -> list[FakeMediaPoolItem]:
        return list(self.selected)

    def SetSelectedClip(self, mediaPoolItem: FakeMediaPoolItem) -> bool:
        self.selected = [mediaPoolItem]
        return True

    def DeleteClips(self, clips: list[FakeMediaPoolItem]) -> bool:
        for clip in clips:
            for folder in self._folders(self.root):
                if clip in folder.clips:
                    folder.clips.remove(clip)
        return True

    def _folders(self, folder: FakeFolder) -> list[FakeFolder]:
        found = [folder]
        for sub in folder.subfolders:
            found += self._folders(sub)
        return found

    def ImportMedia(self, items: list[Any]) -> list[FakeMediaPoolItem]:
        assert isinstance(items, list), "ImportMedia takes a list"
        imported = []
        for entry in items:
            if not isinstance(entry, str) or not os.path.isfile(entry):
                continue
            try:
                media_item = media_item_for(self.recorder, entry)
            except Exception:  # noqa: BLE001 - Resolve imports nothing it cannot read
                continue
            self.current.clips.append(media_item)
            imported.append(media_item)
        return imported

    def AppendToTimeline(self, clipInfo: list[dict[str, Any]]) -> list[FakeTimelineItem]:
        timeline = self.recorder.project.timeline
        placed = []
        for info in clipInfo:
            allowed = {"mediaPoolItem", "startFrame", "endFrame", "mediaType", "trackIndex",
                       "recordFrame"}
            assert set(info) <= allowed, f"undocumented clipInfo keys {set(info) - allowed}"
            media_item = info["mediaPoolItem"]
            assert isinstance(media_item, FakeMediaPoolItem)
            first, last = int(info["startFrame"]), int(info["endFrame"])
            if not self.recorder.end_frame_inclusive:
                last -= 1
            track = int(info.get("trackIndex", 1))
            record = int(info.get("recordFrame", timeline.GetEndFrame()))
            if not (0 <= first <= last < media_item.frames
                    and 1 <= track <= timeline.GetTrackCount("video")):
                return []
            length = last - first + 1
            for other in timeline.tracks["video"][track - 1]:
                if record < other.start + other.length and other.start < record + length:
                    return []  # the fake refuses to overwrite: the script must not rely on it
            item = FakeTimelineItem(self.recorder, timeline, media_item, record, first, length)
            timeline.tracks["video"][track - 1].append(item)
            placed.append(item)
            # mediaType 1 is video only; without it the clip's audio comes along.
            if media_item.has_audio and info.get("mediaType") != 1:
                item.audio = timeline._add_audio(media_item, track, record, first, length)
                placed.append(item.audio)
        return placed


class FakeProject(_Recorded):
    def __init__(self, recorder: FakeResolve, timeline: FakeTimeline) -> None:
        self.recorder = recorder
        self.media_pool = FakeMediaPool(recorder)
        self.timeline = timeline

    def GetName(self) -> str:
        return "realscale test"

    def GetMediaPool(self) -> FakeMediaPool:
        return self.media_pool

    def GetCurrentTimeline(self) -> FakeTimeline:
        return self.timeline

    def GetTimelineCount(self) -> int:
        return 1

    def GetSetting(self, settingName: str) -> str:
        return self.timeline.GetSetting(settingName)


class FakeProjectManager(_Recorded):
    def __init__(self, recorder: FakeResolve, project: FakeProject | None) -> None:
        self.recorder = recorder
        self.project = project

    def GetCurrentProject(self) -> FakeProject | None:
        return self.project


class FakeResolve(_Recorded):
    """The ``resolve`` object; build a timeline with :meth:`with_timeline`."""

    def __init__(self, *, frame_rate: str = "23.976", start_frame: int = 86400,
                 end_frame_inclusive: bool = True, source_end_inclusive: bool = True,
                 track_index_supported: bool = True) -> None:
        self.recorder = self
        self.calls: list[Call] = []
        self.track_index_supported = track_index_supported
        self.end_frame_inclusive = end_frame_inclusive
        self.source_end_inclusive = source_end_inclusive
        timeline = FakeTimeline(self, "Timeline 1", frame_rate, start_frame)
        self.project = FakeProject(self, timeline)
        self.project_manager = FakeProjectManager(self, self.project)
        self.fusion = FakeFusion()

    @property
    def timeline(self) -> FakeTimeline:
        return self.project.timeline

    @property
    def media_pool(self) -> FakeMediaPool:
        return self.project.media_pool

    def add_media(self, path: str) -> FakeMediaPoolItem:
        """Test set-up: a clip already in the media pool's root."""
        media_item = media_item_for(self, path)
        self.media_pool.root.clips.append(media_item)
        return media_item

    def mutations_of(self, *objects: object) -> list[Call]:
        return [c for c in self.calls if c.mutating and any(c.owner is o for o in objects)]

    def GetProjectManager(self) -> FakeProjectManager:
        return self.project_manager

    def Fusion(self) -> FakeFusion:
        return self.fusion

    def GetProductName(self) -> str:
        return "DaVinci Resolve Studio"

    def GetVersionString(self) -> str:
        return "21.0.0"


# ---------------------------------------------------------------------------------------------
# Fusion UIManager


class _Handlers:
    """``window.On.<ID>.<Event> = handler``: attribute access creates the namespaces."""

    def __init__(self) -> None:
        object.__setattr__(self, "table", {})

    def __getattr__(self, name: str) -> Any:
        table = object.__getattribute__(self, "table")
        if name not in table:
            table[name] = _Handlers()
        return table[name]

    def __setattr__(self, name: str, value: Any) -> None:
        object.__getattribute__(self, "table")[name] = value

    def get(self, *path: str) -> Callable[..., Any] | None:
        node: Any = self
        for name in path:
            table = object.__getattribute__(node, "table")
            if name not in table:
                return None
            node = table[name]
        return node if callable(node) else None


class FakeWidget:
    def __init__(self, kind: str, props: dict[str, Any] | None = None,
                 children: list[FakeWidget] | None = None) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "props", dict(props or {}))
        object.__setattr__(self, "children", list(children or []))
        object.__setattr__(self, "entries", [])
        object.__setattr__(self, "texts", [])
        """Every Text the script set, in order: a user looking at the window would see each
        one that stayed up for a repaint; a test reads them all."""
        self.props.setdefault("Enabled", True)
        if kind == "ComboBox":
            self.props.setdefault("CurrentIndex", 0)

    def __getattr__(self, name: str) -> Any:
        props = object.__getattribute__(self, "props")
        if name == "CurrentText" and self.kind == "ComboBox":
            if "EditText" in props:
                return props["EditText"]
            index = props.get("CurrentIndex", 0)
            return self.entries[index] if 0 <= index < len(self.entries) else ""
        if name in props:
            return props[name]
        if name[:1].isupper():
            return {"Text": "", "Value": 0, "Checked": False}.get(name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "CurrentText" and self.kind == "ComboBox":
            # Qt's setCurrentText: the matching entry, or the text itself where editable.
            if value in self.entries:
                self.props["CurrentIndex"] = self.entries.index(value)
                self.props.pop("EditText", None)
            elif self.props.get("Editable"):
                self.props["EditText"] = value
            return
        if name == "Text":
            self.texts.append(value)
        self.props[name] = value

    def AddItem(self, text: str) -> None:
        self.entries.append(text)

    def AddItems(self, texts: list[str]) -> None:
        self.entries.extend(texts)
        if self.kind == "ComboBox" and self.props.get("CurrentIndex", 0) < 0 and self.entries:
            self.props["CurrentIndex"] = 0  # Qt selects the first entry of an empty box

    def Clear(self) -> None:
        """ComboBox: no entries, none chosen (Qt's clear())."""
        self.entries.clear()
        self.props["CurrentIndex"] = -1 if self.kind == "ComboBox" else 0
        self.props.pop("EditText", None)

    def walk(self) -> list[FakeWidget]:
        found = [self]
        for child in self.children:
            found += child.walk()
        return found

    # What a user does:

    def choose(self, text: str) -> None:
        """Pick an entry of a combo box (or type it, if the box is editable)."""
        if text in self.entries:
            self.props["CurrentIndex"] = self.entries.index(text)
            self.props.pop("EditText", None)
        elif self.props.get("Editable"):
            self.props["EditText"] = text
        else:
            raise AssertionError(f"{text!r} is not one of {self.entries}")


class FakeTimer:
    def __init__(self, props: dict[str, Any]) -> None:
        self.id = props.get("ID", "")
        self.interval = int(props.get("Interval", 1000))
        self.active = False
        self.last = 0.0

    def Start(self) -> None:
        self.active = True
        self.last = time.monotonic()

    def Stop(self) -> None:
        self.active = False


class FakeUI:
    """``fusion.UIManager``: every widget constructor returns a FakeWidget."""

    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def Timer(self, props: dict[str, Any]) -> FakeTimer:
        timer = FakeTimer(props)
        self.timers.append(timer)
        return timer

    def __getattr__(self, kind: str) -> Callable[..., FakeWidget]:
        if not kind[:1].isupper():
            raise AttributeError(kind)

        def build(*args: Any) -> FakeWidget:
            props: dict[Any, Any] = {}
            children: list[FakeWidget] = []
            for arg in args:
                if isinstance(arg, dict):
                    props, more = split_lua_table(arg)
                    children += more
                elif isinstance(arg, list):
                    children += arg
            for child in children:
                assert isinstance(child, FakeWidget), f"{kind} got a child {child!r}"
            return FakeWidget(kind, props, children)

        return build


def split_lua_table(table: dict[Any, Any]) -> tuple[dict[str, Any], list[Any]]:
    """A Lua constructor table: its string keys (properties) and, in order, the values of
    its integer keys (children)."""
    props = {k: v for k, v in table.items() if not isinstance(k, int)}
    children = [table[k] for k in sorted(k for k in table if isinstance(k, int))]
    return props, children


class FakeFusion:
    def __init__(self) -> None:
        self.UIManager = FakeUI()


class FakeWindow:
    def __init__(self, props: dict[str, Any], layout: FakeWidget) -> None:
        self.props = props
        self.id = props["ID"]
        self.layout = layout
        self.On = _Handlers()
        self.visible = False
        self.widgets = {w.props["ID"]: w for w in layout.walk() if "ID" in w.props}

    def GetItems(self) -> dict[str, FakeWidget]:
        return dict(self.widgets)

    def Find(self, widget_id: str) -> FakeWidget | None:
        return self.widgets.get(widget_id)

    def Show(self) -> None:
        self.visible = True

    def Hide(self) -> None:
        self.visible = False

    def click(self, widget_id: str) -> None:
        widget = self.widgets[widget_id]
        assert widget.Enabled, f"{widget_id} is disabled"
        handler = self.On.get(widget_id, "Clicked")
        assert handler is not None, f"nothing handles a click on {widget_id}"
        handler({"who": widget_id})

    def changed(self, widget_id: str) -> None:
        """What Qt reports after a person changed an input (the handler, if any, runs)."""
        widget = self.widgets[widget_id]
        event = {"ComboBox": "CurrentIndexChanged", "SpinBox": "ValueChanged",
                 "CheckBox": "Clicked"}.get(widget.kind, "TextChanged")
        handler = self.On.get(widget_id, event)
        if handler is not None:
            handler({"who": widget_id})

    def close(self) -> None:
        handler = self.On.get(self.id, "Close")
        assert handler is not None, "nothing handles closing the window"
        handler({"who": self.id})


User = Callable[[FakeWindow, "FakeDispatcher"], None]


class FakeDispatcher:
    """``bmd.UIDispatcher(ui)``: RunLoop calls ``user(window, dispatcher)`` repeatedly (the
    user's next move) and fires started timers on time, until ExitLoop."""

    def __init__(self, ui: FakeUI, user: User, timeout: float) -> None:
        self.ui = ui
        self.user = user
        self.timeout = timeout
        self.On = _Handlers()
        self.windows: list[FakeWindow] = []
        self.running = False
        self.ticks = 0

    def AddWindow(self, props: dict[Any, Any], layout: FakeWidget | None = None) -> FakeWindow:
        props, inside = split_lua_table(props)
        if layout is None:  # Lua: the layout inside the window's table
            assert len(inside) == 1, "AddWindow needs one layout"
            layout = inside[0]
        window = FakeWindow(props, layout)
        self.windows.append(window)
        return window

    def RunLoop(self) -> None:
        self.running = True
        deadline = time.monotonic() + self.timeout
        window = self.windows[-1]
        while self.running:
            assert time.monotonic() < deadline, "the script's dialog never finished"
            self.user(window, self)
            now = time.monotonic()
            for timer in self.ui.timers:
                if self.running and timer.active and now - timer.last >= timer.interval / 1000:
                    timer.last = now
                    self.ticks += 1
                    for handler in (window.On.get(timer.id, "Timeout"),
                                    self.On.get("Timeout")):
                        if handler is not None and self.running:
                            handler({"who": timer.id})
            time.sleep(0.02)

    def ExitLoop(self) -> None:
        self.running = False


class FakeBmd:
    """The injected ``bmd`` module: only UIDispatcher is used."""

    def __init__(self, user: User, timeout: float = 120.0) -> None:
        self.user = user
        self.timeout = timeout
        self.dispatchers: list[FakeDispatcher] = []

    def UIDispatcher(self, ui: FakeUI) -> FakeDispatcher:
        dispatcher = FakeDispatcher(ui, self.user, self.timeout)
        self.dispatchers.append(dispatcher)
        return dispatcher

