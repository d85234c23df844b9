"""The real Resolve script, run end to end against the in-memory Resolve of tests/fakes.

Resolve runs scripts with ``resolve``, ``fusion`` and ``bmd`` injected; so do these tests
(runpy), and a scripted user fills the dialog and clicks. The script really starts
``realscale video`` (here with a tiny identity network, so every frame can be checked) on the
real sample clip, and the fake records everything the script asks of Resolve.
"""

from __future__ import annotations

import json
import re
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from resolve_user import (
    HOUR,
    STEADY,
    User,
    check_frames,
    check_lists,
    check_steady,
    scene,
    snapshot,
    source_checkout_config,
    worker_facts,
)

from fakes.resolve import FakeBmd, FakeResolve

SCRIPT = Path(__file__).resolve().parents[3] / "plugins" / "resolve" / "realscale_resolve.py"


def run_script(resolve: FakeResolve, user: Callable[..., None]) -> None:
    """Run the script as Resolve does: as a file, with the host's objects injected."""
    runpy.run_path(str(SCRIPT), init_globals={
        "resolve": resolve, "fusion": resolve.Fusion(), "bmd": FakeBmd(user, timeout=240)},
        run_name="__main__")


def test_places_the_upscaled_clip_on_a_new_track_above(sample, identity_model, config,
                                                       tmp_path) -> None:
    resolve, original, above = scene(sample)
    before = snapshot(original), snapshot(above)
    user = User({"Model": str(identity_model), "Scale": "2", "Handles": 6,
                 "Folder": str(tmp_path / "renders")})
    run_script(resolve, user)

    assert user.result.endswith("upscaled, on video track 2 at frame 86500."), user.statuses
    # Progress was visible (which frames show depends on the machine's speed).
    assert any(re.search(r"frame \d+ of 42", s) for s in user.statuses), user.statuses
    timeline = resolve.timeline
    assert timeline.GetTrackCount("video") == 3
    assert timeline.GetTrackName("video", 2) == "realscale"
    assert timeline.track_of(above) == 3  # the new track went in between, V2 moved up
    assert (snapshot(original), snapshot(above)) == (before[0], (*before[1][:4], 3, 0))
    assert resolve.mutations_of(original, original.media_item, above) == []

    bins = resolve.media_pool.root.GetSubFolderList()
    assert [b.GetName() for b in bins] == ["realscale"]
    [clip] = bins[0].GetClipList()
    path = clip.GetClipProperty("File Path")
    assert Path(path).parent == tmp_path / "renders"
    assert Path(path).name == "onepiece_demo_x2_34-75.mov"
    assert clip.GetClipProperty("Frames") == "42" and clip.GetClipProperty("Resolution") == \
        "1280x960"
    assert resolve.media_pool.GetCurrentFolder() is resolve.media_pool.root  # put back

    [placed] = timeline.GetItemListInTrack("video", 2)
    assert placed.GetMediaPoolItem() is clip
    assert (placed.GetStart(), placed.GetDuration(), placed.GetSourceStartFrame()) == (
        HOUR + 100, 30, 6)
    check_frames(path, sample, first=34, count=42)
    assert sorted(p.name for p in (tmp_path / "renders").iterdir()) == [Path(path).name]


def test_adds_a_take_where_resolve_counts_end_frames_exclusively(sample, identity_model,
                                                                 config, tmp_path) -> None:
    resolve, original, above = scene(sample, source_start=60, length=8,
                                     end_frame_inclusive=False, source_end_inclusive=False)
    source_media = original.media_item
    user = User({"Model": str(identity_model), "Placement": "As a take of the clip",
                 "Handles": 2, "Folder": str(tmp_path)})
    run_script(resolve, user)

    assert user.result.endswith("upscaled, as take 2 of the clip."), user.statuses
    assert resolve.timeline.GetTrackCount("video") == 2  # no new track
    [clip] = resolve.media_pool.root.GetSubFolderList()[0].GetClipList()
    assert original.GetTakesCount() == 2 and original.GetSelectedTakeIndex() == 2
    assert original.GetTakeByIndex(1) == {"mediaPoolItem": source_media, "startFrame": 60,
                                          "endFrame": 67}  # the original, kept as take 1
    assert original.GetTakeByIndex(2) == {"mediaPoolItem": clip, "startFrame": 2,
                                          "endFrame": 9}
    assert (original.start, original.length) == (HOUR + 100, 8)
    allowed = {"AddTake", "SelectTakeByIndex", "DeleteTakeByIndex"}
    assert {c.method for c in resolve.mutations_of(original)} <= allowed
    assert resolve.mutations_of(source_media, above) == []
    check_frames(clip.GetClipProperty("File Path"), sample, first=58, count=12)


