"""Named points where a crash test can freeze the agent, to SIGKILL it there.

A crash between two durable writes (say the command replay record and the
arm state) is what a crash test must reproduce, and a kill timed by the clock
lands there only by luck on a machine of unknown speed. So the process is
told where to stop: with ``SHAOBING_PAUSE_AT=<name>`` in its environment, the
thread that reaches ``pause_point(name)`` creates the file
``SHAOBING_PAUSE_FILE`` (if set) and blocks for ever; the test waits for the
file and SIGKILLs the process. The kill is real (a real ``shaobing run``, no
cleanup runs), only its moment is chosen. Without the variable (every
installation) a pause point is one dictionary lookup.

Points: ``command_started:{cmd}`` (the replay cache holds the id as
started, the command has not run), ``command_applied:{cmd}`` (its effect is
durable, its result not yet recorded); see agent/command_once.py.
``frame_committed:{scope}`` (a device frame's event is committed, its ACK
not yet sent; scope as ``contact_id:{id}``); see drivers/contact_id.py.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PAUSE_AT = "SHAOBING_PAUSE_AT"
PAUSE_FILE = "SHAOBING_PAUSE_FILE"


def pause_point(name: str) -> None:
    if os.environ.get(PAUSE_AT) != name:
        return
    marker = os.environ.get(PAUSE_FILE)
    if marker:
        Path(marker).write_text(name, encoding="utf-8")
    threading.Event().wait()  # until the test's SIGKILL
