"""The Lua script (Resolve's free edition), run end to end in lupa's LuaJIT against the same
in-memory Resolve as the Python script (tests/fakes/resolve.py, through the Lua binding of
tests/hosts/resolve/resolve_lua.py).

The script really writes its job files, really starts its runner and ``realscale video``
with ``os.execute`` (a tiny identity network, so every frame can be checked) on a real clip,
and a scripted user drives its dialog. What this cannot show: how Resolve itself starts a
process from a Lua menu script on each OS, and Resolve's real UIManager (see the README).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from resolve_lua import SCRIPT, Binding, run_lua_script
from resolve_user import (
    HOUR,
    STEADY,
    User,
    check_frames,
    check_lists,
    check_steady,
    python_without_realscale,
    scene,
    snapshot,
    source_checkout_config,
    worker_facts,
)

from fakes.resolve import FakeResolve
from realscale.video.probe import probe


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder the script writes its job files to: empty again afterwards. Its
    name needs quoting in a shell command."""
    folder = tmp_path / "the user's tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def movies(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix == ".mov" or ".mov" in p.name]


@pytest.mark.parametrize("runtime", ["luajit", "lua51"])
def test_places_the_clip_under_the_playhead_on_a_new_track_above(
        small_sample, identity_model, config, jobs, tmp_path, runtime) -> None:
    resolve, original, above = scene(small_sample, source_start=10, length=20)
    before = snapshot(original), snapshot(above)
    audio = resolve.timeline.audio_state()
    assert audio[0] and original.audio is not None  # the clip's sound, linked on A1
    renders = tmp_path / "rendus d'été"  # comes back \u-escaped in realscale's JSON
    user = User({"Model": str(identity_model), "Scale": "2", "Handles": 3,
                 "Folder": str(renders)})
    run_lua_script(resolve, user, runtime)

    assert user.target == "onepiece_small.mov (under the playhead)"
    assert user.result == "onepiece_small.mov: upscaled, on video track 2 at frame 86500.", \
        user.statuses
    assert any(re.search(r"frame \d+ of 26 - \d+\.\d\d fps", s) for s in user.statuses), \
        user.statuses
    timeline = resolve.timeline
    assert timeline.GetTrackCount("video") == 3
    assert timeline.GetTrackName("video", 2) == "realscale"
    assert timeline.track_of(above) == 3  # the new track went in between, V2 moved up
    assert (snapshot(original), snapshot(above)) == (before[0], (*before[1][:4], 3, 0))
    assert resolve.mutations_of(original, original.media_item, above) == []
    assert timeline.audio_state() == audio  # the sound plays on, untouched

    [folder] = resolve.media_pool.root.GetSubFolderList()
    assert folder.GetName() == "realscale"
    [clip] = folder.GetClipList()
    path = clip.GetClipProperty("File Path")
    assert Path(path) == renders / "onepiece_small_x2_7-32.mov"
    assert (clip.GetClipProperty("Frames"), clip.GetClipProperty("Resolution")) == (
        "26", "320x240")
    assert not clip.has_audio  # video only: the original's audio stays the clip's sound
    assert resolve.media_pool.GetCurrentFolder() is resolve.media_pool.root  # put back

    [placed] = timeline.GetItemListInTrack("video", 2)
    assert placed.GetMediaPoolItem() is clip
    assert (placed.GetStart(), placed.GetDuration(), placed.GetSourceStartFrame()) == (
        HOUR + 100, 20, 3)
    check_frames(path, small_sample, first=7, count=26, size=(320, 240))
    assert sorted(p.name for p in renders.iterdir()) == [Path(path).name]
    assert list(jobs.iterdir()) == []