def test_every_clip_on_a_track(sample, identity_model, config, tmp_path) -> None:
    """Also: a Resolve whose end frames are exclusive, on the new-track path."""
    resolve = FakeResolve(end_frame_inclusive=False, source_end_inclusive=False)
    media = resolve.add_media(str(sample))
    timeline = resolve.timeline
    first = timeline.add_clip(media, track=1, record=HOUR, source_start=0, length=5)
    timeline.add_clip(None, track=1, record=HOUR + 5, source_start=0, length=10,
                      name="Solid Color")
    last = timeline.add_clip(media, track=1, record=HOUR + 15, source_start=176, length=5)
    timeline.current_item = last
    user = User({"Model": str(identity_model), "Scope": "Every clip on the track",
                 "Track": "V1 Video 1", "Handles": 3, "Folder": str(tmp_path)})
    run_script(resolve, user)

    assert "Skipped: Solid Color is not a media clip" in user.result, user.statuses
    assert user.result.count("upscaled, on video track 2") == 2
    placed = timeline.GetItemListInTrack("video", 2)
    assert [(p.GetStart(), p.GetDuration(), p.GetSourceStartFrame()) for p in placed] == [
        (HOUR, 5, 0), (HOUR + 15, 5, 3)]  # no handles before frame 0 or after the last one
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".mov")
    assert names == ["onepiece_demo_x2_0-7.mov", "onepiece_demo_x2_173-180.mov"]
    assert resolve.mutations_of(first, last, media) == []


def test_a_resolve_that_only_appends_tracks(sample, identity_model, config,
                                           tmp_path) -> None:
    resolve, original, above = scene(sample, source_start=50, length=4,
                                     track_index_supported=False)
    user = User({"Model": str(identity_model), "Handles": 0, "Folder": str(tmp_path)})
    run_script(resolve, user)
    assert user.result.endswith("upscaled, on video track 3 at frame 86500."), user.statuses
    timeline = resolve.timeline
    assert timeline.track_of(above) == 2 and timeline.GetTrackName("video", 2) == "Video 2"
    assert timeline.GetTrackName("video", 3) == "realscale"
    [placed] = timeline.GetItemListInTrack("video", 3)
    assert (placed.GetStart(), placed.GetDuration(), placed.GetSourceStartFrame()) == (
        HOUR + 100, 4, 0)


def test_cancel_leaves_nothing_behind(sample, identity_model, config, tmp_path) -> None:
    resolve, original, _ = scene(sample, source_start=0, length=170)
    user = User({"Model": str(identity_model), "Folder": str(tmp_path / "out")},
                cancel_at=" of 176")
    run_script(resolve, user)
    assert user.result.startswith("Cancelled."), user.statuses
    assert list((tmp_path / "out").iterdir()) == []
    assert resolve.media_pool.root.GetSubFolderList() == []
    assert resolve.timeline.GetTrackCount("video") == 2
    assert resolve.mutations_of(original, original.media_item) == []


@pytest.mark.parametrize(("setup", "message"), [
    ("no config", "is not set up"),
    ("speed change", "has a speed change"),
    ("bad model", "unknown-model"),
    ("no clip", "no video clip under the playhead"),
])
def test_errors_are_shown(sample, config, tmp_path, setup, message) -> None:
    resolve, original, above = scene(sample, source_start=10, length=4)
    choices: dict[str, Any] = {"Folder": str(tmp_path)}
    if setup == "no config":
        config.unlink()
    elif setup == "speed change":
        original.GetSourceEndFrame = lambda: 10 + 8  # 8 source frames in 4 timeline frames
    elif setup == "bad model":
        choices["Model"] = "unknown-model"
    else:
        resolve.timeline.current_item = None
    user = User(choices)
    run_script(resolve, user)
    assert message in user.result, user.statuses
    assert resolve.mutations_of(original, original.media_item, above) == []
    assert resolve.media_pool.root.GetSubFolderList() == []
    assert resolve.timeline.GetTrackCount("video") == 2
    assert not any(p.suffix == ".mov" for p in tmp_path.rglob("*"))


def test_no_timeline_is_shown_in_a_message(sample) -> None:
    resolve = FakeResolve()
    resolve.project.timeline = None  # type: ignore[assignment]
    user = User({})
    run_script(resolve, user)
    assert user.result == "open a timeline first."


def test_upscales_the_clip_selected_in_the_media_pool(small_sample, identity_model, config,
                                                     tmp_path) -> None:
    """No clip under the playhead: the Media Pool's selected clip, whole, sound included,
    into the bin; the timeline is not touched."""
    resolve, original, above = scene(small_sample)
    resolve.timeline.current_item = None
    resolve.media_pool.selected = [original.media_item]
    user = User({"Model": str(identity_model), "Folder": str(tmp_path / "out")})
    run_script(resolve, user)

    assert user.result == "onepiece_small.mov: upscaled, in the realscale bin.", user.statuses
    [clip] = resolve.media_pool.root.GetSubFolderList()[0].GetClipList()
    path = clip.GetClipProperty("File Path")
    assert Path(path) == tmp_path / "out" / "onepiece_small_x2.mov"
    assert clip.GetClipProperty("Frames") == "48" and clip.has_audio
    check_frames(path, small_sample, first=0, count=48, size=(320, 240))
    timeline = resolve.timeline
    assert [c for c in resolve.calls if c.mutating and c.owner is timeline] == []
    assert resolve.mutations_of(original, original.media_item, above) == []


