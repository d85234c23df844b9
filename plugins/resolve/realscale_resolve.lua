--[[
Upscale clip with Real-ESRGAN (Lua): realscale's script for DaVinci Resolve, free edition
included (Workspace > Scripts > Edit).

Resolve 21.1 and later offer Python scripts in that menu only in Studio; Lua scripts run in
both editions, in the LuaJIT (Lua 5.1) that Resolve embeds. This script does for one clip
what realscale_resolve.py does in Studio: it upscales the part of the clip under the playhead
that the timeline uses (plus a few handle frames), imports the result into a "realscale" bin
and puts it on a new video track directly above the original, at the same record frame; the
original and its audio are never changed. With no clip under the playhead, the one clip
selected in the Media Pool is upscaled whole (audio kept in the file) into the bin.

The upscaling is `realscale video` in realscale's own environment, run as
docs/resolve-job.md describes. Lua cannot read a child's output without blocking, nor write
to its standard input, so for each job this script writes a small standard-library Python
program (RUNNER below) to the temporary folder and starts it in the background with
realscale's Python: it runs `realscale video`, copies its JSON progress lines to a file,
relays a cancel request from a file and writes the exit status last. A UIManager timer polls
those files, so Resolve stays responsive. Nothing here decodes, upscales or encodes.

With no engine set up, the same runner sets it up first: realscale_setup.py (beside
realscale's wheel in Fusion/Modules/realscale) runs `install --progress json` with a Python
the shell finds, behind a set-up window like the Studio script's (prepare_engine below).
]]

local TITLE = "Upscale clip with Real-ESRGAN"
local BIN_NAME = "realscale"
local MODELS = {"realesr-animevideov3", "realesrgan-x4plus", "realesrgan-x4plus-anime",
                "realesr-general-x4v3"}
local SCALES = {"2", "3", "4"}
local CODECS = {{"prores", "ProRes 422 HQ"}, {"prores4444", "ProRes 4444"}}
local DEFAULT_HANDLES = 6
local CONFIG_VERSION = 1
local REMEMBERED = "resolve-dialog-lua.json"  -- the dialog's choices, beside the config
local PURPOSES = {"photo", "anime", "video"}  -- order of the model list, then the rest
local FAST_COST = "Fast computes in %s: usually much quicker, and the result differs very "
  .. "slightly from Exact (not visible in normal viewing)."
local NO_FAST = "This device has no fast mode: Exact only."
local FREE_LIMIT = {3840, 2160}  -- the free edition's largest timeline (UHD)
local TEMPORAL_TEXT = "Steady video (less flicker)"
local TEMPORAL_TIP = "Blends each frame with the previous result where the picture did not "
  .. "move, so still backgrounds stop shimmering; new content and scene cuts stay as upscaled."
local TICK_MS = 250
local START_TIMEOUT = 30     -- seconds for the runner to show it started
local STOP_TIMEOUT = 45      -- seconds for a cancelled job to end (the runner kills at 20)
local HEARTBEAT = 5          -- seconds between touches of the job's .alive file
local WINDOWS = package.config:sub(1, 1) == "\\"
local SEP = WINDOWS and "\\" or "/"
local JOB_FILES = {".py", ".json", ".alive", ".started", ".nostart", ".events", ".log",
                   ".cancel", ".exit"}

-- The job runner: started as `<python> -I <base>.py <base>` (docs/resolve-job.md, "Job files").
local RUNNER = [==[
"""realscale's job runner for the Resolve Lua script (docs/resolve-job.md, "Job files").

Written by the script for each job and started as `<python> -I BASE.py BASE`: runs
`realscale video` with the arguments in BASE.json and talks to the script through files.
"""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

STRIP = ("PYTHON", "QT_", "QML", "QTWEBENGINE", "__PYVENV")
HOST_GONE = 120  # seconds without a touch of BASE.alive: the script is gone, stop
KILL_AFTER = 20  # seconds after a cancel request before the process is killed


def publish(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def host_gone(alive):
    try:
        return time.time() - os.path.getmtime(alive) > HOST_GONE
    except OSError:
        return True  # removed: the script cleaned up and went away


# --- realscale ask: the same text in realscale_resolve.py and realscale_resolve.lua ---
def ask(request, emit):
    """Asks realscale's worker what the Resolve dialog offers; ``emit`` gets each answer.

    Runs in realscale's own Python. ``request``: "facts" (true: the models and the devices),
    "measure" ({"model", "device", "precision"}: a rate timed by the worker), "pythonpath"
    (folders the worker needs). A worker without the devices or measure request answers
    with no devices or an error, and the dialog falls back.
    """
    import importlib.util

    import realscale.wire  # noqa: F401 - the client below shares the worker's own module

    try:
        from realscale.install import client_file
    except ImportError:
        from realscale.install.sources import client_file
    spec = importlib.util.spec_from_file_location("realscale_client", str(client_file()))
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    with client.WorkerClient(sys.executable, pythonpath=request.get("pythonpath") or None,
                             host="resolve") as worker:
        if request.get("facts"):
            try:
                devices = worker.devices()
            except (AttributeError, client.WorkerError):
                devices = []
            emit({"answer": "facts", "models": worker.models(), "devices": devices})
        wanted = request.get("measure")
        if wanted:
            try:
                rate = worker.measure(wanted["model"], wanted["device"], wanted["precision"])
            except (AttributeError, client.WorkerError) as exc:
                rate = {"error": str(exc)}
            emit(dict(rate, answer="measure", asked=wanted))
# --- end of realscale ask ---


def answer(base, job):
    """Ask mode: the worker's answers as JSON lines in BASE.events. A cancel request or a
    script gone ends the runner at once (its worker ends with it); it then takes its files
    away itself."""
    sys.path[:0] = job.get("pythonpath") or []
    with open(base + ".events", "w", encoding="utf-8") as events:

        def emit(reply):
            events.write(json.dumps(reply) + "\n")
            events.flush()

        def asking():
            try:
                ask(dict(job["ask"], pythonpath=job.get("pythonpath")), emit)
            except Exception as exc:  # noqa: BLE001 - reported to the script, never lost
                emit({"answer": "error", "message": str(exc) or type(exc).__name__})

        thread = threading.Thread(target=asking, daemon=True)
        thread.start()
        while thread.is_alive():
            cancelled = os.path.exists(base + ".cancel")
            if cancelled or host_gone(base + ".alive"):
                events.close()
                for suffix in (".events", ".log", ".started", ".json", ".py", ".alive",
                               ".cancel"):
                    with contextlib.suppress(OSError):
                        os.remove(base + suffix)
                if cancelled:  # the script waits for this, then removes it
                    publish(base + ".exit", "130")
                os._exit(0)
            thread.join(0.2)
    return 0


def run(base, log):
    with open(base + ".json", encoding="utf-8") as handle:
        job = json.load(handle)
    if "ask" in job:
        return answer(base, job)
    env = {key: value for key, value in os.environ.items()
           if not key.upper().startswith(STRIP)}
    if job.get("pythonpath"):
        env["PYTHONPATH"] = os.pathsep.join(job["pythonpath"])
    folder = job.get("folder")
    if folder:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            log.write(f"realscale: cannot create the output folder {folder} "
                      f"({exc.strerror}); choose another folder\n")
            return 2
    if job.get("script"):  # the engine's set-up: realscale_setup.py --progress json
        command = [sys.executable, job["script"]] + job["args"]
    else:
        command = [sys.executable, "-m", "realscale", "video"] + job["args"]
    kill_after = job.get("kill_after") or KILL_AFTER
    flags = 0x08000000 if os.name == "nt" else 0  # CREATE_NO_WINDOW
    with open(base + ".events", "w", encoding="utf-8") as events:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=events, stderr=log,
                                   env=env, cwd=os.path.expanduser("~"), creationflags=flags)
        asked = None
        while process.poll() is None:
            if asked is None and (os.path.exists(base + ".cancel") or host_gone(base + ".alive")):
                asked = time.monotonic()
                try:
                    process.stdin.write(b"cancel\n")
                    process.stdin.flush()
                except OSError:
                    process.terminate()
            elif asked is not None and time.monotonic() - asked > kill_after:
                process.kill()
            time.sleep(0.2)
    return process.returncode


def main(base):
    publish(base + ".started", str(os.getpid()))
    code = 1
    with open(base + ".log", "w", encoding="utf-8", errors="replace") as log:
        try:
            code = run(base, log)
        except Exception as exc:  # noqa: BLE001 - reported to the script, never lost
            log.write(f"realscale: the job runner failed: {exc}\n")
    publish(base + ".exit", str(code))


if __name__ == "__main__":
    main(sys.argv[1])
]==]

-- ---------------------------------------------------------------------------------------------
-- Errors the user can act on: raised with fail(), shown as they are.

local ScriptError = {}
ScriptError.__index = ScriptError
ScriptError.__tostring = function(err) return err.message end

local function fail(message)
  error(setmetatable({message = message}, ScriptError), 0)
end

-- pcall that tells the user's errors (their text) from bugs (shown too, never swallowed).
local function protect(fn, ...)
  local results = {pcall(fn, ...)}
  if results[1] then
    return unpack(results)
  end
  local err = results[2]
  if getmetatable(err) == ScriptError then
    return false, err.message
  end
  return false, "internal error in the script: " .. tostring(err)
end

-- ---------------------------------------------------------------------------------------------
-- Small helpers: files, paths, numbers, Resolve's lists

local function exists(path)
  local handle = io.open(path, "rb")
  if handle then
    handle:close()
    return true
  end
  return false
end

local function read_file(path)
  local handle = io.open(path, "rb")
  if not handle then
    return nil
  end
  local text = handle:read("*a")
  handle:close()
  return text
end

local function write_file(path, text)
  local handle, message = io.open(path, "wb")
  if not handle then
    fail("cannot write " .. path .. " (" .. tostring(message) .. ")")
  end
  handle:write(text)
  handle:close()
end

local function trim(text)
  return (tostring(text or ""):gsub("^%s+", ""):gsub("%s+$", ""))
end

local function dirname(path)
  return path:match("^(.*)[/\\][^/\\]*$") or "."
end

local function basename(path)
  return path:match("([^/\\]*)$")
end

local function join(folder, name)
  if folder:match("[/\\]$") then
    return folder .. name
  end
  return folder .. SEP .. name
end

local function is_absolute(path)
  return path:match("^/") ~= nil or path:match("^%a:[/\\]") ~= nil or path:match("^\\\\") ~= nil
end

local function number(value)
  return tonumber(trim(value))
end

local function truncate(value)
  value = tonumber(value) or 0
  return value >= 0 and math.floor(value) or math.ceil(value)
end

local function round(value)
  return math.floor(value + 0.5)
end

-- Resolve returns lists as Lua tables; take the values in key order, whatever the keys.
local function list(value)
  if type(value) ~= "table" then
    return {}
  end
  local keys, numeric = {}, true
  for key in pairs(value) do
    keys[#keys + 1] = key
    numeric = numeric and type(key) == "number"
  end
  if numeric then
    table.sort(keys)
  else
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  end
  local values = {}
  for _, key in ipairs(keys) do
    values[#values + 1] = value[key]
  end
  return values
end

-- A whole-frame position: Resolve 19 and later take subframe_precision, older ones nothing.
local function frames_of(object, method)
  local ok, value = pcall(object[method], object, false)
  if not ok or value == nil then
    value = object[method](object)
  end
  return round(tonumber(value) or 0)
end

local function clock(seconds)
  local whole = round(seconds)
  if whole >= 3600 then
    return string.format("%d:%02d:%02d", math.floor(whole / 3600),
                         math.floor(whole / 60) % 60, whole % 60)
  end
  return string.format("%d:%02d", math.floor(whole / 60), whole % 60)
end

-- ---------------------------------------------------------------------------------------------
-- JSON: the worker config and realscale's progress lines in, the job file out

local function utf8_char(code)
  if code < 0x80 then
    return string.char(code)
  elseif code < 0x800 then
    return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
  elseif code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40,
                       0x80 + code % 0x40)
  end
  return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
                     0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

local ESCAPES = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                 r = "\r", t = "\t"}

-- Decodes one JSON value; nil and a reason for anything else.
local function json_decode(text)
  local pos = 1
  local bad = {}
  local function skip()
    pos = text:find("[^ \t\r\n]", pos) or (#text + 1)
  end
  local value
  local function hex4(at)
    local digits = text:sub(at, at + 3)
    if not digits:match("^%x%x%x%x$") then
      error(bad)
    end
    return tonumber(digits, 16)
  end
  local function decode_string()
    local parts = {}
    pos = pos + 1
    while true do
      local c = text:sub(pos, pos)
      if c == "" then
        error(bad)
      elseif c == '"' then
        pos = pos + 1
        return table.concat(parts)
      elseif c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        if ESCAPES[e] then
          parts[#parts + 1] = ESCAPES[e]
          pos = pos + 2
        elseif e == "u" then
          local code = hex4(pos + 2)
          pos = pos + 6
          if code >= 0xD800 and code <= 0xDBFF and text:sub(pos, pos + 1) == "\\u" then
            local low = hex4(pos + 2)
            if low >= 0xDC00 and low <= 0xDFFF then
              code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
              pos = pos + 6
            end
          end
          parts[#parts + 1] = utf8_char(code)
        else
          error(bad)
        end
      else
        local stop = text:find('["\\]', pos) or (#text + 1)
        parts[#parts + 1] = text:sub(pos, stop - 1)
        pos = stop
      end
    end
  end
  function value()
    skip()
    local c = text:sub(pos, pos)
    if c == "{" then
      local object = {}
      pos = pos + 1
      skip()
      if text:sub(pos, pos) == "}" then
        pos = pos + 1
        return object
      end
      while true do
        skip()
        if text:sub(pos, pos) ~= '"' then
          error(bad)
        end
        local key = decode_string()
        skip()
        if text:sub(pos, pos) ~= ":" then
          error(bad)
        end
        pos = pos + 1
        object[key] = value()
        skip()
        local sep = text:sub(pos, pos)
        pos = pos + 1
        if sep == "}" then
          return object
        elseif sep ~= "," then
          error(bad)
        end
      end
    elseif c == "[" then
      local array = {}
      pos = pos + 1
      skip()
      if text:sub(pos, pos) == "]" then
        pos = pos + 1
        return array
      end
      while true do
        array[#array + 1] = value()
        skip()
        local sep = text:sub(pos, pos)
        pos = pos + 1
        if sep == "]" then
          return array
        elseif sep ~= "," then
          error(bad)
        end
      end
    elseif c == '"' then
      return decode_string()
    end
    for word, result in pairs({["true"] = true, ["false"] = false, ["null"] = bad}) do
      if text:sub(pos, pos + #word - 1) == word then
        pos = pos + #word
        if result == bad then
          return nil
        end
        return result
      end
    end
    local literal = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not literal or not tonumber(literal) then
      error(bad)
    end
    pos = pos + #literal
    return tonumber(literal)
  end
  local ok, result = pcall(function()
    local decoded = value()
    skip()
    if pos <= #text then
      error(bad)
    end
    return decoded
  end)
  if ok then
    return result
  end
  if result == bad then
    return nil, "not valid JSON"
  end
  error(result, 0)
end

local function json_string(text)
  local escaped = text:gsub('[%c"\\]', function(c)
    local named = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
                   ["\t"] = "\\t"}
    return named[c] or string.format("\\u%04x", c:byte())
  end)
  return '"' .. escaped .. '"'
end

local function json_strings(values)
  local parts = {}
  for _, value in ipairs(values) do
    parts[#parts + 1] = json_string(value)
  end
  return "[" .. table.concat(parts, ", ") .. "]"
end

-- ---------------------------------------------------------------------------------------------
-- realscale's interpreter, from the worker config `realscale install resolve` writes

local function platform()
  if WINDOWS then
    return "windows"
  end
  if jit and jit.os then
    return jit.os == "OSX" and "macos" or "posix"
  end
  local home = os.getenv("HOME") or ""
  return exists(home .. "/Library/Preferences/.GlobalPreferences.plist") and "macos" or "posix"
end

-- Where `realscale install resolve` writes the worker config: the rule of core's
-- realscale/wire.py (config_dir, config_path), which the Studio script and the worker use.
-- Lua cannot run that Python before it knows the interpreter, and the interpreter is named in
-- that very config, so the rule is written here once more; a test holds the two to the same
-- answers.
local function config_path()
  local override = os.getenv("REALSCALE_WORKER_CONFIG")
  if override and override ~= "" then
    return override
  end
  local folder = os.getenv("REALSCALE_CONFIG_DIR")
  if not folder or folder == "" then
    local kind = platform()
    if kind == "windows" then
      local base = os.getenv("APPDATA")
      if not base or base == "" then
        base = (os.getenv("USERPROFILE") or "") .. "\\AppData\\Roaming"
      end
      folder = base .. "\\realscale"
    elseif kind == "macos" then
      folder = (os.getenv("HOME") or "") .. "/Library/Application Support/realscale"
    else
      local base = os.getenv("XDG_CONFIG_HOME")
      if not base or not is_absolute(base) then
        base = (os.getenv("HOME") or "") .. "/.config"  -- XDG: a relative value is ignored
      end
      folder = join(base, "realscale")
    end
  end
  return join(folder, "worker.json")
end

-- JSON text of a value made of tables (arrays from 1, or string keys), strings, numbers and
-- booleans (the remembered choices, the worker's questions).
local function json_encode(value)
  local kind = type(value)
  if kind == "string" then
    return json_string(value)
  elseif kind == "boolean" then
    return value and "true" or "false"
  elseif kind == "number" then
    return string.format("%.17g", value)
  elseif kind ~= "table" then
    return "null"
  end
  if #value > 0 then
    local parts = {}
    for _, item in ipairs(value) do
      parts[#parts + 1] = json_encode(item)
    end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  local keys, parts = {}, {}
  for key in pairs(value) do
    keys[#keys + 1] = tostring(key)
  end
  table.sort(keys)
  for _, key in ipairs(keys) do
    parts[#parts + 1] = json_string(key) .. ": " .. json_encode(value[key])
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function remembered_path()
  return join(dirname(config_path()), REMEMBERED)
end

-- The choices saved by the last run; an empty table when there are none.
local function load_remembered()
  local values = json_decode(read_file(remembered_path()) or "")
  return type(values) == "table" and values or {}
end

-- Merges `values` into the remembered choices (written whole, then renamed); a folder that
-- cannot be written only means they are not remembered.
local function save_remembered(values)
  local merged = load_remembered()
  for key, value in pairs(values) do
    merged[key] = value
  end
  local path = remembered_path()
  if pcall(write_file, path .. ".tmp", json_encode(merged) .. "\n") then
    os.remove(path)  -- Windows' rename does not replace
    os.rename(path .. ".tmp", path)
  end
end

-- Resolve's per-user Fusion folder, where the zip puts Scripts/Edit and Modules/realscale.
local function fusion_folder()
  local kind = platform()
  if kind == "windows" then
    local base = os.getenv("APPDATA")
    if not base or base == "" then
      base = (os.getenv("USERPROFILE") or "") .. "\\AppData\\Roaming"
    end
    return base .. "\\Blackmagic Design\\DaVinci Resolve\\Support\\Fusion"
  elseif kind == "macos" then
    return (os.getenv("HOME") or "~") .. "/Library/Application Support/Blackmagic Design"
           .. "/DaVinci Resolve/Fusion"
  end
  return (os.getenv("HOME") or "~") .. "/.local/share/DaVinciResolve/Fusion"
end

local function default_setup_script()
  return join(join(join(fusion_folder(), "Modules"), "realscale"), "realscale_setup.py")
end

-- The one terminal command that sets the engine up (plugins/common/realscale_setup.py, which
-- the zip puts in Fusion/Modules/realscale beside realscale's wheel): the fallback where the
-- set-up dialog cannot start it. ``action``: "update" for the update, else the install.
local function setup_command(script, action)
  script = script or default_setup_script()
  return (WINDOWS and "py -3" or "python3") .. ' "' .. script .. '" '
         .. (action == "update" and "update" or "install --extras video")
end

-- (python, pythonpath) of realscale's environment.
local function core_python()
  local path = config_path()
  local fix = "run `realscale install resolve` in a terminal, then run this script again"
  local function set_up()
    return "Resolve's free edition cannot set it up from a script: in a terminal run "
           .. setup_command() .. " (Python 3.10 or newer), then run this script again "
           .. "(in Resolve Studio the Python script in this menu sets it up by itself)"
  end
  local text = read_file(path)
  if not text then
    fail("realscale's engine is not set up (" .. path .. " is missing). " .. set_up())
  end
  local config = json_decode(text)
  if type(config) ~= "table" then
    fail(path .. " is not valid JSON; " .. fix)
  end
  local python = config.python
  if type(python) ~= "string" or python == "" then
    fail(path .. " names no Python interpreter; " .. fix)
  end
  if (tonumber(config.version) or CONFIG_VERSION) > CONFIG_VERSION then
    fail(path .. " was written by a newer realscale; update this script with "
         .. "`realscale install resolve`")
  end
  if not exists(python) then
    fail("realscale's Python " .. python .. " does not exist any more. " .. set_up())
  end
  local pythonpath = {}
  for _, entry in ipairs(type(config.pythonpath) == "table" and config.pythonpath or {}) do
    if type(entry) == "string" then
      pythonpath[#pythonpath + 1] = entry
    end
  end
  return python, pythonpath
end

-- ---------------------------------------------------------------------------------------------
-- Reading the timeline: which source frames to upscale and where the result goes

local function track_of(timeline, item)
  local ok, kind, index = pcall(item.GetTrackTypeAndIndex, item)
  if ok and type(kind) == "table" then
    kind, index = kind[1], kind[2]
  end
  if ok and kind == "video" and (tonumber(index) or 0) > 0 then
    return truncate(index)
  end
  -- Resolve before 19: look for the item on each track.
  local wanted = item:GetUniqueId()
  for track = 1, timeline:GetTrackCount("video") do
    for _, other in ipairs(list(timeline:GetItemListInTrack("video", track))) do
      if other:GetUniqueId() == wanted then
        return track
      end
    end
  end
  fail("could not find the track of " .. tostring(item:GetName()))
end

local function frame_rate(timeline, project)
  for _, value in ipairs({timeline:GetSetting("timelineFrameRate"),
                          project:GetSetting("timelineFrameRate")}) do
    local rate = number(value)
    if rate and rate > 0 then
      return rate
    end
  end
  return nil
end

local function source_file(media, name)
  local path = media:GetClipProperty("File Path")
  if type(path) ~= "string" or path == "" then
    fail(name .. " has no source file")
  end
  if not exists(path) then
    fail("the source of " .. name .. " is offline (" .. path .. ")")
  end
  return path
end

-- The clip under the playhead: the source frames the timeline uses, plus handles.
local function plan_timeline_clip(timeline, project, item, handles)
  local name = tostring(item:GetName() or "")
  local media = item:GetMediaPoolItem()
  if not media then
    fail(name .. " is not a media clip (a title, generator or compound clip)")
  end
  local path = source_file(media, name)
  local clip_frames = number(media:GetClipProperty("Frames"))
  local clip_rate = number(media:GetClipProperty("FPS"))
  local timeline_rate = frame_rate(timeline, project)
  local start = truncate(item:GetSourceStartFrame())
  local stop = truncate(item:GetSourceEndFrame())
  local duration = frames_of(item, "GetDuration")
  local first_number = number(media:GetClipProperty("Start"))
  if clip_frames and start >= clip_frames and first_number and start >= first_number then
    -- Frames counted from the file's first frame number (image sequences, timecode).
    start, stop = start - truncate(first_number), stop - truncate(first_number)
  end
  local ratio = 1.0
  if clip_rate and clip_rate > 0 and timeline_rate then
    ratio = clip_rate / timeline_rate
  end
  if math.abs(ratio - 1.0) < 0.001 then
    ratio = 1.0  -- the same rate written two ways (23.976 and 23.98)
  end
  local expected = duration * ratio
  local span = stop - start
  local used
  -- GetSourceEndFrame is the last frame in some Resolve versions and the one after it in
  -- others; the clip's duration tells which. Placement checks the result again.
  if math.abs(span - expected) < 0.5 then
    used = span
  elseif math.abs(span + 1 - expected) < 0.5 then
    used = span + 1
  elseif math.abs(span + 1 - expected) <= 2 * math.max(ratio, 1.0) then
    used = span + 1  -- frame-rate conversion rounding
  else
    fail(name .. " has a speed change; realscale upscales clips that play at normal speed "
         .. "(render the retime first)")
  end
  used = math.max(used, 1)
  local left = math.min(handles, start)
  local right = handles
  if clip_frames then
    right = math.max(0, math.min(right, truncate(clip_frames) - (start + used)))
  end
  return {
    item = item, media = media, path = path, name = name ~= "" and name or basename(path),
    first = start - left, left = left, used = used, count = left + used + right,
    record = frames_of(item, "GetStart"), track = track_of(timeline, item),
    duration = duration, ratio = ratio, source = "under the playhead",
  }
end

-- The one clip selected in the Media Pool, upscaled whole.
local function plan_pool_clip(media)
  local name = tostring(media:GetName() or "")
  local kind = tostring(media:GetClipProperty("Type") or "")
  if not kind:find("Video", 1, true) then
    fail(name .. " is not a video clip (" .. (kind ~= "" and kind or "no type") .. ")")
  end
  local path = source_file(media, name)
  local frames = truncate(number(media:GetClipProperty("Frames")) or 0)
  return {
    media = media, path = path, name = name ~= "" and name or basename(path), first = 0,
    count = frames, whole = true, source = "selected in the Media Pool",
  }
end

-- What to upscale: the clip under the playhead, else the Media Pool's one selected clip.
local function find_target(project, timeline, handles)
  local item = timeline:GetCurrentVideoItem()
  if item then
    return plan_timeline_clip(timeline, project, item, handles)
  end
  local selected = list(project:GetMediaPool():GetSelectedClips())
  if #selected == 1 then
    return plan_pool_clip(selected[1])
  elseif #selected > 1 then
    fail("no video clip under the playhead, and " .. #selected .. " clips are selected in "
         .. "the Media Pool; put the playhead on the clip to upscale or select just one")
  end
  fail("no video clip under the playhead; move the playhead onto the clip to upscale (or "
       .. "select one clip in the Media Pool)")
end

local function output_path(job, settings)
  local folder = settings.folder
  if folder == "" then
    folder = join(dirname(job.path), BIN_NAME)
  end
  if folder:sub(1, 1) == "~" then
    folder = (os.getenv("HOME") or os.getenv("USERPROFILE") or "") .. folder:sub(2)
  end
  if not is_absolute(folder) then
    fail("the output folder " .. folder .. " is not a full path; choose a folder such as "
         .. join(dirname(job.path), BIN_NAME))
  end
  local stem = basename(job.path):gsub("%.[^.]*$", "")
  local base = stem .. "_x" .. settings.scale
  if not job.whole then
    base = base .. "_" .. job.first .. "-" .. (job.first + job.count - 1)
  end
  local path = join(folder, base .. ".mov")
  local number_ = 2
  while exists(path) do
    path = join(folder, base .. "_" .. number_ .. ".mov")
    number_ = number_ + 1
  end
  return path, folder
end

local function video_args(job, settings)
  local args = {job.path, "-o", job.output, "--model", settings.model, "--scale", settings.scale,
                "--codec", settings.codec}
  if settings.temporal then
    args[#args + 1] = "--temporal"
  end
  if settings.device and settings.device ~= "auto" then
    args[#args + 1] = "--device"
    args[#args + 1] = settings.device
  end
  if settings.precision and settings.precision ~= "auto" then
    args[#args + 1] = "--precision"
    args[#args + 1] = settings.precision
  end
  if not job.whole then
    for _, value in ipairs({"--start-frame", tostring(job.first), "--frames", tostring(job.count),
                            "--no-audio"}) do
      args[#args + 1] = value
    end
  end
  for _, value in ipairs({"--no-subtitles", "--download", "--progress", "json"}) do
    args[#args + 1] = value
  end
  return args
end

-- ---------------------------------------------------------------------------------------------
-- The job: `realscale video` through the runner, seen through its files

local Job = {}
Job.__index = Job

local function temp_folder()
  local folder
  if WINDOWS then
    folder = os.getenv("TEMP") or os.getenv("TMP") or "C:\\Windows\\Temp"
  else
    folder = os.getenv("TMPDIR") or "/tmp"
  end
  return (folder:gsub("[/\\]+$", ""))
end

local function shell_quote(text)
  if WINDOWS then
    return '"' .. text:gsub('"', "") .. '"'  -- Windows paths cannot hold quotes
  end
  return "'" .. text:gsub("'", "'\\''") .. "'"
end

-- pythonw.exe beside python.exe: the runner needs no console window.
local function windowless(python)
  local candidate = python:gsub("python(%d*%.?%d*)%.exe$", "pythonw%1.exe")
  if candidate ~= python and exists(candidate) then
    return candidate
  end
  return python
end

-- A job of the runner: its files under a fresh BASE (docs/resolve-job.md, "Job files"),
-- ``spec`` (the JSON text of BASE.json) written, the runner started in the background.
local function begin_job(kind, python, spec)
  local job = setmetatable({offset = 0, pending = "", events_seen = false}, Job)
  local stem = join(temp_folder(), "realscale-" .. kind .. "-" .. os.time() .. "-")
  repeat
    job.base = stem .. math.random(100000, 999999)
  until not exists(job.base .. ".json")
  write_file(job.base .. ".py", RUNNER)
  write_file(job.base .. ".json", spec .. "\n")
  write_file(job.base .. ".alive", tostring(os.time()))
  job.touched = os.time()
  job.launched = os.time()
  job:launch(python)
  return job
end

function Job.start(python, pythonpath, args, folder)
  for _, arg in ipairs(args) do
    if arg:find("[\r\n]") then
      fail("the path " .. arg .. " holds a line break; rename it first")
    end
  end
  return begin_job("job", python, "{\"args\": " .. json_strings(args) .. ", \"pythonpath\": "
                   .. json_strings(pythonpath) .. ", \"folder\": " .. json_string(folder) .. "}")
end

-- Asks the worker (docs/resolve-job.md, "Asking the worker"): the answers arrive as events.
function Job.ask(python, pythonpath, request)
  return begin_job("ask", python, json_encode({ask = request, pythonpath = pythonpath}))
end

function Job:launch(python)
  local command
  if WINDOWS then
    command = 'start "" /B ' .. shell_quote(windowless(python)) .. " -I "
              .. shell_quote(self.base .. ".py") .. " " .. shell_quote(self.base)
  else
    -- The shell's 126 or 127 (not executable, not found) leaves BASE.nostart, so the
    -- script says so at once rather than after START_TIMEOUT; the runner never exits so.
    command = "(" .. shell_quote(python) .. " -I " .. shell_quote(self.base .. ".py") .. " "
              .. shell_quote(self.base) .. "; case $? in 126|127) : >"
              .. shell_quote(self.base .. ".nostart") .. ";; esac) </dev/null >/dev/null 2>&1 &"
  end
  os.execute(command)
end

-- New progress events since the last call (complete lines only).
function Job:events()
  local handle = io.open(self.base .. ".events", "rb")
  if not handle then
    return {}
  end
  handle:seek("set", self.offset)
  local text = handle:read("*a") or ""
  handle:close()
  self.offset = self.offset + #text
  text = self.pending .. text
  local found = {}
  local last = 1
  for line, stop in text:gmatch("([^\n]*)\n()") do
    last = stop
    local event = json_decode(line)
    if type(event) == "table" then
      found[#found + 1] = event
    end
  end
  self.pending = text:sub(last)
  return found
end

function Job:started()
  return exists(self.base .. ".started")
end

-- The runner's Python could not run: the shell said so, or it did not start in time.
function Job:never_started()
  if self:started() then
    return false
  end
  return exists(self.base .. ".nostart") or os.time() - self.launched > START_TIMEOUT
end

-- The exit status once the job ended, else nil.
function Job:exit_code()
  local text = read_file(self.base .. ".exit")
  return text and tonumber(trim(text)) or nil
end

function Job:heartbeat()
  if os.time() - self.touched >= HEARTBEAT then
    self.touched = os.time()
    pcall(write_file, self.base .. ".alive", tostring(self.touched))
  end
end

function Job:cancel()
  if not self.cancel_time then
    self.cancel_time = os.time()
    pcall(write_file, self.base .. ".cancel", "cancel\n")
  end
end

-- The last thing realscale said on stderr, as the reason for a failure.
function Job:error_text()
  local last
  for line in (read_file(self.base .. ".log") or ""):gmatch("[^\r\n]+") do
    if trim(line) ~= "" then
      last = trim(line)
    end
  end
  return last and (last:gsub("^realscale: ", "")) or nil
end

function Job:remove_files()
  for _, suffix in ipairs(JOB_FILES) do
    os.remove(self.base .. suffix)
  end
end

-- ---------------------------------------------------------------------------------------------
-- Bringing the result back: the "realscale" bin and a new track above the original

local Placer = {}
Placer.__index = Placer

function Placer.new(project, timeline)
  return setmetatable({project = project, timeline = timeline,
                       media_pool = project:GetMediaPool()}, Placer)
end

function Placer:bin()
  local root = self.media_pool:GetRootFolder()
  for _, folder in ipairs(list(root:GetSubFolderList())) do
    if folder:GetName() == BIN_NAME then
      return folder
    end
  end
  local created = self.media_pool:AddSubFolder(root, BIN_NAME)
  if not created then
    fail("could not create the " .. BIN_NAME .. " bin in the media pool")
  end
  return created
end

function Placer:import_clip(job)
  local target = self:bin()
  local previous = self.media_pool:GetCurrentFolder()
  self.media_pool:SetCurrentFolder(target)
  local ok, imported = pcall(self.media_pool.ImportMedia, self.media_pool, {job.output})
  if previous then
    self.media_pool:SetCurrentFolder(previous)
  end
  if not ok then
    error(imported, 0)
  end
  local clip = list(imported)[1]
  if not clip then
    fail("Resolve could not import " .. job.output)
  end
  local frames = number(clip:GetClipProperty("Frames"))
  if frames and truncate(frames) ~= job.count then
    self.media_pool:DeleteClips({clip})
    fail("Resolve sees " .. truncate(frames) .. " frames in " .. job.output
         .. " where realscale wrote " .. job.count)
  end
  return clip
end

function Placer:clip_ids(track)
  local ids = {}
  for _, item in ipairs(list(self.timeline:GetItemListInTrack("video", track))) do
    ids[#ids + 1] = item:GetUniqueId()
  end
  return table.concat(ids, "\n")
end

-- A new, empty video track directly above `track`; its index.
function Placer:track_above(track)
  local before = self.timeline:GetTrackCount("video")
  local wanted = math.min(track + 1, before + 1)
  local above = wanted <= before and self:clip_ids(wanted) or nil
  local added = self.timeline:AddTrack("video", {audiotype = "mono", index = wanted})
  if not added then
    -- Resolve before 19.1 only appends tracks (its second argument is for audio).
    added = self.timeline:AddTrack("video", "mono")
    wanted = before + 1
  end
  if not added or self.timeline:GetTrackCount("video") ~= before + 1 then
    fail("Resolve could not add a video track")
  end
  if above and above ~= "" and self:clip_ids(wanted) == above then
    wanted = before + 1  -- this Resolve ignored the index and put the track on top
  end
  self.timeline:SetTrackName("video", wanted, BIN_NAME)
  return wanted
end

local function frames_off(timeline_frames, ratio)
  local step = round(timeline_frames * ratio)
  if step ~= 0 then
    return step
  end
  return timeline_frames > 0 and 1 or -1
end

function Placer:append(job, clip, track)
  local last = job.left + job.used - 1
  local slack = job.ratio == 1.0 and 0 or 1
  for _ = 1, 2 do
    local placed = list(self.media_pool:AppendToTimeline({{
      mediaPoolItem = clip, startFrame = job.left, endFrame = last, mediaType = 1,
      trackIndex = track, recordFrame = job.record}}))
    local item = placed[1]
    if not item then
      fail("Resolve could not put " .. job.name .. " on video track " .. track)
    end
    local start = frames_of(item, "GetStart")
    local length = frames_of(item, "GetDuration")
    if start ~= job.record then
      self.timeline:DeleteClips({item}, false)
      fail("Resolve put the upscaled " .. job.name .. " at frame " .. start .. " instead of "
           .. job.record)
    end
    if math.abs(length - job.duration) <= slack then
      return "on video track " .. track .. " at frame " .. job.record
    end
    -- This Resolve counts endFrame the other way: take our clip away, try again.
    self.timeline:DeleteClips({item}, false)
    last = last + frames_off(job.duration - length, job.ratio)
  end
  fail("Resolve placed the upscaled " .. job.name .. " with the wrong length")
end

-- Import and place; on a failure the timeline and the Media Pool are as they were.
function Placer:place(job)
  local clip = self:import_clip(job)
  if job.whole then
    return "in the " .. BIN_NAME .. " bin"
  end
  local track
  local ok, result = protect(function()
    track = self:track_above(job.track)
    return self:append(job, clip, track)
  end)
  if ok then
    return result
  end
  if track and #list(self.timeline:GetItemListInTrack("video", track)) == 0 then
    self.timeline:DeleteTrack("video", track)
  end
  self.media_pool:DeleteClips({clip})
  fail(result .. "; the upscaled file is " .. job.output)
end

-- ---------------------------------------------------------------------------------------------
-- One clip's work, advanced by the dialog's timer

-- Rates of finished jobs and measurements are kept by model, device and precision.
local function rate_key(model, device, precision)
  return model .. "|" .. device .. "|" .. precision
end

local function resolution(media)
  local width, height = tostring(media:GetClipProperty("Resolution") or ""):match(
    "^%s*(%d+)%s*[xX]%s*(%d+)%s*$")
  return tonumber(width), tonumber(height)
end

local Session = {}
Session.__index = Session

function Session.start(project, timeline, settings)
  local python, pythonpath = core_python()
  local job = find_target(project, timeline, settings.handles)
  local self = setmetatable({job = job, settings = settings,
                             placer = Placer.new(project, timeline), finished = false,
                             cancelled = false, rates = {}}, Session)
  local folder
  job.output, folder = output_path(job, settings)
  self.process = Job.start(python, pythonpath, video_args(job, settings), folder)
  self.status = self:prefix() .. "starting realscale..."
  return self
end

function Session:prefix()
  return "Clip 1 of 1 (" .. self.job.name .. "): "
end

function Session:cancel()
  self.cancelled = true
  if self.process then
    self.process:cancel()
  end
end

function Session:event(event)
  local job = self.job
  local kind = event.event
  if kind == "start" then
    local frames = truncate(event.frames or job.count)
    if not job.whole and frames < job.left + job.used then
      job.error = basename(job.path) .. " has only " .. frames .. " frames from frame "
                  .. job.first .. "; Resolve expected " .. (job.left + job.used)
      self.process:cancel()
    end
    job.count = frames
  elseif kind == "progress" then
    local done, total = truncate(event.done or 0), truncate(event.total or job.count)
    local left = ""
    if tonumber(event.eta) then
      left = " - about " .. clock(tonumber(event.eta)) .. " left"
    end
    self.status = string.format("%sframe %d of %d - %.2f fps%s", self:prefix(), done, total,
                                tonumber(event.fps) or 0, left)
  elseif kind == "done" then
    job.output = tostring(event.output or job.output)
    local width, height = resolution(job.media)
    local seconds, frames = tonumber(event.seconds) or 0, tonumber(event.frames) or 0
    if width and height and seconds > 0 and frames > 0 then
      local settings = self.settings
      self.rates[rate_key(settings.model, settings.device, settings.precision)] = {
        pixels_per_second = frames * width * height / seconds, from = "run"}
    end
  elseif kind == "error" or kind == "cancelled" then
    job.error = job.error or tostring(event.message or "realscale failed")
  end
end

function Session:step()
  if self.finished then
    return
  end
  local process = self.process
  for _, event in ipairs(process:events()) do
    self:event(event)
  end
  local code = process:exit_code()
  if code == nil then
    process:heartbeat()
    if process:never_started() then
      self:finish("realscale's Python did not start; run `realscale install resolve` again")
    elseif process.cancel_time and os.time() - process.cancel_time > STOP_TIMEOUT then
      self:finish("realscale did not stop; its files " .. process.base .. ".* may remain")
    end
    return
  end
  for _, event in ipairs(process:events()) do
    self:event(event)
  end
  local job = self.job
  if code ~= 0 then
    if self.cancelled then
      self:finish()
    else
      self:finish(job.error or process:error_text()
                  or ("realscale stopped with exit status " .. code))
    end
    return
  end
  if self.cancelled then
    os.remove(job.output)  -- finished just as it was cancelled: cancel wins
    self:finish()
    return
  end
  local ok, placed = protect(self.placer.place, self.placer, job)
  if ok then
    job.placed = placed
    self:finish()
  else
    self:finish(placed)
  end
end

-- Ends the session: the job's files go, the status says what happened.
function Session:finish(error_text)
  local job = self.job
  self.process:remove_files()
  self.finished = true
  local lines = {}
  if self.cancelled then
    lines[1] = "Cancelled."
  end
  if job.placed then
    lines[#lines + 1] = job.name .. ": upscaled, " .. job.placed .. "."
  elseif error_text or (job.error and not self.cancelled) then
    job.error = error_text or job.error
    lines[#lines + 1] = job.name .. ": " .. job.error:gsub("%.$", "") .. "."
  else
    lines[#lines + 1] = job.name .. ": not done (cancelled)."
  end
  self.status = table.concat(lines, "\n")
end

-- ---------------------------------------------------------------------------------------------
-- The dialog (Fusion UIManager)

local INPUTS = {"Model", "Device", "Precision", "Scale", "Codec", "Temporal", "Handles",
                "Folder"}

local function describe(project, timeline)
  local ok, job = protect(find_target, project, timeline, 0)
  if ok then
    return job.name .. " (" .. job.source .. ")"
  end
  return job
end

local function index_of(entries, wanted)
  for index, entry in ipairs(entries) do
    if entry == wanted then
      return index - 1
    end
  end
end

-- {text, name} for the model list: by purpose ("Photos and real-world images:
-- realesrgan-x4plus"), a download's weight said, the default first within its purpose.
local function model_entries(models)
  local ranked = {}
  for _, model in ipairs(models) do
    if type(model) == "table" and type(model.name) == "string" then
      local rank = (index_of(PURPOSES, model.purpose) or #PURPOSES) + 1
      ranked[#ranked + 1] = {rank = rank, default = model.default == true, model = model}
    end
  end
  table.sort(ranked, function(a, b)
    if a.rank ~= b.rank then
      return a.rank < b.rank
    elseif a.default ~= b.default then
      return a.default
    end
    return a.model.name < b.model.name
  end)
  local entries = {}
  for _, entry in ipairs(ranked) do
    local model = entry.model
    local text = model.name
    if type(model.purpose_label) == "string" and model.purpose_label ~= "" then
      text = model.purpose_label .. ": " .. model.name
    end
    local size = tonumber(model.download_bytes)
    if size and size > 0 then
      text = text .. string.format(" (download, %.0f MB)", size / 1e6)
    end
    entries[#entries + 1] = {text, model.name}
  end
  return entries
end

-- {text, device} for the device list: each device the worker reported, a GPU with its free
-- memory; none reported: "auto" alone.
local function device_entries(devices)
  local entries = {}
  for _, device in ipairs(devices or {}) do
    if type(device) == "table" and type(device.name) == "string" then
      local text = tostring(device.label or device.name)
      local free = tonumber(device.free_bytes)
      if free and device.kind ~= "cpu" then
        text = text .. string.format(" (%.1f GB free)", free / 2 ^ 30)
      end
      entries[#entries + 1] = {text, device}
    end
  end
  if #entries == 0 then
    entries[1] = {"Automatic (the best this machine has)", {name = "auto"}}
  end
  return entries
end

-- Puts the remembered choices back; anything unknown or malformed keeps its default.
local function restore(items, values)
  local scale = index_of(SCALES, values.scale)
  if scale then
    items.Scale.CurrentIndex = scale
  end
  local names = {}
  for index, codec in ipairs(CODECS) do
    names[index] = codec[1]
  end
  local codec = index_of(names, values.codec)
  if codec then
    items.Codec.CurrentIndex = codec
  end
  local handles = tonumber(values.handles)
  if handles and handles >= 0 and handles <= 240 and handles == math.floor(handles) then
    items.Handles.Value = handles
  end
  if type(values.folder) == "string" then
    items.Folder.Text = values.folder
  end
  items.Temporal.Checked = values.temporal == true
end

local function run_dialog(ui, disp, project, timeline)
  local function row(label, widget)
    return ui:HGroup{Weight = 0, ui:Label{Text = label, Weight = 0.25}, widget}
  end
  local win = disp:AddWindow({ID = "RealscaleWindow", WindowTitle = TITLE,
                              Geometry = {300, 200, 640, 480}}, ui:VGroup{
    row("Clip", ui:Label{ID = "Target", Text = describe(project, timeline), WordWrap = true,
                         Weight = 0.75}),
    row("Model", ui:ComboBox{ID = "Model", Editable = true, Weight = 0.75}),
    row("Device", ui:ComboBox{ID = "Device", Weight = 0.75}),
    row("Precision", ui:ComboBox{ID = "Precision", Weight = 0.75}),
    row("", ui:Label{ID = "PrecisionNote", Text = "", WordWrap = true, Weight = 0.75}),
    row("Scale", ui:ComboBox{ID = "Scale", Weight = 0.75}),
    row("Result", ui:Label{ID = "Estimate", Text = "", WordWrap = true, Weight = 0.75}),
    row("Codec", ui:ComboBox{ID = "Codec", Weight = 0.75}),
    row("", ui:CheckBox{ID = "Temporal", Text = TEMPORAL_TEXT, ToolTip = TEMPORAL_TIP,
                        Weight = 0.75}),
    row("Handle frames", ui:SpinBox{ID = "Handles", Minimum = 0, Maximum = 240,
                                    Value = DEFAULT_HANDLES, Weight = 0.75}),
    row("Output folder", ui:LineEdit{ID = "Folder", Weight = 0.75,
                                     PlaceholderText = "a 'realscale' folder beside the source"}),
    ui:Label{ID = "Status", Text = "", WordWrap = true, Weight = 1},
    ui:HGroup{Weight = 0, ui:Button{ID = "Go", Text = "Upscale"},
              ui:Button{ID = "Close", Text = "Close"}},
  })
  local items = win:GetItems()
  items.Scale:AddItems(SCALES)
  local labels = {}
  for index, codec in ipairs(CODECS) do
    labels[index] = codec[2]
  end
  items.Codec:AddItems(labels)
  local remembered = load_remembered()
  restore(items, remembered)

  local state = {session = nil, busy = false, closing = false, filling = false,
                 asker = nil, asking = nil, asked = {}, rates = {},
                 models = {}, devices = device_entries({})}
  for _, name in ipairs(MODELS) do
    state.models[#state.models + 1] = {name, name}
  end
  if type(remembered.rates) == "table" then
    for key, rate in pairs(remembered.rates) do
      if type(rate) == "table" and tonumber(rate.pixels_per_second) then
        state.rates[key] = rate
      end
    end
  end
  local timer = ui:Timer{ID = "RealscaleTick", Interval = TICK_MS}

  local function show(text)
    items.Status.Text = text
  end

  local function model_name()
    local text = trim(items.Model.CurrentText)
    for _, entry in ipairs(state.models) do
      if entry[1] == text then
        return entry[2]
      end
    end
    return text ~= "" and text or MODELS[1]
  end

  local function device()
    local entry = state.devices[truncate(items.Device.CurrentIndex) + 1] or state.devices[1]
    return entry[2]
  end

  local function precision()
    local fast = device().fast
    if tostring(items.Precision.CurrentText) == "Fast" and type(fast) == "string" then
      return fast
    end
    return "fp32"
  end

  local function fill_precision(wanted)
    local fast = device().fast
    local before = wanted or precision()
    items.Precision:Clear()
    if type(fast) == "string" then
      items.Precision:AddItems({"Exact", "Fast"})
      items.Precision.CurrentIndex = before == fast and 1 or 0
      items.PrecisionNote.Text = string.format(FAST_COST, fast)
    else
      items.Precision:AddItems({"Exact"})
      items.Precision.CurrentIndex = 0
      items.PrecisionNote.Text = device().name ~= "auto" and NO_FAST or ""
    end
  end

  -- (Re)fills the model and device lists, keeping or restoring `wanted`'s choices.
  local function fill_lists(wanted)
    state.filling = true
    for _, pair in ipairs({{items.Model, state.models}, {items.Device, state.devices}}) do
      local texts = {}
      for index, entry in ipairs(pair[2]) do
        texts[index] = entry[1]
      end
      pair[1]:Clear()
      pair[1]:AddItems(texts)
    end
    if type(wanted.model) == "string" and trim(wanted.model) ~= "" then
      local text = wanted.model
      for _, entry in ipairs(state.models) do
        if entry[2] == wanted.model then
          text = entry[1]
        end
      end
      items.Model.CurrentText = text
    end
    local chosen, gpu
    for index, entry in ipairs(state.devices) do
      if entry[2].name == wanted.device then
        chosen = index - 1
      elseif not gpu and entry[2].kind and entry[2].kind ~= "cpu" then
        gpu = index - 1
      end
    end
    items.Device.CurrentIndex = chosen or gpu or 0
    fill_precision(wanted.precision)
    state.filling = false
  end

  local function settings()
    local codec = CODECS[truncate(items.Codec.CurrentIndex) + 1] or CODECS[1]
    return {
      model = model_name(), scale = tostring(items.Scale.CurrentText),
      codec = codec[1], handles = truncate(items.Handles.Value),
      folder = trim(items.Folder.Text), temporal = items.Temporal.Checked == true,
      device = tostring(device().name), precision = precision(),
    }
  end

  local function ask(request, kind)
    if state.asker or state.busy then
      return
    end
    local ok, python, pythonpath = protect(core_python)
    if not ok then
      state.asked.facts = true
      return
    end
    local started, asker = protect(Job.ask, python, pythonpath, request)
    if started then
      state.asker, state.asking = asker, kind
    end
  end

  local function estimate(values)
    local ok, job = protect(find_target, project, timeline, values.handles)
    if not ok then
      return job .. "."
    end
    local width, height = resolution(job.media)
    if not width or not height then
      return job.count .. " frames"
    end
    local factor = tonumber(values.scale) or 1
    local out_w, out_h = round(width * factor), round(height * factor)
    local text = string.format("%d x %d -> %d x %d px, %d frames", width, height, out_w, out_h,
                               job.count)
    local rate = state.rates[rate_key(values.model, values.device, values.precision)]
    if rate then
      local seconds = job.count * width * height / tonumber(rate.pixels_per_second)
      local source = rate.from == "run" and "from your last run"
                     or "measured on this device; encoding adds to it"
      text = text .. "; about " .. clock(seconds) .. " (" .. source .. ")"
    elseif state.asking == "measure" then
      text = text .. "; timing this device..."
    end
    if out_w > FREE_LIMIT[1] or out_h > FREE_LIMIT[2] then
      text = text .. string.format(". Larger than UHD (%d x %d): Resolve's free edition "
                                   .. "works up to that size and scales it down",
                                   FREE_LIMIT[1], FREE_LIMIT[2])
    end
    return text
  end

  -- Shows what the choices give; asks for a rate the dialog does not know yet.
  local function refresh()
    if state.filling or state.busy then
      return
    end
    if state.asking == "facts" then
      items.Estimate.Text = "Asking realscale for its models and devices..."
      return
    end
    local values = settings()
    local key = rate_key(values.model, values.device, values.precision)
    local known = false
    for _, entry in ipairs(state.models) do
      known = known or entry[2] == values.model
    end
    if not state.rates[key] and not state.asked[key] and state.asked.facts and known then
      state.asked[key] = true
      ask({measure = {model = values.model, device = values.device,
                      precision = values.precision}}, "measure")
    end
    items.Estimate.Text = estimate(values)
  end

  local function answered(answer)
    if answer.answer == "facts" then
      local models = model_entries(list(answer.models))
      if #models > 0 then
        state.models = models
      end
      state.devices = device_entries(list(answer.devices))
      local wanted = {}
      for key, value in pairs(remembered) do
        wanted[key] = value
      end
      wanted.model = model_name()
      fill_lists(wanted)
    elseif answer.answer == "measure" and type(answer.asked) == "table"
        and tonumber(answer.pixels_per_second) then
      local asked = answer.asked
      state.rates[rate_key(tostring(asked.model), tostring(asked.device),
                           tostring(asked.precision))] = {
        pixels_per_second = tonumber(answer.pixels_per_second), from = "measured"}
    end
  end

  -- Reads the asker's answers; once it ended, its files go.
  local function poll_asker()
    local asker = state.asker
    if not asker then
      return
    end
    for _, answer in ipairs(asker:events()) do
      if not asker.cancel_time then
        answered(answer)
      end
    end
    local code = asker:exit_code()
    local stuck = asker:never_started()
    if code == nil and not stuck then
      asker:heartbeat()
      return
    end
    asker:remove_files()
    if state.asking == "facts" then
      state.asked.facts = true
    end
    state.asker, state.asking = nil, nil
    refresh()
  end

  local function set_busy(busy)
    state.busy = busy
    for _, key in ipairs(INPUTS) do
      items[key].Enabled = not busy
    end
    items.Go.Text = busy and "Cancel" or "Upscale"
  end

  local function tick()
    poll_asker()
    local session = state.session
    if not session or not state.busy then
      if state.closing and not state.asker then
        timer:Stop()
        disp:ExitLoop()
      end
      return
    end
    local ok, message = protect(session.step, session)
    if not ok then
      session:cancel()
      session.finished = true
      session.status = "Error: " .. message
      pcall(session.process.remove_files, session.process)
    end
    show((session.cancelled and not session.finished) and "Cancelling..." or session.status)
    if session.finished then
      set_busy(false)
      for key, rate in pairs(session.rates or {}) do
        state.rates[key] = rate
      end
      save_remembered({rates = state.rates})
      if state.closing and not state.asker then
        timer:Stop()
        disp:ExitLoop()
      end
      refresh()
    end
  end

  local function go()
    if state.busy then
      if state.session then
        state.session:cancel()
      end
      show("Cancelling...")
      return
    end
    local values = settings()
    local saved = {rates = state.rates}
    for key, value in pairs(values) do
      saved[key] = value
    end
    save_remembered(saved)
    items.Target.Text = describe(project, timeline)
    local ok, session = protect(Session.start, project, timeline, values)
    if not ok then
      show("Error: " .. session:gsub("%.$", "") .. ".")
      return
    end
    if state.asker then  -- the job's own model load comes first
      state.asker:cancel()
    end
    state.session = session
    set_busy(true)
    show(session.status)
  end

  local function close()
    -- Keep the loop running until realscale stopped and cleaned up; then leave.
    state.closing = true
    if state.asker then
      state.asker:cancel()
    end
    if state.busy and state.session then
      state.session:cancel()
      show("Cancelling...")
      return
    end
    if not state.asker then
      timer:Stop()
      disp:ExitLoop()
    end
  end

  local function changed(event)
    if state.filling then
      return
    end
    if type(event) == "table" and event.who == "Device" then
      state.filling = true
      fill_precision(nil)
      state.filling = false
    end
    refresh()
  end

  win.On.Go.Clicked = function() go() end
  win.On.Close.Clicked = function() close() end
  win.On.RealscaleWindow.Close = function() close() end
  for _, key in ipairs({"Model", "Device", "Precision", "Scale"}) do
    win.On[key].CurrentIndexChanged = function(event) changed(event) end
  end
  win.On.Model.EditTextChanged = function(event) changed(event) end
  win.On.Handles.ValueChanged = function(event) changed(event) end
  -- Timer events reach the window in some Resolve versions and the dispatcher in others;
  -- tick does nothing more when called twice.
  win.On.RealscaleTick.Timeout = function() tick() end
  disp.On.Timeout = function() tick() end

  fill_lists(remembered)
  ask({facts = true}, "facts")
  refresh()
  timer:Start()
  win:Show()
  disp:RunLoop()
  win:Hide()
  return state.session
end

local function show_message(ui, disp, text)
  print(TITLE .. ": " .. text)
  if not disp then
    return
  end
  local win = disp:AddWindow({ID = "RealscaleMessage", WindowTitle = TITLE,
                              Geometry = {320, 240, 420, 120}}, ui:VGroup{
    ui:Label{ID = "Message", Text = text, WordWrap = true},
    ui:Button{ID = "OK", Text = "OK"},
  })
  win.On.OK.Clicked = function() disp:ExitLoop() end
  win.On.RealscaleMessage.Close = function() disp:ExitLoop() end
  win:Show()
  disp:RunLoop()
  win:Hide()
end

-- ---------------------------------------------------------------------------------------------
-- First use: setting the engine up from inside Resolve (and updating one of another protocol).
-- realscale_setup.py (beside realscale's wheel in Fusion/Modules/realscale) runs through the
-- job runner, started with a Python this script finds; realscale_setup finds the Python 3.10+
-- for the engine itself.

local SETUP_TITLE = "Set up Real-ESRGAN"
local SETUP_EXTRAS = "video"
local UPDATE_BUTTON = "Update the engine"
local SETUP_KILL_AFTER = 120  -- seconds a cancelled set-up gets to remove what it made
local NO_PYTHON = "No Python was found on this computer: install Python 3.10 or newer from "
  .. "python.org (on Windows tick \"Add python.exe to PATH\"), then run this script again."

-- Why the engine must be set up (no config, or its Python gone), else nil.
local function engine_missing()
  local path = config_path()
  local text = read_file(path)
  if not text then
    return "realscale's engine is not set up (" .. path .. " is missing)"
  end
  local config = json_decode(text)
  if type(config) == "table" and type(config.python) == "string" and config.python ~= ""
      and not exists(config.python) then
    return "realscale's Python " .. config.python .. " does not exist any more"
  end
  return nil
end

-- realscale_setup.py of the Fusion folder this script lies in, else of Resolve's per-user one.
local function setup_script()
  local candidates = {}
  local source = debug and debug.getinfo and debug.getinfo(1, "S").source or ""
  if source:sub(1, 1) == "@" and is_absolute(source:sub(2)) then
    local fusion = dirname(dirname(dirname(source:sub(2))))  -- .../Fusion/Scripts/Edit/x.lua
    candidates[1] = join(join(join(fusion, "Modules"), "realscale"), "realscale_setup.py")
  end
  candidates[#candidates + 1] = default_setup_script()
  for _, path in ipairs(candidates) do
    if exists(path) then
      return path
    end
  end
  return nil
end

-- The lines a short command prints (it runs to its end: only for quick questions). Through a
-- file, not io.popen: the Lua 5.1 a runtime is built with may lack popen ("'popen' not
-- supported"), os.execute is always there.
local function command_lines(command)
  local out = join(temp_folder(), "realscale-probe-" .. os.time() .. "-"
                   .. math.random(100000, 999999) .. ".txt")
  if WINDOWS then
    -- cmd.exe /c keeps a line's own quotes only when the whole line is quoted once more
    os.execute('"' .. command .. " >" .. shell_quote(out) .. ' 2>NUL"')
  else
    os.execute(command .. " >" .. shell_quote(out) .. " 2>/dev/null </dev/null")
  end
  local text = read_file(out) or ""
  os.remove(out)
  local lines = {}
  for line in text:gmatch("[^\r\n]+") do
    lines[#lines + 1] = trim(line)
  end
  return lines
end

-- A Python to run realscale_setup.py with: the shell's python3 or python (Windows: the py
-- launcher's Python 3, then python); nil when there is none.
local function find_python()
  if WINDOWS then
    for _, launcher in ipairs({"py -3", "python"}) do
      local command = launcher .. ' -c "import sys; print(sys.executable)"'
      for _, line in ipairs(command_lines(command)) do
        if is_absolute(line) and exists(line) then
          return line
        end
      end
    end
    return nil
  end
  for _, line in ipairs(command_lines("command -v python3 python")) do
    if is_absolute(line) and exists(line) then
      return line
    end
  end
  return nil
end

-- The last line of realscale_setup.py ACTION's output that is a JSON object with KEY (its
-- answer is one JSON line); nil when it cannot run.
local function setup_answer(python, script, action, key)
  local lines = command_lines(shell_quote(python) .. " -I " .. shell_quote(script) .. " "
                              .. action)
  for index = #lines, 1, -1 do
    local answer = json_decode(lines[index])
    if type(answer) == "table" and answer[key] ~= nil then
      return answer
    end
  end
  return nil
end

-- What realscale_setup.py's detect() found (`plan`: one JSON line); nil when it cannot run.
local function setup_plan(python, script)
  local plan = setup_answer(python, script, "plan", "backends")
  return plan and type(plan.backends) == "table" and plan or nil
end

-- The engine the plug-in set up, when it speaks another protocol than this script (`outdated`:
-- its message says so and what to do); nil when it does not or this cannot be asked.
local function setup_outdated(python, script)
  local answer = setup_answer(python, script, "outdated", "outdated")
  if answer and answer.outdated == true and type(answer.message) == "string" then
    return answer
  end
  return nil
end

-- The set-up through the job runner: realscale_setup.py's JSON progress lines are its events,
-- a cancel reaches it as "cancel" on its standard input.
function Job.setup(python, script, args)
  for _, arg in ipairs(args) do
    if arg:find("[\r\n]") then
      fail("the path " .. arg .. " holds a line break; choose another folder")
    end
  end
  return begin_job("setup", python, json_encode({script = script, args = args,
                                                 kill_after = SETUP_KILL_AFTER}))
end

-- How big the engine with this backend and ffmpeg and OpenCV for video is.
local function engine_size(backend)
  for _, extra in ipairs(list(backend.extras)) do
    if extra == "torch" then
      return tostring(backend.size_text) .. " (PyTorch), plus about 340 MB for ffmpeg and "
             .. "OpenCV (video)"
    end
  end
  return "about 610 MB (the engine on ONNX Runtime about 270 MB, ffmpeg and OpenCV for video "
         .. "about 340 MB)"
end

local function progress_text(event)
  local text = tostring(event.label or event.phase or "")
  if type(event.message) == "string" and event.message ~= "" then
    text = text .. ": " .. event.message
  end
  if tonumber(event.fraction) then
    text = text .. " (" .. math.floor(tonumber(event.fraction) * 100) .. "%)"
  end
  return text
end

-- The set-up window: what will be installed, the Python, the backend, the size, the folder
-- (changeable); then the phases with Cancel. With ``update`` (realscale_setup.py outdated's
-- answer: an engine the plug-in set up that speaks another protocol) instead: why, its
-- folder and "Update the engine", which runs realscale_setup.py update. True once the engine
-- answered and its config is written (the upscale dialog opens next).
local function run_setup(ui, disp, python, script, plan, reason, update)
  local function row(label, widget)
    return ui:HGroup{Weight = 0, ui:Label{Text = label, Weight = 0.2}, widget}
  end
  local intro, rows, button
  if update then
    intro = update.message .. "\n\nThe script cannot use this engine until it is updated; "
      .. "the update keeps its folder and backend, and the engine in use keeps working until "
      .. "the new one answers."
    rows = {row("Folder", ui:Label{ID = "Folder", Text = tostring(update.folder or ""),
                                   WordWrap = true, Weight = 0.8})}
    button = UPDATE_BUTTON
  else
    intro = reason .. ".\n\nThis script can set up realscale's engine now: realscale "
      .. tostring(plan.version or "?") .. " (the version this script came with) with ffmpeg "
      .. "and OpenCV for video, and its dependencies, from the package index pip is "
      .. "configured for, in a Python environment of its own. Nothing else on the computer "
      .. "changes."
    local found = plan.python or (plan.uv and "none found; uv will fetch Python 3.12"
                                  or "none found")
    rows = {
      row("Python", ui:Label{ID = "Python", Text = tostring(found), WordWrap = true,
                             Weight = 0.8}),
      row("Backend", ui:ComboBox{ID = "Backend", Weight = 0.8}),
      row("Size", ui:Label{ID = "Size", Text = "", WordWrap = true, Weight = 0.8}),
      row("Folder", ui:LineEdit{ID = "Folder", Text = tostring(plan.folder or ""),
                                Weight = 0.8}),
    }
    button = "Set up"
  end
  local layout = {ui:Label{ID = "Intro", Text = intro, WordWrap = true, Weight = 0}}
  for _, widget in ipairs(rows) do
    layout[#layout + 1] = widget
  end
  layout[#layout + 1] = ui:Label{ID = "Problem", Text = "", WordWrap = true, Weight = 0}
  layout[#layout + 1] = ui:Label{ID = "Progress", Text = "", WordWrap = true, Weight = 1}
  layout[#layout + 1] = ui:HGroup{Weight = 0, ui:Button{ID = "Install", Text = button},
                                  ui:Button{ID = "Cancel", Text = "Cancel"}}
  local win = disp:AddWindow({ID = "RealscaleSetup", WindowTitle = SETUP_TITLE,
                              Geometry = {320, 220, 620, 360}}, ui:VGroup(layout))
  local items = win:GetItems()
  local backends = update and {} or list(plan.backends)
  local labels, chosen = {}, 0
  for index, backend in ipairs(backends) do
    labels[index] = tostring(backend.label) .. (backend.recommended and " (recommended)" or "")
    if backend.recommended then
      chosen = index - 1
    end
  end
  if not update then
    items.Backend:AddItems(labels)
    items.Backend.CurrentIndex = chosen
  end
  local state = {phase = "offer", job = nil, closing = false, text = nil, result = nil}
  local timer = ui:Timer{ID = "RealscaleSetupTick", Interval = TICK_MS}

  local function backend()
    if update then
      return nil
    end
    return backends[truncate(items.Backend.CurrentIndex) + 1] or backends[1]
  end

  local function on_backend()
    local current = backend()
    if not update then
      items.Size.Text = current and engine_size(current) or ""
    end
  end

  local function finish()
    timer:Stop()
    disp:ExitLoop()
  end

  local function read_events(job)
    for _, event in ipairs(job:events()) do
      if event.event == "progress" then
        state.text = progress_text(event)
        if not job.cancel_time then
          items.Progress.Text = state.text  -- each phase, even one shorter than a tick
        end
      elseif event.event == "result" then
        state.result = event
      end
    end
  end

  local function ended(job, code)
    read_events(job)  -- the last lines, written before the exit status
    local result = state.result
    local reason_text = job:error_text()
    job:remove_files()
    state.job = nil
    if result and result.ok == true and code == 0 then
      state.phase = "done"
      items.Progress.Text = tostring(result.message or "")
      finish()
      return
    end
    state.phase = "ended"
    if (result and result.cancelled == true) or job.cancel_time then
      items.Progress.Text = "Cancelled: nothing was installed and nothing changed."
    else
      local message
      if result and type(result.message) == "string" then
        message = result.message
        if type(result.log) == "string" and not message:find(result.log, 1, true) then
          message = message .. " The full log is in " .. result.log .. "."
        end
      else
        message = "The set-up stopped unexpectedly (" .. (reason_text or "no reason given")
                  .. "); in a terminal run "
                  .. setup_command(script, update and "update" or nil)
                  .. ", then run this script again."
      end
      items.Progress.Text = ""
      items.Problem.Text = message
    end
    items.Cancel.Text = "Close"
    if state.closing then
      finish()
    end
  end

  local function tick()
    local job = state.job
    if state.phase ~= "running" or not job then
      return
    end
    read_events(job)
    local code = job:exit_code()
    local stuck = job:never_started()
    local lost = job.cancel_time and os.time() - job.cancel_time > SETUP_KILL_AFTER + 30
    if code == nil and not stuck and not lost then
      job:heartbeat()
      if job.cancel_time then
        items.Progress.Text = "Cancelling..."
      elseif state.text then
        items.Progress.Text = state.text
      end
      return
    end
    ended(job, code)
  end

  local function install()
    if state.phase ~= "offer" then
      return
    end
    local args
    if update then
      args = {"update", "--progress", "json"}  -- same folder, backend and extras as before
    else
      local folder = trim(items.Folder.Text)
      if folder == "" then
        folder = tostring(plan.folder)
      end
      args = {"install", "--folder", folder, "--extras", SETUP_EXTRAS, "--progress", "json"}
      local current = backend()
      if current then
        args[#args + 1] = "--backend"
        args[#args + 1] = tostring(current.name)
      end
    end
    local ok, job = protect(Job.setup, python, script, args)
    if not ok then
      items.Problem.Text = job:gsub("%.$", "") .. "."
      return
    end
    state.job, state.phase = job, "running"
    for _, key in ipairs(update and {"Install"} or {"Backend", "Folder", "Install"}) do
      items[key].Enabled = false
    end
    items.Problem.Text = ""
    items.Progress.Text = update and "Starting the update..." or "Starting the set-up..."
    timer:Start()
  end

  local function cancel()
    if state.phase == "running" and state.job then
      state.job:cancel()
      items.Progress.Text = "Cancelling..."
      return
    end
    finish()
  end

  local function close()
    -- Keep the loop running until the set-up stopped and removed what it made; then leave.
    state.closing = true
    cancel()
  end

  on_backend()
  if not update and type(plan.problem) == "string" and plan.problem ~= "" then
    items.Problem.Text = plan.problem
    items.Install.Enabled = false
  end
  win.On.Install.Clicked = function() install() end
  win.On.Cancel.Clicked = function() cancel() end
  win.On.RealscaleSetup.Close = function() close() end
  if not update then
    win.On.Backend.CurrentIndexChanged = function() on_backend() end
  end
  win.On.RealscaleSetupTick.Timeout = function() tick() end
  disp.On.Timeout = function() tick() end
  win:Show()
  disp:RunLoop()
  win:Hide()
  timer:Stop()
  return state.phase == "done"
end

-- Before the upscale dialog: with no engine, the set-up; with an engine the plug-in set up
-- that speaks another protocol, its update. False when the user closed that window or it did
-- not end with an engine (the script then ends); true otherwise, also where the set-up cannot
-- start from here (the dialog then names the terminal command, as before) and where whether
-- the engine is outdated cannot be asked (never a block: the dialog goes on as before).
local function prepare_engine(ui, disp)
  local reason = engine_missing()
  local script = setup_script()
  if not script then
    return true
  end
  if not reason then
    local python = find_python()
    local update = python and setup_outdated(python, script)
    if not update then
      return true
    end
    return run_setup(ui, disp, python, script, nil, nil, update)
  end
  local python = find_python()
  if not python then
    show_message(ui, disp, NO_PYTHON)
    return false
  end
  local plan = setup_plan(python, script)
  if not plan then
    show_message(ui, disp, reason .. ". The set-up could not start with " .. python
                 .. ": in a terminal run " .. setup_command(script)
                 .. " (Python 3.10 or newer), then run this script again.")
    return false
  end
  return run_setup(ui, disp, python, script, plan, reason)
end

-- ---------------------------------------------------------------------------------------------
-- Entry point

local function current_timeline(app)
  local project = app:GetProjectManager():GetCurrentProject()
  if not project then
    fail("open a project first")
  end
  local timeline = project:GetCurrentTimeline()
  if not timeline then
    fail("open a timeline first")
  end
  return project, timeline
end

local function main()
  math.randomseed(os.time())
  local app = resolve or (Resolve and Resolve())
  if not app then
    print(TITLE .. ": run this script from DaVinci Resolve's Workspace > Scripts menu")
    return
  end
  local host = fu or fusion or app:Fusion()
  local ui = host and host.UIManager
  local disp = ui and bmd and bmd.UIDispatcher(ui)
  local ok, project, timeline = protect(current_timeline, app)
  if not ok then
    show_message(ui, disp, project .. ".")
    return
  end
  if not disp then
    print(TITLE .. ": Resolve's UIManager is not available to this script")
    return
  end
  if not prepare_engine(ui, disp) then
    return
  end
  return run_dialog(ui, disp, project, timeline)
end

return main()