def test_a_resolve_that_appends_tracks_and_counts_end_frames_exclusively(
        small_sample, identity_model, config, jobs, tmp_path) -> None:
    resolve, original, above = scene(small_sample, source_start=30, length=8,
                                     end_frame_inclusive=False, source_end_inclusive=False,
                                     track_index_supported=False)
    user = User({"Model": str(identity_model), "Handles": 0, "Folder": str(tmp_path)})
    run_lua_script(resolve, user)

    assert user.result.endswith("upscaled, on video track 3 at frame 86500."), user.statuses
    timeline = resolve.timeline
    assert timeline.track_of(above) == 2 and timeline.GetTrackName("video", 3) == "realscale"
    [placed] = timeline.GetItemListInTrack("video", 3)
    assert (placed.GetStart(), placed.GetDuration(), placed.GetSourceStartFrame()) == (
        HOUR + 100, 8, 0)
    check_frames(placed.GetMediaPoolItem().GetClipProperty("File Path"), small_sample,
                 first=30, count=8, size=(320, 240))
    assert resolve.mutations_of(original, above) == []


def test_upscales_the_clip_selected_in_the_media_pool(small_sample, identity_model, config,
                                                     jobs, tmp_path) -> None:
    """No clip under the playhead: the Media Pool's selected clip, whole, sound included,
    into the bin; the timeline is not touched."""
    resolve, original, above = scene(small_sample)
    resolve.timeline.current_item = None
    media = original.media_item
    resolve.media_pool.selected = [media]
    user = User({"Model": str(identity_model), "Folder": str(tmp_path / "out")})
    run_lua_script(resolve, user)

    assert user.target == "onepiece_small.mov (selected in the Media Pool)"
    assert user.result == "onepiece_small.mov: upscaled, in the realscale bin.", user.statuses
    [clip] = resolve.media_pool.root.GetSubFolderList()[0].GetClipList()
    path = clip.GetClipProperty("File Path")
    assert Path(path) == tmp_path / "out" / "onepiece_small_x2.mov"
    assert clip.GetClipProperty("Frames") == "48"
    assert [s.codec for s in probe(path).of_kind("audio")] == ["aac"]  # the sound, kept
    check_frames(path, small_sample, first=0, count=48, size=(320, 240))
    timeline = resolve.timeline
    assert [c for c in resolve.calls if c.mutating and c.owner is timeline] == []
    assert timeline.GetTrackCount("video") == 2
    assert resolve.mutations_of(original, media, above) == []
    assert list(jobs.iterdir()) == []


@pytest.mark.parametrize("how", ["Cancel button", "closing the window"])
def test_cancel_leaves_nothing_behind(sample, identity_model, config, jobs, tmp_path,
                                      how) -> None:
    resolve, original, above = scene(sample, source_start=0, length=170)
    audio = resolve.timeline.audio_state()
    when = {"cancel_at": " of 176"} if how == "Cancel button" else {"close_at": " of 176"}
    user = User({"Model": str(identity_model), "Folder": str(tmp_path / "out")}, **when)
    run_lua_script(resolve, user)

    assert user.dialog is not None
    result = user.dialog.widgets["Status"].Text  # closed: the loop ended without the user
    assert result == "Cancelled.\nonepiece_demo.mp4: not done (cancelled).", user.statuses
    assert "Cancelling..." in user.statuses and " of 176 - " not in user.statuses[-1]
    assert any(" of 176 - " in s for s in user.statuses)  # it was under way
    assert list((tmp_path / "out").iterdir()) == []  # no partial file, hidden or not
    assert resolve.media_pool.root.GetSubFolderList() == []
    assert resolve.timeline.GetTrackCount("video") == 2
    assert resolve.timeline.audio_state() == audio
    assert resolve.mutations_of(original, original.media_item, above) == []
    assert [c for c in resolve.calls if c.mutating] == []
    assert list(jobs.iterdir()) == []


def test_a_source_checkout_through_the_configs_pythonpath(small_sample, identity_model,
                                                         config, jobs, tmp_path) -> None:
    """A config with `pythonpath` (realscale not pip-installed in that Python): the job
    finds realscale through it."""
    config.write_text(json.dumps(source_checkout_config()))
    resolve, original, _ = scene(small_sample, source_start=5, length=3)
    user = User({"Model": str(identity_model), "Handles": 0, "Folder": str(tmp_path / "out")})
    run_lua_script(resolve, user)
    assert user.result.endswith("upscaled, on video track 2 at frame 86500."), user.statuses
    assert list(jobs.iterdir()) == []


