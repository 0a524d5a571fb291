"""Self-test: the box accepts only commands the county signed.

The installer has no county private key on site (it never leaves the
county's key custody), so the check proves what it can:

1. the county's public key(s) in ``control.command_keys`` load;
2. over the real broker, to the box's own ``.../cmd/ping`` (sent from a
   second connection with the box's identity): an unsigned ping
   is refused (``unsigned``) and a ping signed by another key under the
   county's key id is refused (``bad_signature``), by the same checks the
   agent runs (agent/command_signature.py);
3. if the county sent a ping it signed for this device (answers
   ``selftest_command``, ``--selftest-command``; ``shaobing sign-command
   --command ping``), its signature is accepted. Only the signature is
   checked, not its time: nothing is executed, and a sample signed days
   before the visit still proves the key pair matches.

A box whose broker ACL does not let it read its own commands fails here
rather than on the first real command.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shaobing.agent.command_envelope import (
    CommandError,
    Envelope,
    canonical,
    parse_body,
    validated,
)
from shaobing.agent.control import verifier_for
from shaobing.agent.tls import client_context
from shaobing.core.i18n import N_
from shaobing.core.signing import KeyFileError, generate
from shaobing.provisioning.selftest import FAIL, PASS, SKIP, WARN, Context, Outcome

COMMAND = "ping"


def _probe(now_ms: int) -> dict[str, Any]:
    return {
        "v": 1,
        "id": f"selftest-{uuid.uuid4().hex[:16]}",
        "issued_ms": now_ms,
        "expires_ms": now_ms + 60_000,
        "args": {},
    }


def _forged(body: dict[str, Any], device: str, kid: str) -> dict[str, Any]:
    """Signed by a throwaway key, under the county's key id."""
    forged = {**body, "kid": kid}
    forged["sig"] = generate().sign(canonical(forged, COMMAND, device))
    return forged


def _verdict(verifier, payload: bytes, device: str) -> str:
    """``ok`` or the error code the agent would answer (signature stage)."""
    try:
        body = parse_body(payload)
        envelope = validated(Envelope, body, "bad_envelope", ())
        verifier.check(body, COMMAND, device, envelope)
    except CommandError as exc:
        return exc.code
    return "ok"


def _load_sample(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        json.loads(data)
    except (OSError, ValueError) as exc:
        raise ValueError(f"selftest_command {path}: not a readable JSON command ({exc})") from None
    return data


def _publish(config, topic: str, payloads: list[bytes], ctx: Context) -> None:
    """From a second connection with the box's own identity: the uplink's MQTT 5
    subscriptions are no-local, so what it published itself would not come back."""
    mq = config.mqtt
    v5 = mq.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{config.device.id}-selftest-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    if mq.username:
        client.username_pw_set(mq.username, mq.password)
    if mq.tls:
        client.tls_set_context(client_context(mq.tls))
    endpoint = mq.endpoints()[0]
    client.connect(endpoint.host, endpoint.port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(ctx.broker_timeout_s)
            if not info.is_published():
                raise TimeoutError("the broker did not acknowledge them")
    finally:
        client.disconnect()
        client.loop_stop()


# In English in the results; on the screen in the installer's language (selftest.words).
NAME = N_("county command key")
UNSIGNED_ACCEPTED = N_(
    "unsigned commands are accepted (control.insecure_unsigned): anyone who can publish on "
    "the broker can command this box"
)
KEY_LOADS = N_("key {kids} loads; no broker connection (see the broker check)")
NO_SAMPLE = N_(
    "key {kids}: unsigned and forged pings refused over the broker; no county-signed sample "
    "given (selftest_command)"
)
SAMPLE_ACCEPTED = N_(
    "key {kids}: unsigned and forged pings refused over the broker; the county's signed "
    "sample accepted"
)
SENTENCES = (NAME, UNSIGNED_ACCEPTED, KEY_LOADS, NO_SAMPLE, SAMPLE_ACCEPTED)


@dataclass
class CommandCheck:
    kind: str = "commands"
    name: str = NAME

    def run(self, ctx: Context) -> Outcome:
        config = ctx.config
        control = config.control
        device = config.device.id
        try:
            verifier = verifier_for(control)
        except KeyFileError as exc:
            return Outcome(FAIL, str(exc))
        kids = verifier.keyring.kids
        if control.insecure_unsigned:
            return Outcome(WARN, UNSIGNED_ACCEPTED)
        session = ctx.session
        if session is None or not session.uplink.connected.is_set():
            return Outcome(SKIP, KEY_LOADS.format(kids=", ".join(kids)))
        now_ms = int(time.time() * 1000)
        unsigned = _probe(now_ms)
        forged = _forged(_probe(now_ms), device, kids[0] if kids else "0" * 16)
        probes = {"unsigned": unsigned, "bad_signature": forged}
        try:
            sample = _load_sample(ctx.sample_command) if ctx.sample_command else None
        except ValueError as exc:
            return Outcome(FAIL, str(exc))
        topic = f"{session.topics.base}/cmd/{COMMAND}"
        sent: dict[str, tuple[str, bytes]] = {}  # id -> (expected verdict, payload)
        for expected, body in probes.items():
            sent[body["id"]] = (expected, json.dumps(body).encode())
        if sample is not None:
            sample_id = str(parse_body(sample).get("id"))
            sent[sample_id] = ("ok", sample)
        try:
            _publish(config, topic, [payload for _, payload in sent.values()], ctx)
        except (OSError, RuntimeError, ValueError) as exc:  # TimeoutError is an OSError
            return Outcome(FAIL, f"could not send test commands to {topic}: {exc}")
        verdicts: dict[str, str] = {}
        deadline = time.monotonic() + ctx.broker_timeout_s
        while len(verdicts) < len(sent) and time.monotonic() < deadline:
            try:
                got_topic, payload = session.commands.get(timeout=0.1)
            except queue.Empty:
                continue
            if got_topic != topic:
                continue
            try:
                got_id = str(parse_body(payload).get("id"))
            except CommandError:
                continue
            if got_id in sent:
                verdicts[got_id] = _verdict(verifier, payload, device)
        missing = [i for i in sent if i not in verdicts]
        if missing:
            return Outcome(
                FAIL,
                f"test commands published to {topic} did not come back: the broker ACL must let "
                f"this box read (and, for this test, write) {session.topics.base}/cmd/+",
            )
        wrong = [
            f"{'sample' if expected == 'ok' else expected}: got {verdicts[i]}"
            for i, (expected, _) in sent.items()
            if verdicts[i] != expected
        ]
        detail = {"kids": kids, "verdicts": {sent[i][0]: v for i, v in verdicts.items()}}
        if wrong:
            hint = ""
            if sample is not None and verdicts.get(sample_id) != "ok":
                hint = " (is the sample for this device id, signed by the key installed here?)"
            return Outcome(FAIL, "; ".join(wrong) + hint, detail)
        said = NO_SAMPLE if sample is None else SAMPLE_ACCEPTED
        return Outcome(PASS, said.format(kids=", ".join(kids)), detail)
