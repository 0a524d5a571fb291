"""Publish one signed command for ``shaobing sign-command --broker`` and wait for its answer.

The answer is read on the post's own ``.../cmd/response`` topic (no MQTT 5
ResponseTopic), matched by the command id.
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, e.g. mqtt.county.example:8883, not {text!r}")
    return host.strip("[]"), int(port)


def publish_and_wait(
    args: argparse.Namespace, base: str, command: str, body: dict[str, Any]
) -> dict[str, Any]:
    host, port = _endpoint(args.broker)
    answer: dict[str, Any] = {}
    got = threading.Event()
    subscribed = threading.Event()
    responses = f"{base}/cmd/response"

    def on_message(_client, _userdata, msg) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(doc, dict) and doc.get("id") == body["id"]:
            answer.update(doc)
            got.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if args.ca:
        context = ssl.create_default_context(cafile=str(args.ca))
        if args.cert:
            context.load_cert_chain(
                str(args.cert), str(args.client_key) if args.client_key else None
            )
        client.tls_set_context(context)
    client.on_connect = lambda c, *_: c.subscribe(responses, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(args.timeout):
            raise TimeoutError(f"could not subscribe to {responses}")
        payload = json.dumps(body, ensure_ascii=False).encode()
        client.publish(f"{base}/cmd/{command}", payload, qos=1).wait_for_publish(args.timeout)
        if not got.wait(args.timeout):
            raise TimeoutError(f"no answer on {responses} within {args.timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
    return answer