def test_placement_refused_takes_everything_back(small_sample, identity_model, config, jobs,
                                                tmp_path) -> None:
    """Resolve refuses the new clip: the new track and the bin entry go again, the message
    says where the upscaled file is."""
    resolve, original, above = scene(small_sample, source_start=5, length=3)
    resolve.media_pool.AppendToTimeline = lambda clipInfo: []  # type: ignore[method-assign]
    user = User({"Model": str(identity_model), "Handles": 0, "Folder": str(tmp_path / "out")})
    run_lua_script(resolve, user)

    output = tmp_path / "out" / "onepiece_small_x2_5-7.mov"
    assert user.result == ("onepiece_small.mov: Resolve could not put onepiece_small.mov on "
                           f"video track 2; the upscaled file is {output}."), user.statuses
    assert output.is_file()
    assert resolve.timeline.GetTrackCount("video") == 2
    assert [f.GetClipList() for f in resolve.media_pool.root.GetSubFolderList()] == [[]]
    assert resolve.mutations_of(original, original.media_item, above) == []
    assert list(jobs.iterdir()) == []


@pytest.mark.parametrize(("setup", "message"), [
    ("bad model", "unknown-model"),
    ("no realscale", "No module named realscale"),
    ("folder cannot be made", "cannot create the output folder"),
])
def test_a_failing_job_changes_nothing(small_sample, config, jobs, tmp_path, setup,
                                       message) -> None:
    resolve, original, above = scene(small_sample, source_start=10, length=4)
    audio = resolve.timeline.audio_state()
    choices = {"Model": "unknown-model", "Folder": str(tmp_path / "out")}
    if setup == "no realscale":
        config.write_text(json.dumps({"python": python_without_realscale(), "version": 1}))
    elif setup == "folder cannot be made":
        (tmp_path / "a file").write_text("in the way")  # (a read-only folder: not as root)
        choices["Folder"] = str(tmp_path / "a file" / "out")
    user = User(choices)
    run_lua_script(resolve, user)

    assert user.result.startswith("onepiece_small.mov: "), user.statuses
    assert message in user.result and user.result.endswith("."), user.statuses
    assert "Traceback" not in user.result and "\n" not in user.result
    assert [c for c in resolve.calls if c.mutating] == []
    assert resolve.timeline.audio_state() == audio
    assert movies(tmp_path) == []
    assert list(jobs.iterdir()) == []


def test_a_python_that_cannot_run_is_reported(small_sample, config, jobs, tmp_path) -> None:
    """The configured interpreter exists but does not run (here: not executable); the
    shell's exit status says so (no wait for the 30 s start timeout), and nothing is left
    behind."""
    broken = tmp_path / "python3"
    broken.write_text("not a program")
    config.write_text(json.dumps({"python": str(broken), "version": 1}))
    resolve, original, _ = scene(small_sample, source_start=10, length=4)
    user = User({"Folder": str(tmp_path / "out")})
    run_lua_script(resolve, user)

    assert user.result == ("onepiece_small.mov: realscale's Python did not start; run "
                           "`realscale install resolve` again."), user.statuses
    assert [c for c in resolve.calls if c.mutating] == []
    assert movies(tmp_path) == [] and list(jobs.iterdir()) == []


