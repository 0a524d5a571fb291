"""Answers to commands: on the device's response topic, or an MQTT 5 ResponseTopic in its lane."""

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
from shaobing.agent.reply_lane import Hook, Prefix, ReplyLane, in_lane

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
        self.lane = ReplyLane(deps.topics)  # keep_in_lane sets the configured one

    def keep_in_lane(self, prefix: Prefix, on_refused: Hook) -> None:
        """Honour ResponseTopics only under ``prefix()`` (agent/reply_lane.py)."""
        self.lane = ReplyLane(self._deps.topics, prefix, on_refused)

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
            if item.response_topic:
                topic = self.lane.topic_for(item.response_topic, command, command_id)
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
        """Whether an MQTT 5 ResponseTopic is honoured: only in the reply lane."""
        topics = self._deps.topics
        return in_lane(topic, self.lane.prefix(), topics.base, topics.responses)
