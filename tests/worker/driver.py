"""Plays a host: run by Debian's /usr/bin/python3 (no numpy, no torch), it imports the
stdlib-only client from plugins/common and drives a real worker through it.

Usage: python3 driver.py SCENARIO SPEC.json; prints one JSON object on stdout.
Kept to Python 3.8 syntax, like the client.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "plugins", "common"))

import realscale_client as rc  # noqa: E402


def _client(spec):
    options = {}
    if "cancel_timeout" in spec:
        options["cancel_timeout"] = spec["cancel_timeout"]
    if spec.get("config"):
        return rc.WorkerClient(config=spec["config"], host="gimp", **options)
    return rc.WorkerClient(host="gimp", **options)


def _job(client, job, **kwargs):
    with open(job["in"], "rb") as handle:
        data = handle.read()
    layout = rc.PixelLayout(job["channels"], job["depth"], job["order"])
    tile = job.get("tile", 16)
    if tile != "default":  # "default": the client's own default
        kwargs["tile"] = tile
    return client.upscale(data, job["width"], job["height"], layout,
                          model="realesr-animevideov3", scale=job.get("scale", 4.0),
                          backend=job.get("backend", "auto"), **kwargs)


def _error(exc):
    return {"class": type(exc).__name__, "message": str(exc)}


def upscale(spec):
    """Each job in turn; writes the results and reports progress events and pids."""
    client = _client(spec)
    reports = []
    for job in spec["jobs"]:
        events = []
        result = _job(client, job, progress=lambda done, total, seen=events: seen.append(
            [done, total]))
        with open(job["out"], "wb") as handle:
            handle.write(result.data)
        reports.append({"width": result.width, "height": result.height, "events": events,
                        "pid": client.pid, "type": type(result.data).__name__})
    loaded = client.status()["loaded"]
    client.close()
    return {"jobs": reports, "loaded": loaded}


def cancel(spec):
    """Cancel at the first progress event, then check the same worker still serves."""
    client = _client(spec)
    seen = []
    state = {"at": None}

    def progress(done, total):
        seen.append([done, total])
        if state["at"] is None:
            state["at"] = done

    started = time.monotonic()
    try:
        _job(client, spec["big"], progress=progress, cancel=lambda: state["at"] is not None)
        outcome = {"class": None}
    except rc.WorkerError as exc:
        outcome = _error(exc)
    outcome["seconds"] = time.monotonic() - started
    outcome["events"] = seen
    outcome["pid"] = client.pid
    after = _job(client, spec["small"])
    outcome["after"] = {"width": after.width, "pid": client.pid}
    client.close()
    return outcome


def kill(spec):
    """Kill the worker at the first progress event; the next call must start a new one."""
    client = _client(spec)

    def progress(done, total):
        if done == 1:
            os.kill(client.pid, signal.SIGKILL)

    first_pid = None
    try:
        client.models()
        first_pid = client.pid
        _job(client, spec["big"], progress=progress)
        outcome = {"class": None}
    except rc.WorkerError as exc:
        outcome = _error(exc)
    outcome["first_pid"] = first_pid
    after = _job(client, spec["small"])
    outcome["after"] = {"width": after.width, "pid": client.pid}
    client.close()
    return outcome


def hang(spec):
    """Stop the worker (SIGSTOP) at the first progress event and cancel: upscale() has to
    give up on it, and the next call has to be served (SIGCONT first when "resume")."""
    client = _client(spec)
    state = {"stopped": None}

    def progress(done, total):
        if state["stopped"] is None:
            state["stopped"] = client.pid
            os.kill(client.pid, signal.SIGSTOP)

    started = time.monotonic()
    try:
        _job(client, spec["big"], progress=progress, cancel=lambda: state["stopped"] is not None)
        outcome = {"class": None}
    except rc.WorkerError as exc:
        outcome = _error(exc)
    outcome["seconds"] = time.monotonic() - started
    outcome["stopped_pid"] = state["stopped"]
    try:
        os.kill(state["stopped"], 0)
        outcome["stopped_pid_exists"] = True
    except ProcessLookupError:
        outcome["stopped_pid_exists"] = False
    if spec.get("resume"):
        os.kill(state["stopped"], signal.SIGCONT)
    after = _job(client, spec["small"])
    outcome["after"] = {"width": after.width, "pid": client.pid}
    client.close()
    return outcome


def idle(spec):
    """Two calls with a pause between them longer than the worker's idle time-out."""
    client = _client(spec)
    first = client.models()
    conn = client._conn
    time.sleep(spec["sleep"])
    ended = conn.ended.is_set()
    second = client.models()
    outcome = {"counts": [len(first), len(second)], "ended": ended,
               "new_connection": client._conn is not conn, "pid": client.pid}
    client.close()
    return outcome


def close_rounds(spec):
    """Open, use and close a client a few times: threads and descriptors of this process
    before and after."""

    def counts():
        return [threading.active_count(), len(os.listdir("/proc/self/fd"))]

    before = counts()
    pids = []
    for _ in range(spec["rounds"]):
        client = _client(spec)
        client.models()
        pids.append(client.pid)
        client.close()
    return {"before": before, "after": counts(), "pids": pids}


def expect_error(spec):
    """Any call that should fail before reaching a worker: report the error."""
    client = _client(spec)
    try:
        if spec.get("job"):
            _job(client, spec["job"])
        else:
            client.models()
    except rc.WorkerError as exc:
        return _error(exc)
    finally:
        client.close()
    return {"class": None}


def dialog(spec):
    """What a host's dialog asks: the devices, measured speeds, the mistakes it can make
    (each error's class and kind), a cancelled measure, and a call after it."""
    client = _client(spec)
    model = spec["model"]
    outcome = {"devices": client.devices(), "auto": client.measure(model),
               "exact": client.measure(model, "cpu", "fp32")}
    pid = client.pid
    errors = {}
    for name, args in (("unknown", ["realesrgan-x4plu"]), ("half", [model, "cpu", "half"]),
                       ("fp16", [model, "cpu", "fp16"]), ("device", [model, "tpu"])):
        try:
            client.measure(*args)
            errors[name] = {"class": None}
        except rc.WorkerError as exc:
            errors[name] = dict(_error(exc), kind=exc.kind)
    outcome["errors"] = errors
    try:
        client.measure(model, "cpu", "fp32", cancel=lambda: True)
        outcome["cancelled"] = {"class": None}
    except rc.WorkerError as exc:
        outcome["cancelled"] = dict(_error(exc), kind=exc.kind)
    status = client.status()
    outcome["after"] = {"busy": status["busy"], "same_pid": client.pid == pid,
                        "devices": len(client.devices())}
    client.close()
    return outcome


def models(spec):
    client = _client(spec)
    try:
        return {"models": client.models(), "pid": client.pid}
    finally:
        client.close()


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as handle:
        arguments = json.load(handle)
    result = globals()[sys.argv[1]](arguments)
    result["python"] = sys.version_info[:2]
    result["imported"] = sorted(
        name for name in ("numpy", "torch", "realscale") if name in sys.modules)
    print(json.dumps(result))