@pytest.mark.parametrize(("setup", "message"), [
    ("no config", "is not set up"),
    ("no clip", "no video clip under the playhead"),
    ("a title", "Title 1 is not a media clip"),
    ("speed change", "has a speed change"),
    ("two selected", "2 clips are selected in the Media Pool"),
    ("offline", "is offline"),
])
def test_errors_before_the_job_are_shown(small_sample, config, jobs, tmp_path, setup,
                                         message) -> None:
    resolve, original, above = scene(small_sample, source_start=10, length=4)
    timeline = resolve.timeline
    if setup == "no config":
        config.unlink()
    elif setup == "no clip":
        timeline.current_item = None
    elif setup == "a title":
        timeline.current_item = timeline.add_clip(None, track=3, record=HOUR, source_start=0,
                                                  length=50, name="Title 1")
    elif setup == "speed change":
        original.GetSourceEndFrame = lambda: 10 + 8  # 8 source frames in 4 timeline frames
    elif setup == "two selected":
        timeline.current_item = None
        other = resolve.add_media(str(small_sample))
        resolve.media_pool.selected = [original.media_item, other]
    else:
        moved = tmp_path / "moved.mkv"
        shutil.copy(small_sample, moved)
        media = resolve.add_media(str(moved))
        timeline.current_item = timeline.add_clip(media, track=3, record=HOUR, source_start=0,
                                                  length=4)
        moved.unlink()
    tracks = timeline.GetTrackCount("video")
    user = User({"Folder": str(tmp_path / "out")})
    run_lua_script(resolve, user)

    assert user.result.startswith("Error: ") and message in user.result, user.statuses
    assert [c for c in resolve.calls if c.mutating] == []
    assert timeline.GetTrackCount("video") == tracks
    assert not (tmp_path / "out").exists()
    assert list(jobs.iterdir()) == []


def test_no_timeline_is_shown_in_a_message(jobs) -> None:
    resolve = FakeResolve()
    resolve.project.timeline = None  # type: ignore[assignment]
    user = User({})
    run_lua_script(resolve, user)
    assert user.result == "open a timeline first."


def test_the_binding_refuses_dot_calls_on_api_objects() -> None:
    """As in Resolve, ``timeline.GetName()`` (no object) fails where ``timeline:GetName()``
    works: the binding would catch the script calling a method the wrong way."""
    resolve = FakeResolve()
    binding = Binding()
    name = binding.lua.eval("function(r) return r:GetProjectManager():GetCurrentProject()"
                            ":GetCurrentTimeline():GetName() end")
    assert name(binding.wrap(resolve)) == "Timeline 1"
    wrong = binding.lua.eval("function(r) return r.GetProjectManager() end")
    with pytest.raises(Exception, match="use obj:GetProjectManager"):
        wrong(binding.wrap(resolve))


@pytest.mark.parametrize("runtime", ["luajit", "lua51"])
@pytest.mark.parametrize("dropped", ["a method", "a caught Python error"])
def test_an_api_object_stays_itself_across_a_garbage_collection(runtime, dropped) -> None:
    """The binding hands Lua the same object for the same API object whatever the GC did in
    between. This steps Lua's GC to the point where the script's ``item.Text = ...`` once
    landed on a method under CPU load: a userdata the script dropped is cleared from lupa's
    table of Python objects but not finalized yet when an API object first reaches Lua, and
    the finalizer then ran after it."""
    binding = Binding(runtime)
    probe = binding.lua.eval("""function(resolve, dropped)
      local refs = debug.getregistry().LUPA_PYTHON_REFERENCES_TABLE
      local get_manager = resolve.GetProjectManager
      local function drop_one()
        if dropped == "a method" then return resolve.GetProjectManager end
        local _, err = pcall(get_manager)  -- a dot call: the binding's TypeError
        return err
      end
      collectgarbage("collect")
      collectgarbage("setstepmul", 1)
      local x = drop_one()
      local slot
      for key, value in pairs(refs) do if rawequal(value, x) then slot = key end end
      x = nil
      local steps = 0
      repeat collectgarbage("step", 0); steps = steps + 1
      until refs[slot] == nil or steps > 100000
      local manager = get_manager(resolve)
      collectgarbage("collect")
      local other = drop_one()
      local again = get_manager(resolve)
      again.Probe = "set on the project manager"
      return rawequal(manager, again), other ~= nil
    end""")
    resolve = FakeResolve()
    assert probe(binding.wrap(resolve), dropped) == (True, True)
    assert resolve.GetProjectManager().Probe == "set on the project manager"


