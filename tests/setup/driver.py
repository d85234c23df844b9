"""Plays a host: run by Debian's /usr/bin/python3 in isolated mode (no numpy, no torch, no
realscale), it imports realscale_setup from a plug-in folder laid out like a release zip
and runs one job, polling it the way a dialog does.

Usage: python3 -I driver.py PLUGIN_DIR ACTION [FOLDER]; ACTION is install, update, remove
or info. Prints one JSON object on stdout: the result, every progress report (the callback)
and what polling saw (as a dialog's timer does).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

sys.path.insert(0, sys.argv[1])

import realscale_setup as setup  # noqa: E402


def main() -> None:
    action = sys.argv[2]
    if action == "info":
        print(json.dumps({"info": dataclasses.asdict(setup.engine_info())}))
        return
    if action == "install":
        plan = setup.detect(sys.argv[3])
        job = setup.install(plan)
    elif action == "update":
        job = setup.update()
    else:
        job = setup.remove()
    reported: list[dict] = []
    job.on_progress = lambda progress: reported.append(dataclasses.asdict(progress))
    job.start()
    seen: list[dict] = []
    while True:
        finished = job.done
        progress = dataclasses.asdict(job.progress())
        if not seen or seen[-1] != progress:
            seen.append(progress)
        if finished:
            break
        time.sleep(0.02)
    result = job.wait()
    assert result is not None
    print(json.dumps({"result": dataclasses.asdict(result), "polled": seen,
                      "progress": reported,
                      "modules": sorted(m for m in sys.modules if m.split(".")[0] in (
                          "numpy", "torch", "realscale"))}))


main()