def test_a_source_checkout_through_the_configs_pythonpath(small_sample, identity_model,
                                                         config, tmp_path) -> None:
    """A config with `pythonpath` (realscale not pip-installed in that Python): the job
    finds realscale through it."""
    config.write_text(json.dumps(source_checkout_config()))
    resolve, original, _ = scene(small_sample, source_start=5, length=3)
    user = User({"Model": str(identity_model), "Handles": 0, "Folder": str(tmp_path)})
    run_script(resolve, user)
    assert user.result.endswith("upscaled, on video track 2 at frame 86500."), user.statuses


def test_placement_refused_takes_everything_back(small_sample, identity_model, config,
                                                tmp_path) -> None:
    """Resolve refuses the new clip: the new track and the bin entry go again, the message
    says where the upscaled file is."""
    resolve, original, above = scene(small_sample, source_start=5, length=3)
    resolve.media_pool.AppendToTimeline = lambda clipInfo: []  # type: ignore[method-assign]
    user = User({"Model": str(identity_model), "Handles": 0, "Folder": str(tmp_path)})
    run_script(resolve, user)

    output = tmp_path / "onepiece_small_x2_5-7.mov"
    assert user.result == ("onepiece_small.mov: Resolve could not put onepiece_small.mov on "
                           f"video track 2; the upscaled file is {output}."), user.statuses
    assert output.is_file()
    assert resolve.timeline.GetTrackCount("video") == 2
    assert [f.GetClipList() for f in resolve.media_pool.root.GetSubFolderList()] == [[]]
    assert resolve.mutations_of(original, original.media_item, above) == []


def test_steady_video_reaches_the_job_and_is_remembered(small_sample, config, steady_reference,
                                                        tmp_path) -> None:
    """"Steady video" runs the job with --temporal: the clip placed on the timeline is what
    `realscale video --temporal` makes (compact model), not the per-frame result; the next
    time the dialog opens, the choices are as they were left."""
    resolve, _, _ = scene(small_sample, source_start=STEADY["first"], length=STEADY["frames"])
    choices = {"Model": STEADY["model"], "Scale": STEADY["scale"], "Codec": "ProRes 422 HQ",
               "Temporal": True, "Placement": "On a new video track above", "Handles": 0,
               "Folder": str(tmp_path / "steady")}
    user = User(choices)
    assert user.opened == {} and not (config.parent / "resolve-dialog.json").exists()
    run_script(resolve, user)

    assert user.opened["Temporal"] is False  # off until chosen
    assert user.result.endswith("upscaled, on video track 2 at frame 86500."), user.statuses
    [placed] = resolve.timeline.GetItemListInTrack("video", 2)
    check_steady(placed.GetMediaPoolItem().GetClipProperty("File Path"), steady_reference)

    again = User({}, go=False)
    run_script(scene(small_sample)[0], again)
    assert {key: again.opened[key] for key in choices if key != "Model"} == {
        key: value for key, value in choices.items() if key != "Model"}
    assert again.opened["Model"].endswith(STEADY["model"])  # shown with its purpose, if any


def test_dialog_offers_what_the_worker_reports_and_remembers_it(small_sample, identity_model,
                                                                config, tmp_path) -> None:
    """Models by purpose and devices as the real worker reports them; the result's size;
    Fast precision where the device has a fast mode (passed to the job as that precision);
    next time the same choices, and an estimate of time from this run."""
    models, devices = worker_facts()
    resolve, _, _ = scene(small_sample, source_start=5, length=3)
    fast = [d for d in devices if d.get("fast")]
    choices = {"Model": str(identity_model), "Device": (fast or devices)[0]["label"],
               "Precision": "Fast" if fast else "Exact", "Scale": "2", "Handles": 0,
               "Placement": "On a new video track above", "Folder": str(tmp_path / "out")}
    user = User(choices)
    run_script(resolve, user)

    assert user.dialog is not None
    check_lists(user.dialog.widgets, models, devices)
    assert user.filled["Estimate"].startswith("160 x 120 -> 320 x 240 px, 3 frames")
    if fast:
        assert fast[0]["fast"] in user.filled["PrecisionNote"]
    assert user.result.endswith("upscaled, on video track 2 at frame 86500."), user.statuses
    remembered = json.loads((config.parent / "resolve-dialog.json").read_text())
    assert (remembered["device"], remembered["precision"]) == (
        (fast or devices)[0]["name"], fast[0]["fast"] if fast else "fp32")

    again = User({}, go=False)
    run_script(scene(small_sample, source_start=5, length=3)[0], again)
    assert {key: again.opened[key] for key in choices} == choices
    assert re.fullmatch(r"160 x 120 -> 320 x 240 px, 3 frames; about \d+:\d\d "
                        r"\(from your last run\)", again.opened["Estimate"]), again.opened
