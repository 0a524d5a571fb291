"""Answers to commands: on the device's response topic, or an MQTT 5 ResponseTopic."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shaobing.agent.command_handlers import ControlDeps

log = logging.getLogger("shaobing.control")

QUEUE_WAIT_S = 2.0


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes | None  # None: larger than the limit, not kept
    size: int
    response_topic: str | None
    correlation: bytes | None


class Replies:
    def __init__(self, deps: ControlDeps):
        self._deps = deps

    def send(
        self,
        item: Incoming,
        command: str,
        command_id: str | None,
        ok: bool,
        result: dict | None = None,
        error: dict | None = None,
        extra: dict | None = None,
    ) -> dict:
        body: dict[str, Any] = {
            "v": 1,
            "id": command_id,
            "cmd": command[:64],
            "device": self._deps.device,
            "ts": int(self._deps.now() * 1000),
            "ok": ok,
        }
        if ok:
            body["result"] = result or {}
        else:
            body["error"] = error
        body.update(extra or {})
        topic = self._deps.topics.responses
        props = None
        if self._deps.v5:
            props = Properties(PacketTypes.PUBLISH)
            if item.correlation is not None:
                props.CorrelationData = item.correlation
            if item.response_topic and self.allowed(item.response_topic):
                topic = item.response_topic
        payload = json.dumps(body, ensure_ascii=False).encode()
        try:
            info = self._publish(topic, payload, props)
            if command == "restart":
                with contextlib.suppress(Exception):
                    info.wait_for_publish(2.0)
        except Exception:
            log.exception("could not publish command response")
        return body

    def _publish(self, topic: str, payload: bytes, props: Properties | None):
        # In a flood of answers paho's queue can be full for a moment: wait for
        # room rather than lose an answer (this runs on the control worker).
        deadline = time.monotonic() + QUEUE_WAIT_S
        while True:
            info = self._deps.publisher.publish_direct(topic, payload, qos=1, properties=props)
            if info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE or time.monotonic() > deadline:
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    log.error("command response not sent", extra={"fields": {"rc": str(info.rc)}})
                return info
            time.sleep(0.005)

    def allowed(self, topic: str) -> bool:
        # A command must not make the box publish into its own event or state
        # topics (that would forge events): replies go outside the device's
        # tree, or to its own cmd/response.
        if "+" in topic or "#" in topic or not topic:
            return False
        base = self._deps.topics.base + "/"
        return not topic.startswith(base) or topic == self._deps.topics.responses
