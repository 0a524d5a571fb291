"""Deferred PUBACKs for messages the broker sends us (MQTT flow control).

The uplink's paho client runs with ``manual_ack=True``: a QoS 1 message is
acknowledged only when its subscriber says so, so the broker keeps it (and,
with MQTT 5 Receive Maximum, stops sending more) until the agent has really
taken it in. Subscribers that do not defer (``Uplink.subscribe(...,
manual_ack=False)``) are acknowledged as soon as their handler returns, as
paho would have done.

The receive window is the client's, shared by all its subscriptions: a
deferred ack must come as soon as the message is taken in (the control
worker acks when it takes a command, not when it has run it), or it holds
back everything else the broker has for this client.

Any thread may call an ack; only the uplink thread (which owns the socket)
sends it, in ``flush``. A message id only means something on the connection
that delivered it, so acks from an earlier connection are dropped: with a
clean session the broker has already forgotten that message, and the same
id may now name another one.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

# At most this many QoS 1 commands unacknowledged at the broker (MQTT 5
# CONNECT Receive Maximum). Over MQTT 3.1.1 the broker's own limit plays this
# part (Mosquitto's max_inflight_messages, 20 by default).
RECEIVE_MAXIMUM = 32

Ack = Callable[[], None]


class InboundAcks:
    def __init__(self, wake: Callable[[], None]):
        self._wake = wake
        self._lock = threading.Lock()
        self._connection = 0
        self._due: collections.deque[tuple[int, int, int]] = collections.deque()

    def connected(self) -> None:
        """A new connection (uplink thread): acks owed on the old one are void."""
        with self._lock:
            self._connection += 1
            self._due.clear()

    def later(self, msg: mqtt.MQTTMessage) -> Ack:
        """An idempotent, thread-safe ack for ``msg``, to call once it is taken in."""
        if msg.qos == 0:
            return lambda: None
        with self._lock:
            connection = self._connection
        once = threading.Lock()  # taken once, never released: a second call does nothing

        def ack() -> None:
            if not once.acquire(blocking=False):
                return
            self._due.append((connection, msg.mid, msg.qos))
            self._wake()

        return ack

    def flush(self, client: mqtt.Client) -> None:
        """Send the acks that are due (uplink thread only)."""
        while self._due:
            connection, mid, qos = self._due.popleft()
            if connection == self._connection:
                client.ack(mid, qos)
