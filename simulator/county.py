"""A stand-in for the county platform: a plain paho subscriber that records
(and optionally prints) what the platform would receive."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> dict:
        return json.loads(self.payload)


class County:
    def __init__(
        self,
        host: str,
        port: int,
        topic: str = "shaobing/#",
        protocol: int = mqtt.MQTTv5,
        on_message: Callable[[Received], None] | None = None,
        client_id: str | None = None,
    ):
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._callback = on_message
        self._topic = topic
        # A persistent session, like a real platform's: the broker queues what
        # arrives while this subscriber reconnects after a broker restart.
        client_id = client_id or f"county-{uuid.uuid4().hex[:12]}"
        self._poke_topic = f"shaobing/_county/{client_id}/poke"
        v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=None if v5 else False,
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *_: c.subscribe(self._topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        session: dict = {}
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            session = {"clean_start": False, "properties": props}
        self.client.connect_async(host, port, keepalive=30, **session)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"could not subscribe to {host}:{port}")

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._poke_topic:
            return
        item = Received(msg.topic, bytes(msg.payload), bool(msg.retain))
        with self._cond:
            self.messages.append(item)
            self._cond.notify_all()
        if self._callback:
            self._callback(item)

    def events(self, type_prefix: str = "") -> list[dict]:
        with self._cond:
            items = list(self.messages)
        return [
            m.json()
            for m in items
            if "/event/" in m.topic and m.json().get("type", "").startswith(type_prefix)
        ]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        next_poke = time.monotonic() + 0.5
        with self._cond:
            while not predicate(self.messages):
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= next_poke:
                    self._poke()
                    next_poke = now + 0.5
                self._cond.wait(min(deadline, next_poke) - now)
            return True

    def _poke(self) -> None:
        """Mosquitto 2.0.x (Debian's 2.0.11 here) can leave QoS 1 messages queued
        for a persistent session undelivered after a broker restart until another
        message for that client arrives (the eclipse-mosquitto issue family around
        #3074/#3202): seen here as every PUBACKed event reaching the county only
        after one more publish. A real platform sees the same; a quiet second
        publish on our own side topic, dropped on arrival, unsticks the queue."""
        if self.client.is_connected():
            self.client.publish(self._poke_topic, b"", qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
