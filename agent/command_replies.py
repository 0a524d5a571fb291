"""Answers to commands: on the device's response topic, or an MQTT 5 ResponseTopic.

Replies stay in their lane (issue 12 item 5): a ResponseTopic is honoured only
under the reply prefix (``control.reply_prefix``, default the device's own
``.../cmd/response``), and never inside the device's tree outside that. Else a
command could make the box publish into another box's (or its own) event
tree, which a broker ACL would at best refuse and at worst accept.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shaobing.agent.command_handlers import ControlDeps

log = logging.getLogger("shaobing.control")


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes | None  # None: larger than the limit, not kept
    size: int
    response_topic: str | None
    correlation: bytes | None


def in_lane(topic: str, prefix: str, own_tree: str, own_responses: str) -> bool:
    """Whether a reply may go to ``topic``: at or under ``prefix``, a plain topic name,
    and inside the device's own tree only at or under its ``cmd/response``."""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic or topic.startswith("$"):
        return False

    def under(root: str) -> bool:
        return topic == root or topic.startswith(root + "/")

    return under(prefix) and (not under(own_tree) or under(own_responses))


class Replies:
    def __init__(
        self,
        deps: ControlDeps,
        reply_prefix: Callable[[], str | None] = lambda: None,
        on_refused: Callable[[], None] = lambda: None,
    ):
        self._deps = deps
        self._reply_prefix = reply_prefix
        self._on_refused = on_refused

    def send(
        self,
        item: Incoming,
        command: str,
        command_id: str | None,
        ok: bool,
        result: dict | None = None,
        error: dict | None = None,
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
        topic = self._deps.topics.responses
        props = None
        if self._deps.v5:
            props = Properties(PacketTypes.PUBLISH)
            if item.correlation is not None:
                props.CorrelationData = item.correlation
            if item.response_topic:
                if self.allowed(item.response_topic):
                    topic = item.response_topic
                else:
                    self._refused(item.response_topic, command, command_id)
        payload = json.dumps(body, ensure_ascii=False).encode()
        try:
            info = self._deps.publisher.publish_direct(topic, payload, qos=1, properties=props)
            if command == "restart":
                with contextlib.suppress(Exception):
                    info.wait_for_publish(2.0)
        except Exception:
            log.exception("could not publish command response")
        return body

    def allowed(self, topic: str) -> bool:
        topics = self._deps.topics
        prefix = self._reply_prefix() or topics.responses
        return in_lane(topic, prefix, topics.base, topics.responses)

    def _refused(self, asked: str, command: str, command_id: str | None) -> None:
        self._on_refused()
        log.warning(
            "response topic outside the reply lane; answered on the device's response topic",
            extra={
                "fields": {
                    "response_topic": asked[:256],
                    "reply_prefix": self._reply_prefix() or self._deps.topics.responses,
                    "cmd": command[:64],
                    "id": command_id,
                }
            },
        )
