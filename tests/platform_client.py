"""The county platform's side of the command channel: a separate paho client.

MQTT 5: each command carries a ResponseTopic (a per-client reply topic in the
device's reply lane, ``.../cmd/response/{client}``) and CorrelationData; the
answer is matched by correlation.
MQTT 3.1.1: the answer comes on .../cmd/response and is matched by the id.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shaobing.agent.control import sign


class Platform:
    def __init__(
        self,
        port: int,
        base: str,
        device: str,
        protocol: int = mqtt.MQTTv5,
        key: bytes | None = None,
    ):
        self.base = base
        self.device = device
        self.key = key
        self.v5 = protocol == mqtt.MQTTv5
        self.reply_topic = f"{base}/cmd/response"
        if self.v5:
            self.reply_topic = f"{base}/cmd/response/{uuid.uuid4().hex}"
        self.responses: list[tuple[dict, bytes | None, str]] = []
        self.sent: list[tuple[str, dict, dict]] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_connect = lambda c, *_: c.subscribe(self.reply_topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("platform client could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props else None
        with self._cond:
            self.responses.append((json.loads(msg.payload), corr, msg.topic))
            self._cond.notify_all()

    def body(
        self,
        command: str,
        args: dict | None = None,
        *,
        id: str | None = None,
        issued_ms: int | None = None,
        ttl_ms: int = 60_000,
        signed: bool | None = None,
        key: bytes | None = None,
        sign_as: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        now = int(time.time() * 1000)
        body: dict[str, Any] = {
            "v": 1,
            "id": id or f"c-{uuid.uuid4().hex[:20]}",
            "issued_ms": now if issued_ms is None else issued_ms,
            "args": args or {},
        }
        body["expires_ms"] = body["issued_ms"] + ttl_ms
        use_key = key or self.key
        if (signed is None and use_key) or signed:
            cmd, device = sign_as or (command, self.device)
            body["sig"] = sign(body, cmd, device, use_key)
        return body

    def send(self, command: str, body: dict | bytes, timeout: float = 10.0) -> dict:
        """Publish and wait for the matching response."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        correlation = uuid.uuid4().bytes
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = self.reply_topic
            props.CorrelationData = correlation
        with self._cond:
            start = len(self.responses)
        self.client.publish(f"{self.base}/cmd/{command}", payload, qos=1, properties=props)
        want_id = body.get("id") if isinstance(body, dict) else None

        def match() -> dict | None:
            for resp, corr, _topic in self.responses[start:]:
                if self.v5 and corr == correlation:
                    return resp
                if not self.v5 and resp.get("id") == want_id and resp.get("cmd") == command:
                    return resp
            return None

        deadline = time.monotonic() + timeout
        with self._cond:
            while (found := match()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no response to {command}")
                self._cond.wait(remaining)
        if not isinstance(body, bytes):
            self.sent.append((command, body, found))
        return found

    def command(self, command: str, args: dict | None = None, **kw) -> dict:
        return self.send(command, self.body(command, args, **kw))

    def publish(self, command: str, body: dict) -> bytes:
        """Publish without waiting (floods); returns the CorrelationData to match."""
        correlation = uuid.uuid4().bytes
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = self.reply_topic
            props.CorrelationData = correlation
        self.client.publish(
            f"{self.base}/cmd/{command}", json.dumps(body).encode(), qos=1, properties=props
        )
        return correlation

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
