"""Reconnect defaults, broker nodes and the replay cap (issue 11 item 10, issue 16 items 1-2)."""

from __future__ import annotations

import random
import threading
import time

import pytest
from conftest import EXAMPLE, wait_for
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from tenacity import RetryCallState

from shaobing.agent.config import BrokerEndpoint, MqttConfig, load_config
from shaobing.agent.outbox import Outbox
from shaobing.agent.pacing import Endpoints, TokenBucket, reconnect_wait
from shaobing.agent.recorder import Recorder
from shaobing.agent.topics import Topics
from shaobing.agent.uplink import Uplink
from shaobing.core.clock import Clock
from shaobing.core.events import Source
from shaobing.simulator.broker import Mosquitto, free_port

SRC = Source(kind="test", id="pacing")


def _waits(config: MqttConfig, attempts: int) -> list[float]:
    wait = reconnect_wait(config)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    out = []
    for n in range(1, attempts + 1):
        state.attempt_number = n
        out.append(wait(state))
    return out


def test_default_backoff_retries_within_seconds_after_a_long_outage():
    """Issue 11 item 10: after a 37 s outage the first delivery took 11-59 s (cap 120 s).

    With the defaults, every retry after the first few waits at most 8 s, so an
    alarm waiting in the outbox goes out within seconds of the link returning.
    """
    random.seed(11)
    config = MqttConfig()
    waits = _waits(config, 200)
    assert max(waits) <= 8.0
    # Full jitter, not a fixed period: the fleet's retries spread over the cap.
    late = waits[10:]
    assert min(late) < 2.0 and max(late) > 6.0


def test_fleet_size_widens_the_reconnect_spread():
    random.seed(16)
    config = MqttConfig(fleet_size=3000, fleet_connects_per_s=100)
    assert config.reconnect_spread_s() == 30
    waits = _waits(config, 300)[20:]
    assert max(waits) <= 30 and max(waits) > 20


def test_endpoints_rotate_from_a_random_start():
    nodes = [BrokerEndpoint(host=f"n{i}") for i in range(3)]
    starts = {Endpoints(nodes, random.Random(seed)).advance().host for seed in range(40)}
    assert starts == {"n0", "n1", "n2"}  # a fleet spreads over the nodes
    rotation = Endpoints(nodes, random.Random(1))
    seen = [rotation.advance().host for _ in range(6)]
    assert seen[:3] == seen[3:] and sorted(seen[:3]) == ["n0", "n1", "n2"]


def test_single_host_config_still_works():
    config = MqttConfig(host="broker.example", port=8883)
    assert [str(e) for e in config.endpoints()] == ["broker.example:8883"]
    config = MqttConfig(hosts=["a:1884", "b", "[fd00::1]:1885"])
    assert [str(e) for e in config.endpoints()] == ["a:1884", "b:1883", "[fd00::1]:1885"]


@given(st.text(max_size=40))
def test_endpoint_text_parses_or_names_the_problem(text):
    try:
        endpoint = BrokerEndpoint.model_validate(text)
    except ValidationError as exc:
        assert "host" in str(exc) or "port" in str(exc) or "endpoint" in str(exc)
    else:
        assert endpoint.host and 1 <= endpoint.port <= 65535


def test_token_bucket_caps_the_rate():
    now = [0.0]
    bucket = TokenBucket(10, clock=lambda: now[0])
    assert bucket.available() == 10
    bucket.take(10)
    assert bucket.available() == 0
    now[0] += 0.5
    assert bucket.available() == 5
    now[0] += 100
    assert bucket.available() == 10  # bursts of at most one second's worth


def _post(tmp_path, mqtt: MqttConfig, name: str = "outbox.db"):
    config = load_config(EXAMPLE)
    outbox = Outbox(tmp_path / name, batch_delay_s=0.05)
    recorder = Recorder(config, outbox, Clock(trust="always"))
    topics = Topics(mqtt.topic_prefix, config.site.village_code, config.device.id)
    uplink = Uplink(mqtt, config.device.id, topics, outbox, lambda: {})
    return outbox, recorder, uplink


