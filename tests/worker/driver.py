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
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "plugins", "common"))

import realscale_client as rc  # noqa: E402


def _client(spec):
    if spec.get("config"):
        return rc.WorkerClient(config=spec["config"], host="gimp")
    return rc.WorkerClient(host="gimp")


def _job(client, job, **kwargs):
    with open(job["in"], "rb") as handle:
        data = handle.read()
    layout = rc.PixelLayout(job["channels"], job["depth"], job["order"])
    return client.upscale(data, job["width"], job["height"], layout,
                          model="realesr-animevideov3", tile=job.get("tile", 16),
                          scale=job.get("scale", 4.0), backend=job.get("backend", "auto"),
                          **kwargs)


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
