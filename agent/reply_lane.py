"""Replies stay in their lane (issue 12 item 5, docs/mqtt.md#responses).

An MQTT 5 ResponseTopic is honoured only at or under the reply prefix
(``control.reply_prefix``, default the device's own ``.../cmd/response``) and
never inside the device's own tree outside ``.../cmd/response``. Otherwise a
command could make the box publish into another box's tree or forge its own
events, which a broker ACL would at best refuse and at worst accept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shaobing.agent.topics import Topics

log = logging.getLogger("shaobing.control")

Prefix = Callable[[], str | None]  # the configured reply prefix, read per reply
Hook = Callable[[], None]  # told of each refused ResponseTopic (a counter)


def in_lane(topic: str, prefix: str, own_tree: str, own_responses: str) -> bool:
    """Whether a reply may go to ``topic``: a plain topic name at or under ``prefix``,
    and inside the device's own tree only at or under its ``cmd/response``."""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic or topic.startswith("$"):
        return False

    def under(root: str) -> bool:
        return topic == root or topic.startswith(root + "/")

    return under(prefix) and (not under(own_tree) or under(own_responses))


class ReplyLane:
    def __init__(
        self,
        topics: Topics,
        prefix: Prefix = lambda: None,
        on_refused: Hook = lambda: None,
    ):
        self._topics = topics
        self._prefix = prefix  # read per reply: the control section may be reconfigured
        self._on_refused = on_refused

    def prefix(self) -> str:
        return self._prefix() or self._topics.responses

    def topic_for(self, asked: str | None, command: str, command_id: str | None) -> str:
        """The topic to answer on: ``asked`` when in the lane, else ``.../cmd/response``."""
        if asked is None:
            return self._topics.responses
        if in_lane(asked, self.prefix(), self._topics.base, self._topics.responses):
            return asked
        self._on_refused()
        log.warning(
            "response topic outside the reply lane; answered on the device's response topic",
            extra={
                "fields": {
                    "response_topic": asked[:256],
                    "reply_prefix": self.prefix(),
                    "cmd": command[:64],
                    "id": command_id,
                }
            },
        )
        return self._topics.responses
