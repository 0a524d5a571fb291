"""The MQTT uplink: feeds paho from the outbox in a bounded window.

One thread, ``uplink``, owns the paho client: it connects with exponential
backoff and full jitter (tenacity), then runs paho's external-loop API
(``socket()``, ``loop_read/loop_write/loop_misc``) in its own ``select`` with
a wake-up socket, and between two reads it applies acknowledgements and
refills the window from the outbox. Nothing else touches the socket, so
messages go on the wire in the order they were handed over, and no lock or
GIL hand-off sits between reading a PUBACK and publishing the next message
(a second "pump" thread cost ~40% of paho's rate in lock traffic).

Other threads only: append rows to the outbox (the writer wakes us), call
``publish_direct`` (paho queues the packet; we are woken to write it), call
the ack of a message they took in (agent/inbound_acks.py; we send it), or
``stop``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from tenacity import Retrying, retry_if_exception_type

from shaobing.agent import link_words
from shaobing.agent import tls as tls_words
from shaobing.agent.config import MqttConfig
from shaobing.agent.inbound_acks import RECEIVE_MAXIMUM, Ack, InboundAcks
from shaobing.agent.outbox import Outbox, Row
from shaobing.agent.pacing import Endpoints, TokenBucket, first_retry_delay, reconnect_wait
from shaobing.agent.topics import Topics
from shaobing.core.events import Priority
from shaobing.core.watchdog import Heartbeat
from shaobing.core.worker import ThreadWorker

log = logging.getLogger("shaobing.uplink")

# An in-flight message with no PUBACK after this long, while connected, is
# handed to paho again (at-least-once: the platform drops the duplicate by id).
ACK_TIMEOUT_S = 60.0

# With nothing to read and nobody waking us, look at the clock this often
# (stale acks, keepalive, the replay bucket). Every append and publish wakes
# the thread at once; a short idle wake only costs CPU, 1,000-fold in a fleet.
IDLE_WAKE_S = 0.5


def _wait(read: list, want_write: bool, timeout: float) -> tuple[list, list]:
    """select() for ``read`` (and the first of them for writing), by poll(): a
    process with many uplinks (``shaobing fleet``) has descriptors past select's 1024."""
    poller = select.poll()
    for i, sock in enumerate(read):
        poller.register(sock, select.POLLIN | (select.POLLOUT if want_write and i == 0 else 0))
    by_fd = {sock.fileno(): sock for sock in read}
    readable, writable = [], []
    for fd, mask in poller.poll(timeout * 1000):
        if mask & (select.POLLIN | select.POLLERR | select.POLLHUP):
            readable.append(by_fd[fd])
        if mask & select.POLLOUT:
            writable.append(by_fd[fd])
    return readable, writable


@dataclass
class UplinkStats:
    connects: int = 0
    published: int = 0
    acked: int = 0
    refused: int = 0
    last_refusal: str | None = None
    connected_since: float | None = None
    endpoint: str | None = None  # the broker node of the current connection
    failovers: int = 0  # connections made to another node than the previous one
    inflight: int = 0
    by_class: dict[str, int] = field(default_factory=dict)