def test_the_job_runner_is_clean_python(tmp_path) -> None:
    """The Python the script writes for each job passes the project's lint."""
    text = SCRIPT.read_text(encoding="utf-8")
    runner = re.search(r"local RUNNER = \[==\[\n(.*?)\]==\]", text, re.S)
    assert runner is not None
    compile(runner.group(1), "runner.py", "exec")
    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable))
    assert ruff, "ruff is in the test extra"
    path = tmp_path / "runner.py"
    path.write_text(runner.group(1))
    root = SCRIPT.parents[2]
    done = subprocess.run([ruff, "check", "--config", str(root / "pyproject.toml"), str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_steady_video_reaches_the_job_and_is_remembered(small_sample, config, jobs,
                                                        steady_reference, tmp_path) -> None:
    """"Steady video" runs the job with --temporal: the clip placed on the timeline is what
    `realscale video --temporal` makes (compact model), not the per-frame result; the next
    time the dialog opens, the choices are as they were left."""
    resolve, _, _ = scene(small_sample, source_start=STEADY["first"], length=STEADY["frames"])
    choices = {"Model": STEADY["model"], "Scale": STEADY["scale"], "Codec": "ProRes 422 HQ",
               "Temporal": True, "Handles": 0, "Folder": str(tmp_path / "steady")}
    user = User(choices)
    run_lua_script(resolve, user)

    assert user.opened["Temporal"] is False  # off until chosen
    assert user.result.endswith("upscaled, on video track 2 at frame 86500."), user.statuses
    [placed] = resolve.timeline.GetItemListInTrack("video", 2)
    check_steady(placed.GetMediaPoolItem().GetClipProperty("File Path"), steady_reference)
    assert list(jobs.iterdir()) == []

    again = User({}, go=False)
    run_lua_script(scene(small_sample)[0], again)
    assert {key: again.opened[key] for key in choices if key != "Model"} == {
        key: value for key, value in choices.items() if key != "Model"}
    assert again.opened["Model"].endswith(STEADY["model"])  # shown with its purpose, if any


def test_dialog_offers_what_the_worker_reports_and_remembers_it(small_sample, identity_model,
                                                                config, jobs, tmp_path) -> None:
    """Models by purpose and devices as the real worker reports them; the result's size;
    Fast precision where the device has a fast mode (passed to the job as that precision);
    next time the same choices, and an estimate of time from this run."""
    models, devices = worker_facts()
    resolve, _, _ = scene(small_sample, source_start=5, length=3)
    fast = [d for d in devices if d.get("fast")]
    choices = {"Model": str(identity_model), "Device": (fast or devices)[0]["label"],
               "Precision": "Fast" if fast else "Exact", "Scale": "2", "Handles": 0,
               "Folder": str(tmp_path / "out")}
    user = User(choices)
    run_lua_script(resolve, user)

    assert user.dialog is not None
    check_lists(user.dialog.widgets, models, devices)
    assert user.filled["Estimate"].startswith("160 x 120 -> 320 x 240 px, 3 frames")
    if fast:
        assert fast[0]["fast"] in user.filled["PrecisionNote"]
    assert user.result.endswith("upscaled, on video track 2 at frame 86500."), user.statuses
    remembered = json.loads((config.parent / "resolve-dialog-lua.json").read_text())
    assert (remembered["device"], remembered["precision"]) == (
        (fast or devices)[0]["name"], fast[0]["fast"] if fast else "fp32")

    again = User({}, go=False)
    run_lua_script(scene(small_sample, source_start=5, length=3)[0], again)
    assert {key: again.opened[key] for key in choices} == choices
    assert re.fullmatch(r"160 x 120 -> 320 x 240 px, 3 frames; about \d+:\d\d "
                        r"\(from your last run\)", again.opened["Estimate"]), again.opened


def test_both_scripts_ask_the_worker_with_the_same_code() -> None:
    """The ask function (models, devices, a measured rate) is written once in each script's
    program for realscale's Python; the two copies are the same text."""
    marks = r"(# --- realscale ask: .*?# --- end of realscale ask ---)"
    lua = re.search(marks, SCRIPT.read_text(), re.DOTALL)
    python = re.search(marks, SCRIPT.with_suffix(".py").read_text(), re.DOTALL)
    assert lua is not None and python is not None
    assert lua.group(1) == python.group(1)