@pytest.mark.timeout(120)
def test_failover_between_nodes_keeps_birth_and_loses_nothing(tmp_path, county_factory):
    """Two nodes (and one dead address): kill the node in use, the box moves on."""
    a, b = Mosquitto().start(), Mosquitto().start()
    dead = free_port()
    mqtt = MqttConfig(
        hosts=[f"127.0.0.1:{dead}", f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
        reconnect_min_s=0.1,
        reconnect_max_s=1.0,
    )
    outbox, recorder, uplink = _post(tmp_path, mqtt)
    watchers = {a.port: county_factory(a.port), b.port: county_factory(b.port)}
    try:
        uplink.start()
        wait_for(uplink.connected.is_set, 30, "first connection")
        first = uplink.stats.endpoint
        port = int(first.rsplit(":", 1)[1])
        other = b.port if port == a.port else a.port
        for i in range(5):
            recorder.emit("alarm.perimeter", SRC, zone="crossing", data={"n": i})
        assert watchers[port].wait_for(lambda m: len(watchers[port].events("alarm")) == 5, 30)
        (a if port == a.port else b).stop()  # the node dies
        for i in range(5, 10):  # raised during the failover
            recorder.emit("alarm.perimeter", SRC, zone="crossing", data={"n": i})
        wait_for(lambda: uplink.stats.endpoint == f"127.0.0.1:{other}", 60, "failover")
        assert uplink.stats.failovers >= 1
        got = watchers[other]
        assert got.wait_for(lambda m: len(got.events("alarm")) >= 5, 30)
        assert got.wait_for(
            lambda ms: any(
                m.topic.endswith("/state") and m.json()["state"] == "online" for m in ms
            ),
            10,
        ), "no birth on the new node"
        delivered = {e["data"]["n"] for w in watchers.values() for e in w.events("alarm")}
        assert delivered == set(range(10))  # nothing lost across the failover
        wait_for(lambda: sum(outbox.depth().values()) == 0, 30, "outbox drained")
    finally:
        uplink.stop()
        outbox.close()
        a.close()
        b.close()


@pytest.mark.timeout(120)
def test_replay_rate_caps_backlog_while_alarms_bypass_it(tmp_path, mosquitto, county_factory):
    """A status backlog replays at <= replay_rate; an alarm raised meanwhile skips the queue."""
    rate = 20
    mqtt = MqttConfig(port=mosquitto.port, replay_rate=rate, reconnect_min_s=0.1)
    outbox, recorder, uplink = _post(tmp_path, mqtt)
    county = county_factory(mosquitto.port)
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    def on_message(item):
        if "/event/" in item.topic:
            with lock:
                arrived.setdefault(item.json()["id"], time.monotonic())

    county._callback = on_message
    backlog = 100
    for i in range(backlog):
        recorder.emit("status.health", SRC, data={"n": i})
    outbox.flush()
    try:
        uplink.start()
        wait_for(lambda: len(county.events("status")) >= 30, 60, "replay under way")
        alarm = recorder.emit("alarm.perimeter", SRC, zone="crossing")
        assert county.wait_for(lambda m: alarm.id in arrived, 30)
        statuses_before_alarm = len([t for t in arrived.values() if t <= arrived[alarm.id]])
        assert statuses_before_alarm < backlog  # the alarm did not wait for the backlog
        assert county.wait_for(lambda m: len(county.events("status")) == backlog, 60)
    finally:
        uplink.stop()
        outbox.close()
    times = sorted(arrived[e["id"]] for e in county.events("status"))
    # One second's burst, then at most `rate` per second: a lower bound on the
    # duration, which a slow machine can only lengthen.
    assert times[-1] - times[0] >= (backlog - 2 * rate) / rate
