"""The county broker configuration of docs/security.md, tested as written.

A real Mosquitto loads ``docs/mosquitto/shaobing-county.conf`` and its ACL
verbatim (only the listener port and file paths are substituted), with
certificates from the test CA whose CN is the device id (or
``platform.county``). A box's certificate publishes and reads only in its own
tree; the platform reads every box and sends commands; a revoked or foreign
certificate does not get in; a real agent delivers events and answers commands
through it, its replies kept in their lane.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from agent_harness import SimulatedPost
from conftest import ROOT, config_for, wait_for
from county_key import COUNTY
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shaobing.agent.command_envelope import sign as sign_hmac
from shaobing.agent.command_signature import sign_ed25519
from shaobing.agent.config import TlsConfig
from shaobing.core.signing import generate
from shaobing.simulator.broker import Mosquitto, free_port
from shaobing.simulator.pki import CountyCA

DOCS = ROOT / "docs" / "mosquitto"
CONF, ACL = DOCS / "shaobing-county.conf", DOCS / "shaobing-county.acl"
VILLAGE = "130521104201"
BOX_A = "sb-130521-dongguan-01"  # the example config's device id: the agent is box A
BOX_B = "sb-130521-xiguan-02"
PLATFORM = "platform.county"
TREE_A, TREE_B = f"shaobing/v1/{VILLAGE}/{BOX_A}", f"shaobing/v1/{VILLAGE}/{BOX_B}"
ACCEPTED = ("Success", "No matching subscribers")  # PUBACK reasons of an allowed publish


@dataclass
class Pki:
    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    def tls(self, stem: str) -> TlsConfig:
        return TlsConfig(
            ca=self.path("ca.pem"), cert=self.path(f"{stem}.pem"), key=self.path(f"{stem}.key")
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("county-pki")
    county = CountyCA()
    county.write_ca(d / "ca.pem")
    county.server().write(d, "broker")
    for stem, cn in (("box-a", BOX_A), ("box-b", BOX_B), ("platform", PLATFORM)):
        county.client(cn).write(d, stem)
    stolen = county.client("sb-130521-stolen-03")
    stolen.write(d, "stolen")
    (d / "county.crl").write_bytes(county.crl([stolen.cert]))
    CountyCA("some other CA").client(BOX_B).write(d, "foreign")
    return Pki(d)


def county_conf(pki: Pki, port: int) -> str:
    """The documented file with only its port and paths replaced; each must be found."""
    text = CONF.read_text()
    swaps = {
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
        "/etc/mosquitto/shaobing-county.acl": str(ACL),
        "/etc/mosquitto/certs/county-ca.pem": str(pki.path("ca.pem")),
        "/etc/mosquitto/certs/broker.pem": str(pki.path("broker.pem")),
        "/etc/mosquitto/certs/broker.key": str(pki.path("broker.key")),
        "/etc/mosquitto/certs/county.crl": str(pki.path("county.crl")),
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, f"{CONF.name} no longer has {old!r} once"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def broker(pki) -> Iterator[Mosquitto]:
    port = free_port()
    mosquitto = Mosquitto(port=port, listener=county_conf(pki, port)).start()
    yield mosquitto
    mosquitto.close()


@dataclass
class Seen:
    connack: list = field(default_factory=list)
    subacks: list[list[str]] = field(default_factory=list)
    pubacks: dict[int, str] = field(default_factory=dict)
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)

    def topics(self) -> list[str]:
        return [m.topic for m in self.messages]


class Client:
    """An MQTT 5 client with a certificate, recording every acknowledgement it gets."""

    def __init__(
        self, pki: Pki, stem: str, port: int, ca: str = "ca.pem", protocol: int = mqtt.MQTTv5
    ):
        ctx = ssl.create_default_context(cafile=str(pki.path(ca)))
        ctx.load_cert_chain(pki.path(f"{stem}.pem"), pki.path(f"{stem}.key"))
        self.seen = Seen()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{stem}-{uuid.uuid4().hex[:6]}",
            protocol=protocol,
        )
        self.client.tls_set_context(ctx)
        self.client.on_connect = lambda c, u, f, rc, p: self.seen.connack.append(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.seen.subacks.append(
            [str(rc) for rc in rcs]
        )
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, msg: self.seen.messages.append(msg)
        self.client.connect_async("127.0.0.1", port, 30)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, rc, props) -> None:
        with self._lock:
            self.seen.pubacks[mid] = str(rc)

    def connected(self) -> bool:
        return any(not rc.is_failure for rc in self.seen.connack)

    def subscribe(self, topic: str) -> list[str]:
        count = len(self.seen.subacks)
        self.client.subscribe(topic, qos=1)
        wait_for(lambda: len(self.seen.subacks) > count, 10, f"SUBACK for {topic}")
        return self.seen.subacks[count]

    def publish(self, topic: str, payload: bytes = b"{}", props: Properties | None = None) -> str:
        """Publish at QoS 1 and return the PUBACK reason (MQTT 5: 'Not authorized' if denied)."""
        info = self.client.publish(topic, payload, qos=1, properties=props)
        return wait_for(lambda: self.seen.pubacks.get(info.mid), 10, f"PUBACK for {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(pki, broker) -> Iterator:
    made: list[Client] = []

    def make(stem: str, ca: str = "ca.pem", wait: bool = True, protocol=mqtt.MQTTv5) -> Client:
        client = Client(pki, stem, broker.port, ca, protocol)
        made.append(client)
        if wait:
            wait_for(client.connected, 10, f"{stem} connected")
        return client

    yield make
    for client in made:
        client.close()


def test_a_box_publishes_only_in_its_own_tree(clients):
    platform = clients("platform")
    assert platform.subscribe("shaobing/v1/#") == ["Granted QoS 1"]
    box_a = clients("box-a")
    for topic in (
        f"{TREE_B}/event/alarm/panic",
        f"{TREE_B}/state",
        f"{TREE_B}/register",
        f"{TREE_B}/cmd/response",
        f"{TREE_B}/cmd/ping",
        f"{TREE_A}/cmd/restart",  # no command to itself but the self-test's ping
        f"{TREE_A}/cmd/set_config",
        f"{TREE_A}/bundle/m-5/0",  # model chunks come from the platform only
        "county/replies/anything",
    ):
        assert box_a.publish(topic) == "Not authorized", topic
    for topic in (
        f"{TREE_A}/event/alarm/panic",
        f"{TREE_A}/snapshot/01ABC",
        f"{TREE_A}/cmd/response/desk-1",
        f"{TREE_A}/cmd/ping",
        f"{TREE_A}/state",
    ):
        assert box_a.publish(topic) == "Success", topic
    # Box A's allowed messages arrive after its refused ones would have (one
    # connection, in order): once the last is in, the platform has seen all.
    wait_for(lambda: f"{TREE_A}/state" in platform.seen.topics(), 10, "box A's state")
    assert not [t for t in platform.seen.topics() if not t.startswith(TREE_A + "/")]


def test_a_box_reads_only_its_own_commands(clients):
    box_a, box_b, platform = clients("box-a"), clients("box-b"), clients("platform")
    # Mosquitto 2.0 grants these subscriptions and then delivers nothing the
    # read rules deny: what counts is what arrives.
    granted = [box_a.subscribe(f) for f in (f"{TREE_B}/cmd/+", "shaobing/v1/#", f"{TREE_A}/cmd/+")]
    assert all(g in (["Granted QoS 1"], ["Not authorized"]) for g in granted), granted
    box_a.subscribe(f"{TREE_B}/bundle/+/+")
    box_a.subscribe(f"{TREE_A}/bundle/+/+")
    box_b.subscribe(f"{TREE_B}/cmd/+")
    box_b.subscribe(f"{TREE_B}/bundle/+/+")
    assert platform.publish(f"{TREE_B}/cmd/disarm", b'{"for": "b"}') == "Success"
    assert platform.publish(f"{TREE_B}/bundle/m-5/0", b"chunk for b") == "Success"
    assert platform.publish(f"{TREE_A}/bundle/m-5/0", b"chunk for a") == "Success"
    assert platform.publish(f"{TREE_A}/cmd/ping", b'{"for": "a"}') == "Success"
    wait_for(lambda: f"{TREE_A}/cmd/ping" in box_a.seen.topics(), 10, "box A's own command")
    wait_for(lambda: len(box_b.seen.topics()) == 2, 10, "box B's own command and chunk")
    assert f"{TREE_A}/bundle/m-5/0" in box_a.seen.topics()
    assert not [t for t in box_a.seen.topics() if t.startswith(TREE_B)]
    assert box_b.seen.topics() == [f"{TREE_B}/cmd/disarm", f"{TREE_B}/bundle/m-5/0"]


def test_mqtt_311_refusals_look_like_deliveries(clients):
    """Why docs/security.md asks for MQTT 5 behind this ACL: Mosquitto 2.0 answers a
    refused 3.1.1 publish with a plain PUBACK, and the message goes nowhere."""
    platform = clients("platform")
    platform.subscribe("shaobing/v1/#")
    old_box = clients("box-a", protocol=mqtt.MQTTv311)
    assert old_box.publish(f"{TREE_B}/event/alarm/panic") == "Success"
    assert old_box.publish(f"{TREE_A}/state") == "Success"
    wait_for(lambda: f"{TREE_A}/state" in platform.seen.topics(), 10, "box A's state")
    assert not [t for t in platform.seen.topics() if t.startswith(TREE_B)]


def test_security_md_shows_the_tested_files_verbatim():
    page = (ROOT / "docs" / "security.md").read_text()
    for path in (CONF, ACL):
        assert f"```\n{path.read_text()}```" in page, f"docs/security.md differs from {path.name}"


def test_the_platform_reads_all_and_commands_but_cannot_speak_for_a_box(clients):
    platform = clients("platform")
    for topic in (f"{TREE_A}/event/alarm/panic", f"{TREE_A}/state", f"{TREE_A}/register"):
        assert platform.publish(topic) == "Not authorized", topic
    assert platform.publish(f"{TREE_B}/cmd/ping") in ACCEPTED


@pytest.mark.parametrize(
    ("stem", "ca"), [("stolen", "ca.pem"), ("foreign", "ca.pem")], ids=["revoked", "other-ca"]
)
def test_revoked_and_foreign_certificates_do_not_get_in(clients, broker, stem, ca):
    before = broker.log().count("certificate verify failed")
    refused = clients(stem, ca, wait=False)
    # The broker refuses during or right after the handshake: no CONNACK ever
    # succeeds, and the broker's log says why.
    wait_for(lambda: broker.log().count("certificate verify failed") > before, 10, "the refusal")
    assert not refused.connected()


def test_a_box_without_certificate_does_not_get_in(broker):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    client.tls_set_context(ctx)
    connack: list = []
    client.on_connect = lambda c, u, f, rc, p: connack.append(rc)
    try:
        client.connect("127.0.0.1", broker.port, 10)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not connack:
            if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
    except (OSError, ssl.SSLError):
        pass
    finally:
        client.disconnect()
    assert not any(not rc.is_failure for rc in connack)


def _command(name: str) -> bytes:
    now = int(time.time() * 1000)
    body = {"v": 1, "id": f"c-{uuid.uuid4().hex[:16]}", "issued_ms": now}
    return json.dumps(body | {"expires_ms": now + 60_000, "args": {}}).encode()


def test_a_real_agent_delivers_and_answers_through_the_county_broker(
    tmp_path, pki, broker, clients
):
    platform = clients("platform")
    platform.subscribe("shaobing/v1/#")
    config = config_for(tmp_path, broker.port, tls=pki.tls("box-a"), host="127.0.0.1")
    assert config.device.id == BOX_A
    post = SimulatedPost(config)
    try:
        assert post.agent.uplink.connected.wait(15), post.agent.uplink.stats.last_refusal
        post.wiring.press("panic-1", hold_s=0.1)
        wait_for(
            lambda: f"{TREE_A}/event/alarm/panic" in platform.seen.topics(), 15, "the panic alarm"
        )
        assert post.agent.uplink.stats.refused == 0  # the ACL let every event through

        # A command from the platform, answered in the lane the ACL allows ...
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = f"{TREE_A}/cmd/response/desk-1", b"k-1"
        assert platform.publish(f"{TREE_A}/cmd/ping", _command("ping"), props) == "Success"
        wait_for(lambda: props.ResponseTopic in platform.seen.topics(), 15, "the answer")
        # ... and one asking for the answer in box B's tree gets it in A's lane.
        props.ResponseTopic, props.CorrelationData = f"{TREE_B}/event/alarm/panic", b"k-2"
        assert platform.publish(f"{TREE_A}/cmd/ping", _command("ping"), props) == "Success"
        wait_for(lambda: f"{TREE_A}/cmd/response" in platform.seen.topics(), 15, "the lane")

        # Through this broker too, only the county's signature opens the box (docs/security.md):
        # a forged one under the county's kid, a per-box HMAC where Ed25519 is required, and
        # a county-signed ping.
        def signed(key) -> bytes:
            return json.dumps(sign_ed25519(json.loads(_command("ping")), "ping", BOX_A, key))

        forged = json.loads(signed(generate()))
        forged["kid"] = COUNTY.kid
        hmac_body = json.loads(_command("ping"))
        hmac_body["sig"] = sign_hmac(hmac_body, "ping", BOX_A, b"a-box-key")
        for k, payload in (
            (b"k-3", json.dumps(forged)),
            (b"k-4", json.dumps(hmac_body)),
            (b"k-5", signed(COUNTY)),
        ):
            props.ResponseTopic, props.CorrelationData = f"{TREE_A}/cmd/response/desk-1", k
            assert platform.publish(f"{TREE_A}/cmd/ping", payload.encode(), props) == "Success"
        wait_for(
            lambda: len([m for m in platform.seen.messages if "/cmd/response" in m.topic]) >= 5,
            15,
            "the signed answers",
        )
    finally:
        post.stop()
    answers = [m for m in platform.seen.messages if m.topic.startswith(f"{TREE_A}/cmd/response")]
    # Each command has one answer, from box A, in box A's lane.
    assert [(m.topic, m.properties.CorrelationData) for m in answers] == [
        (f"{TREE_A}/cmd/response/desk-1", b"k-1"),
        (f"{TREE_A}/cmd/response", b"k-2"),
        (f"{TREE_A}/cmd/response/desk-1", b"k-3"),
        (f"{TREE_A}/cmd/response/desk-1", b"k-4"),
        (f"{TREE_A}/cmd/response/desk-1", b"k-5"),
    ]
    verdicts = [json.loads(m.payload) for m in answers]
    assert [v["ok"] for v in verdicts] == [False, False, False, False, True], verdicts
    assert verdicts[0]["error"]["code"] == "unsigned"
    assert verdicts[2]["error"]["code"] == "bad_signature"
    assert verdicts[3]["error"]["code"] in ("unsigned", "bad_signature")
    assert {(json.loads(m.payload)["device"], json.loads(m.payload)["cmd"]) for m in answers} == {
        (BOX_A, "ping")
    }
    assert not [t for t in platform.seen.topics() if t.startswith(TREE_B)]
    assert f"u'{BOX_A}'" in broker.log()  # the certificate's CN became the user name