class Uplink:
    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        topics: Topics,
        outbox: Outbox,
        state_info: Callable[[], dict],
        correct_ts: Callable[[str, int], int | None] = lambda boot_id, mono_ns: None,
    ):
        self.config = config
        self.topics = topics
        self.outbox = outbox
        self.stats = UplinkStats()
        self.connected = threading.Event()
        self._state_info = state_info
        self._correct_ts = correct_ts
        # Status and snapshot backlog may fill at most this much of the window,
        # so a live alarm always finds room at once.
        self._low_window = max(1, self.config.inflight_window // 2)
        # Refill low classes in chunks: one query per few dozen acks, not per ack.
        self._refill_at = max(1, self.config.inflight_window // 8)
        self._low_inflight = 0
        self._stop = threading.Event()
        # Clean stop: `_closing` asks the uplink thread to say goodbye, `_closed`
        # is set once its DISCONNECT is on the wire (or the connection is gone).
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._goodbye: mqtt.MQTTMessageInfo | None = None
        self._disconnect_sent = False
        self._acks: collections.deque[tuple[int, bool, str]] = collections.deque()
        self._inflight: dict[int, tuple[Row, float]] = {}  # mid -> (row, sent at)
        self._inflight_rows: set[int] = set()
        self._retry: set[int] = set()  # rows handed to paho a second time: replays
        self._cursors: dict[Priority, int] = {}
        # A class the broker refuses (quota, ACL) is held back, doubling the
        # pause each time, so a refusing broker is not hammered in a loop.
        self._held_until: dict[Priority, float] = {}
        self._refusal_pause: dict[Priority, float] = {}
        self._subscriptions: dict[str, Callable[[mqtt.MQTTMessage], None]] = {}
        # Subscribers that acknowledge their messages themselves (flow control).
        self._deferring: dict[str, Callable[[mqtt.MQTTMessage, Ack], None]] = {}
        self._tls_error: str | None = None
        self._socket_error: str | None = None  # paho reports read errors only to on_log
        self._accepted = False  # CONNACK success on the current connection
        self._connack_refused = False  # a CONNACK refusal: paho's "Protocol error" follows
        self._client_id = client_id
        self._rng = random.Random()
        self._endpoints = Endpoints(config.endpoints(), self._rng)
        self._last_endpoint: str | None = None
        # Caps the status/snapshot lane: a night's backlog must not flatten the platform.
        self._replay_bucket = TokenBucket(config.replay_rate) if config.replay_rate else None
        # The uplink thread beats at least every 1 s (select and backoff sleep in
        # slices); 30 s without a beat means it is stuck.
        self.heartbeat = Heartbeat(30.0)
        self.worker = ThreadWorker(
            "uplink", self._network, self._stop, heartbeat=self.heartbeat, wake=self._kick
        )
        # Any thread wakes the uplink's select() by writing one byte here.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._inbound = InboundAcks(self._kick)
        self.client = self._make_client(client_id)
        self._urgent = threading.Event()
        outbox.on_append(self._appended)

    # ---- set-up -------------------------------------------------------
    def _make_client(self, client_id: str) -> mqtt.Client:
        v5 = self.config.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
            # A command is PUBACKed once the control channel has taken it in
            # (agent/inbound_acks.py); other subscriptions right after their handler.
            manual_ack=True,
        )
        # The outbox is the queue; paho only ever holds the window.
        client.max_inflight_messages_set(self.config.inflight_window)
        client.max_queued_messages_set(self.config.inflight_window * 2)
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password)
        if self.config.tls:
            for finding in tls_words.client_cert_findings(self.config.tls):
                log.warning(f"TLS: {finding}", extra={"fields": {"reason": finding}})
            try:
                client.tls_set_context(tls_words.client_context(self.config.tls))
            except tls_words.TlsSetupError as exc:
                # Never fall back to plain TCP: keep buffering and say why, every attempt.
                self._tls_error = str(exc)
                self.stats.last_refusal = self._tls_error
                log.error("TLS settings unusable", extra={"fields": {"reason": self._tls_error}})
        client.on_log = self._on_log
        client.will_set(self.topics.state, self._state_payload("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # Without this, publish() from another thread (a command worker, stop())
        # writes to the socket itself, racing the uplink thread's writes: two
        # threads popping paho's packet queue can put message N+1 on the wire
        # before N. With a write-registration callback set, publish() only
        # queues; the uplink thread, woken by _kick(), does every socket write.
        client.on_socket_register_write = lambda client, userdata, sock: None
        return client

    def subscribe(self, topic_filter: str, handler: Callable[[mqtt.MQTTMessage], None]) -> None:
        """Register before ``start()``; (re)subscribed on every connect.

        ``handler`` runs on the network thread: it must only validate and queue.
        """
        self._subscriptions[topic_filter] = handler

    def subscribe_deferred(
        self, topic_filter: str, handler: Callable[[mqtt.MQTTMessage, Ack], None]
    ) -> None:
        """As ``subscribe``, but a QoS 1 message is PUBACKed only when ``handler``
        (or whoever it hands the ack to, on any thread) calls the ack it is given."""
        self._deferring[topic_filter] = handler

    def publish_direct(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        properties: Properties | None = None,
        retain: bool = False,
    ) -> mqtt.MQTTMessageInfo:
        """Publish outside the outbox: replies that are worthless once the link is gone."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        self._kick()
        return info

    def _kick(self) -> None:
        """Wake the uplink thread (callable from any thread)."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        ack = self._inbound.later(msg)
        deferred = False
        plain = [(f, h, False) for f, h in self._subscriptions.items()]
        for topic_filter, handler, defers in plain + [
            (f, h, True) for f, h in self._deferring.items()
        ]:
            if not mqtt.topic_matches_sub(topic_filter, msg.topic):
                continue
            try:
                if defers:
                    handler(msg, ack)
                    deferred = True
                else:
                    handler(msg)
            except Exception:
                log.exception("subscription handler failed", extra={"fields": {"topic": msg.topic}})
        if not deferred:
            ack()  # as paho would have, after the handlers; a failed one gets no retry

    def _state_payload(self, state: str) -> bytes:
        body = {"v": 1, "state": state, "ts": int(time.time() * 1000), **self._state_info()}
        return json.dumps(body, ensure_ascii=False).encode()

    # ---- lifecycle ----------------------------------------------------
    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Say 'stopped' (retained) and disconnect cleanly so the will is not sent.

        The uplink thread does both (it owns the socket): it publishes `stopped`,
        sends DISCONNECT once the broker has acknowledged it, and keeps serving
        the socket until the DISCONNECT is written or ``timeout`` passes. Calling
        paho's ``disconnect()`` after the thread ended only queued the packet, so
        the broker saw a dropped connection and published the will (`offline`)."""
        if self.connected.is_set():
            self._closing.set()
            self._kick()
            self._closed.wait(timeout)
        self._stop.set()
        self._kick()
        self.worker.join(timeout)
        self._flush_acks()
        self._wake_r.close()
        self._wake_w.close()

    def _close_turn(self) -> None:
        """One step of the clean goodbye, run on the uplink thread."""
        if self._goodbye is None:
            self._goodbye = self.client.publish(
                self.topics.state, self._state_payload("stopped"), qos=1, retain=True
            )
        elif self._goodbye.is_published() and not self._disconnect_sent:
            self._disconnect_sent = True
            self.client.disconnect()

    def healthy(self) -> bool:
        return self.worker.is_running() and not self._stop.is_set() and self.heartbeat.alive()

    # ---- network thread ----------------------------------------------
    def _network(self) -> None:
        retrying = Retrying(
            wait=reconnect_wait(self.config),
            retry=retry_if_exception_type(OSError),
            stop=lambda _state: self._stop.is_set(),
            sleep=self._backoff_sleep,
            before_sleep=self._connect_failed,
            reraise=False,
        )
        while not self._stop.is_set():
            try:
                retrying(self._connect_once)
            except Exception:  # stop requested while waiting
                return
            if self._stop.is_set():
                return
            started = time.monotonic()
            self._serve()
            self.connected.clear()
            if self._closing.is_set():
                self._closed.set()
                return
            if self._stop.is_set():
                continue
            pause = first_retry_delay(self.config, self._rng)
            if time.monotonic() - started < 10:
                # A broker that accepts and then drops us must not be hammered.
                pause += self._rng.uniform(0, self.config.reconnect_min_s * 4)
            self._backoff_sleep(pause)

    def _backoff_sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self.heartbeat.beat()
            self._stop.wait(min(left, 1.0))

    def _connect_failed(self, state) -> None:
        node = self._endpoints.current
        error = state.outcome.exception()
        reason = link_words.explain_failure(
            error, self.config, node.host, node.port, in_handshake=True
        )
        self.stats.last_refusal = reason
        level = logging.ERROR if self.config.tls else logging.WARNING
        log.log(
            level,
            f"cannot connect to broker: {reason}",
            extra={
                "fields": {"attempt": state.attempt_number, "error": reason, "detail": str(error)}
            },
        )

    def _on_log(self, client, userdata, level, buf) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._socket_error = buf

    def _connect_once(self) -> None:
        if self._stop.is_set():
            return
        if self._tls_error:
            raise OSError(self._tls_error)
        self._accepted = False
        self._connack_refused = False
        self._socket_error = None
        cfg = self.config
        # Each attempt goes to the next node: a dead node costs one attempt.
        node = self._endpoints.advance()
        if cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            props.ReceiveMaximum = RECEIVE_MAXIMUM
            self.client.connect(node.host, node.port, cfg.keepalive_s, properties=props)
        else:
            self.client.connect(node.host, node.port, cfg.keepalive_s)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connack_refused = True
            self.stats.last_refusal = link_words.refused_login(str(reason_code), self._client_id)
            log.error(
                "broker refused connection",
                extra={"fields": {"reason": self.stats.last_refusal, "code": str(reason_code)}},
            )
            return
        self._accepted = True
        self.stats.connects += 1
        self.stats.connected_since = time.time()
        node = str(self._endpoints.current)
        if self._last_endpoint not in (None, node):
            self.stats.failovers += 1
        self._last_endpoint = self.stats.endpoint = node
        self._inbound.connected()
        client.publish(self.topics.state, self._state_payload("online"), qos=1, retain=True)
        for topic_filter in [*self._subscriptions, *self._deferring]:
            if self.config.protocol == "5":
                # noLocal: our own replies on .../cmd/response match .../cmd/+ too.
                client.subscribe(topic_filter, options=SubscribeOptions(qos=1, noLocal=True))
            else:
                client.subscribe(topic_filter, qos=1)
        self.connected.set()
        self._urgent.set()
        log.info("connected", extra={"fields": {"endpoint": node}})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.stats.connected_since = None
        if not self._accepted and not self._connack_refused and not self._stop.is_set():
            # With TLS 1.3 the broker judges our certificate after our side of
            # the handshake is done: its verdict arrives here, as a read error.
            node = self._endpoints.current
            detail = self._socket_error or str(reason_code)
            reason = link_words.explain_failure(
                detail, self.config, node.host, node.port, before_connack=True
            )
            self.stats.last_refusal = reason
            log.error(
                f"broker closed the connection before accepting it: {reason}",
                extra={"fields": {"reason": reason, "detail": detail}},
            )
            return
        level = logging.INFO if self._stop.is_set() else logging.WARNING
        log.log(level, "disconnected", extra={"fields": {"reason": str(reason_code)}})

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append((mid, not reason_code.is_failure, str(reason_code)))

    # ---- the connected loop ----------------------------------------------
    def _appended(self, urgent: bool) -> None:
        if urgent:
            self._urgent.set()
        self._kick()

    def _serve(self) -> None:
        """Serve one connection until it drops or stop() is called."""
        client = self.client
        sock = client.socket()
        stale_checked = 0.0
        while not self._stop.is_set() and sock is not None:
            self.heartbeat.beat()
            # TLS may hold decrypted bytes that select() cannot see.
            if getattr(sock, "pending", None) and sock.pending():
                readable, writable = [sock], []
            else:
                readable, writable = _wait([sock, self._wake_r], client.want_write(), IDLE_WAKE_S)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while self._wake_r.recv(4096):
                        pass
            if sock in readable and client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            if self._closing.is_set():
                self._close_turn()
            self._inbound.flush(client)
            try:
                self._flush_acks()
                if self.connected.is_set() and not self._closing.is_set():
                    if time.monotonic() - stale_checked > 1.0:
                        stale_checked = time.monotonic()
                        self._requeue_stale()
                    self._fill_window()
            except Exception:
                # Keep draining: one bad row or a transient sqlite error must not
                # end the only thread that empties the outbox.
                log.exception("uplink outbox error")
                self._stop.wait(1.0)
            if (sock in writable or client.want_write()) and (
                client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS
            ):
                return
            sock = client.socket()

    def _flush_acks(self) -> None:
        done: list[int] = []
        while self._acks:
            mid, ok, reason = self._acks.popleft()
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue  # a state message, not an outbox row
            row = entry[0]
            self._inflight_rows.discard(row.rowid)
            self._low_inflight -= row.priority >= Priority.STATUS
            if ok:
                done.append(row)
                self._retry.discard(row.rowid)
                self._refusal_pause.pop(row.priority, None)
                key = row.priority.name.lower()
                self.stats.by_class[key] = self.stats.by_class.get(key, 0) + 1
            else:
                self.stats.refused += 1
                self.stats.last_refusal = reason
                log.warning(
                    "broker refused message",
                    extra={"fields": {"reason": reason, "event_id": row.event_id}},
                )
                self._rewind(row)
                pause = min(self._refusal_pause.get(row.priority, 0.5) * 2, 60.0)
                self._refusal_pause[row.priority] = pause
                self._held_until[row.priority] = time.monotonic() + pause
        self.stats.acked += self.outbox.ack(done)
        self.stats.inflight = len(self._inflight)

    def _rewind(self, row: Row) -> None:
        if row.priority <= Priority.FAULT:
            self._urgent.set()
        self._retry.add(row.rowid)
        cursor = self._cursors.get(row.priority, 0)
        self._cursors[row.priority] = min(cursor, row.rowid - 1)

    def _requeue_stale(self) -> None:
        limit = time.monotonic() - ACK_TIMEOUT_S
        for mid, (row, sent) in list(self._inflight.items()):
            if sent < limit:
                del self._inflight[mid]
                self._inflight_rows.discard(row.rowid)
                self._low_inflight -= row.priority >= Priority.STATUS
                self._rewind(row)

    def _fill_window(self) -> None:
        room = self.config.inflight_window - len(self._inflight)
        if room <= 0:
            return
        now = time.monotonic()
        held = {p for p, until in self._held_until.items() if until > now}
        urgent = []
        if self._urgent.is_set() or not self._inflight:
            self._urgent.clear()
            urgent = self.outbox.next_rows(
                self._cursors, room, skip=held | {Priority.STATUS, Priority.SNAPSHOT}
            )
            if len(urgent) == room:  # more may be waiting: look again at the next wake
                self._urgent.set()
        low_room = min(room - len(urgent), self._low_window - self._low_inflight)
        threshold = min(self._refill_at, self._low_window - self._low_inflight)
        if self._replay_bucket is not None:
            allowed = self._replay_bucket.available()
            low_room, threshold = min(low_room, allowed), min(threshold, allowed)
        low = []
        if low_room >= threshold > 0:
            low = self.outbox.next_rows(
                self._cursors, low_room, skip=held | {Priority.ALARM, Priority.FAULT}
            )
            if self._replay_bucket is not None:
                self._replay_bucket.take(len(low))
        for row in urgent + low:
            self._cursors[row.priority] = max(self._cursors.get(row.priority, 0), row.rowid)
            if row.rowid in self._inflight_rows:
                continue
            topic, payload = self._message(row)
            info = self.client.publish(topic, payload, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                # paho refused to queue it: step back and try on the next wake-up.
                self._cursors[row.priority] = row.rowid - 1
                break
            self._inflight[info.mid] = (row, time.monotonic())
            self._inflight_rows.add(row.rowid)
            self._low_inflight += row.priority >= Priority.STATUS
            self.stats.published += 1
        self.stats.inflight = len(self._inflight)

    def _message(self, row: Row) -> tuple[str, bytes]:
        if row.kind == "snapshot":
            return self.topics.snapshot(row.event_id), row.payload
        extra = b""
        if row.replayed or row.rowid in self._retry:
            extra += b',"replayed":true'
        if not row.clock_trusted:
            corrected = self._correct_ts(row.boot_id, row.mono_ns)
            if corrected is not None:
                extra += b',"ts_corrected":%d' % corrected
        payload = row.payload[:-1] + extra + b"}" if extra else row.payload
        return self.topics.event(row.event_type), payload
