"""The control channel's queue: three lanes, so reads never crowd out actions.

- ``actions``: commands that change the post (arm, disarm, siren,
  acknowledge, set_config, restart); up to ``ACTIONS_MAX``, served first.
- ``refusals``: commands that found their lane full; each is answered
  ``busy`` (cheap) and only then acknowledged, so the broker can send the
  next message, which may be a disarm behind a flood of pings.
- ``reads``: ping, get_config, snapshot and unknown names; up to ``READS_MAX``,
  served when nothing else waits.

A command is PUBACKed (agent/inbound_acks.py) when the worker takes it out
of its lane, or once its ``busy`` answer is queued: never before the agent has
it, and never for one it then drops. Queued commands stay unacknowledged,
so the broker stops at its Receive Maximum (or its own in-flight limit over
MQTT 3.1.1) instead of the agent dropping what it was already given.
``READS_MAX`` stays well under both limits, so the broker always has room to
hand over the next action.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass

from shaobing.agent.command_replies import Incoming
from shaobing.agent.inbound_acks import Ack

log = logging.getLogger("shaobing.control")

READS = frozenset({"ping", "get_config", "snapshot"})
READS_MAX = 8
ACTIONS_MAX = 64
# A compliant broker never has more than its in-flight limit unacknowledged;
# past this a broker ignores it, and the command is dropped (logged, counted).
REFUSALS_MAX = 1024


@dataclass(frozen=True)
class Queued:
    item: Incoming
    ack: Ack
    busy: bool  # refused for load: answer `busy`, do not execute


class CommandLanes:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._actions: collections.deque[Queued] = collections.deque()
        self._refusals: collections.deque[Queued] = collections.deque()
        self._reads: collections.deque[Queued] = collections.deque()
        self._closed = False

    def offer(self, item: Incoming, ack: Ack) -> bool:
        """Network thread: never blocks; the command waits in a lane or is refused.

        False only when even the refusals lane is full (the command is dropped)."""
        command = item.topic.rsplit("/", 1)[-1]
        lane, limit = (self._reads, READS_MAX) if command in READS else (self._actions, ACTIONS_MAX)
        with self._cond:
            if len(lane) < limit:
                lane.append(Queued(item, ack, busy=False))
            elif len(self._refusals) < REFUSALS_MAX:
                self._refusals.append(Queued(item, ack, busy=True))
            else:
                log.error(
                    "broker ignores the in-flight limit; command dropped",
                    extra={"fields": {"topic": item.topic}},
                )
                ack()
                return False
            self._cond.notify()
        return True

    def take(self) -> Queued | None:
        """Worker: the next command, actions first; None once closed."""
        with self._cond:
            while not (self._closed or self._actions or self._refusals or self._reads):
                self._cond.wait()
            if self._closed:
                return None
            for lane in (self._actions, self._refusals, self._reads):
                if lane:
                    return lane.popleft()
        return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
