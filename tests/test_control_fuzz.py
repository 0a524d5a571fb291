"""hypothesis: every malformed, expired, replayed or badly signed command is rejected
with an error result and changes nothing (arm state, config file, outputs, outbox)."""

from __future__ import annotations

import json
import string
import time

import pytest
import yaml
from conftest import config_for
from county_key import COUNTY
from fake_camera import FakeCamera
from gpiozero.pins.mock import MockFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linkage_helpers import linkage_config

from shaobing.agent.command_signature import sign_ed25519
from shaobing.agent.config import Config, load_config
from shaobing.agent.control import ARGS, Incoming
from shaobing.agent.runtime import Agent
from shaobing.core.signing import generate

ZONES = ("crossing", "cabinet")
OUTPUTS = ("siren-1", "strobe-1")
VALID_ARGS = {
    "arm": {"zones": ["crossing"]},
    "disarm": {"zones": ["crossing"]},
    "siren": {"on": True, "duration_s": 5},
    "snapshot": {"camera": "cam-1"},
    "get_config": {},
    "set_config": {"patch": {"linkage": {"cooldown_s": 7}}},
    "ping": {},
    "restart": {},
    "acknowledge": {"zones": ["crossing"]},
    "model_update": {"update_id": "u1", "size": 4096, "sha256": "0" * 64, "chunk_size": 1024},
    "config_update": {"bundle": {}},
}
ERROR_CODES = {
    "too_large", "bad_json", "unknown_command", "bad_envelope", "unsigned",
    "bad_signature", "unknown_key", "not_yet_valid", "expired", "bad_args", "replayed",
    "unknown_zone", "zone_is_24h", "unknown_camera", "camera_down", "invalid_config", "no_previous",
    "not_supported", "bad_bundle",
}  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
commands = st.sampled_from(sorted(ARGS))
HEX64 = st.text("0123456789abcdef", min_size=64, max_size=64)
B64SIG = st.text(string.ascii_letters + string.digits + "-_", min_size=86, max_size=86)
KID = st.text("0123456789abcdef", min_size=16, max_size=16)
OTHER_KEY = generate()  # a key the box does not trust (another county, a stolen box's)


@st.composite
def badly_signed(draw, body: dict, command: str) -> dict:
    """Every way a command's signature fields can be wrong (tests/test_command_signing.py
    checks the code of each; here: rejected, nothing changes)."""
    how = draw(st.sampled_from(["none", "hmac", "random", "other_key", "tampered", "kid_only"]))
    if how == "none":
        return body
    if how == "hmac":  # this box has no HMAC key
        return {**body, "sig": draw(HEX64)}
    if how == "random":
        return {**body, "kid": draw(KID | st.just(COUNTY.kid)), "sig": draw(B64SIG)}
    if how == "other_key":
        return sign_ed25519(body, command, DEVICE, OTHER_KEY)
    if how == "kid_only":
        return {**body, "kid": COUNTY.kid}
    signed = sign_ed25519(body, command, DEVICE, COUNTY)
    signed["issued_ms"] -= draw(st.integers(1, 1000))
    return signed


BAD_ZONE_IDS = st.sampled_from(["nowhere", "x y", ""])
SECTIONS = set(Config.model_fields)
ENVELOPE_KEYS = ("v", "id", "issued_ms", "expires_ms", "args", "kid", "sig")
DEVICE = "sb-130521-dongguan-01"
ARG_KEYS = (
    "zones", "on", "duration_s", "outputs", "camera", "sections", "patch", "rollback", "alarms",
    "update_id", "size", "sha256", "chunk_size", "kid", "url", "bundle",
)  # fmt: skip


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def valid_body(command: str, n: int) -> dict:
    now = int(time.time() * 1000)
    return {
        "v": 1,
        "id": f"fz-{n}",
        "issued_ms": now,
        "expires_ms": now + 60_000,
        "args": json.loads(json.dumps(VALID_ARGS[command])),
    }


BAD_FIELD = {
    "v": json_values.filter(lambda x: x != 1),
    "id": json_values.filter(lambda x: not isinstance(x, str))
    | st.text(max_size=80).filter(
        lambda x: not x or not x[0].isalnum() or len(x) > 64 or any(c in x for c in " /#+\n")
    ),
    "issued_ms": json_values.filter(lambda x: not is_int(x)) | st.integers(max_value=-1),
    "expires_ms": json_values.filter(lambda x: not is_int(x)) | st.integers(max_value=-1),
    "args": json_values.filter(lambda x: not isinstance(x, dict)),
    "sig": json_values.filter(lambda x: x is not None) | HEX64 | B64SIG,
    "kid": json_values.filter(lambda x: x is not None) | KID,
}


def bad_zones(v) -> bool:
    good = v == "all" or (
        isinstance(v, list)
        and 0 < len(v) <= 64
        and all(isinstance(z, str) and z in ZONES for z in v)
    )
    return not good


def bad_outputs(v) -> bool:
    good = v is None or (
        isinstance(v, list)
        and 0 < len(v) <= 16
        and all(isinstance(o, str) and o in OUTPUTS for o in v)
    )
    return not good


BAD_ARG = {
    "arm": {"zones": json_values.filter(bad_zones) | st.lists(BAD_ZONE_IDS, min_size=1)},
    "disarm": {"zones": json_values.filter(bad_zones)},
    "siren": {
        "on": json_values.filter(lambda v: not isinstance(v, bool)),
        "duration_s": json_values.filter(
            lambda v: not (isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 600)
        ),
        "outputs": json_values.filter(bad_outputs),
    },
    "snapshot": {"camera": json_values.filter(lambda v: v != "cam-1")},
    "get_config": {
        # None is valid: "all sections".
        "sections": json_values.filter(
            lambda v: (
                v is not None
                and not (
                    isinstance(v, list)
                    and 0 < len(v) <= 32
                    and all(isinstance(x, str) and x in SECTIONS for x in v)
                )
            )
        )
    },
    "set_config": {
        "patch": json_values.filter(lambda v: not isinstance(v, dict))
        | st.dictionaries(
            st.text(string.ascii_lowercase, min_size=1, max_size=8).filter(
                lambda k: k not in SECTIONS
            ),
            json_values,
            min_size=1,
            max_size=2,
        )
        | st.just({"linkage": {"cooldown_s": -1}})
        | st.just({"zones": [{"id": "crossing"}, {"id": "crossing"}]}),
        "rollback": json_values.filter(lambda v: not isinstance(v, bool)),
    },
    "ping": {},
    "restart": {},
    "acknowledge": {
        "zones": json_values.filter(bad_zones),
        "alarms": json_values.filter(
            lambda v: (
                (v is not None and not (isinstance(v, list) and 0 < len(v) <= 64))
                or (isinstance(v, list) and not all(isinstance(x, str) for x in v))
            )
        ),
    },
    "config_update": {"bundle": json_values.filter(lambda v: not isinstance(v, dict))},
    "model_update": {
        "size": json_values.filter(lambda v: not (type(v) is int and v > 0)),
        "chunk_size": json_values.filter(lambda v: not (type(v) is int and 1024 <= v <= 1 << 20)),
        "sha256": json_values.filter(lambda v: not isinstance(v, str) or len(v) != 64),
    },
}


@st.composite
def malformed(draw) -> tuple[str, bytes]:
    command = draw(commands)
    n = draw(st.integers(0, 10**9))
    body = valid_body(command, n)
    kind = draw(
        st.sampled_from(
            ["bytes", "deep", "not_object", "unknown_command", "bad_field", "missing", "extra",
             "bad_arg", "extra_arg", "too_large", "expired", "future", "reversed", "ttl", "sig"]
        )
    )  # fmt: skip
    if kind == "bytes":
        return command, draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(2000, 8000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return command, (opener * depth + "1" + closer * depth).encode()
    if kind == "not_object":
        return command, json.dumps(
            draw(json_values.filter(lambda v: not isinstance(v, dict)))
        ).encode()
    if kind == "unknown_command":
        command = draw(
            st.text(string.ascii_letters + "_-", min_size=1, max_size=12).filter(
                lambda c: c not in ARGS and c != "response"
            )
        )
    elif kind == "bad_field":
        field = draw(st.sampled_from(sorted(BAD_FIELD)))
        body[field] = draw(BAD_FIELD[field])
    elif kind == "missing":
        del body[draw(st.sampled_from(["id", "issued_ms", "expires_ms"]))]
    elif kind == "extra":
        key = draw(st.text(max_size=8).filter(lambda k: k not in ENVELOPE_KEYS))
        body[key] = draw(json_values)
    elif kind == "bad_arg" and BAD_ARG[command]:
        field = draw(st.sampled_from(sorted(BAD_ARG[command])))
        body["args"][field] = draw(BAD_ARG[command][field])
        if command == "set_config" and field == "rollback" and draw(st.booleans()):
            body["args"].pop("patch")
    elif kind in ("bad_arg", "extra_arg"):
        key = draw(st.text(max_size=8).filter(lambda k: k not in ARG_KEYS))
        body["args"][key] = draw(json_values)
    elif kind == "too_large":
        body["args"]["pad"] = "x" * draw(st.integers(17_000, 40_000))
    elif kind == "expired":
        back = draw(st.integers(31_000, 10**9))
        body["issued_ms"] -= back + 60_000
        body["expires_ms"] -= back + 60_000 - 1
        body["expires_ms"] = max(body["expires_ms"], body["issued_ms"] + 1)
    elif kind == "future":
        ahead = draw(st.integers(31_000, 10**9))
        body["issued_ms"] += ahead
        body["expires_ms"] += ahead
    elif kind == "reversed":
        body["expires_ms"] = body["issued_ms"] - draw(st.integers(0, 10**6))
    elif kind == "ttl":
        body["expires_ms"] = body["issued_ms"] + draw(st.integers(600_001, 10**9))
    elif kind == "sig":
        return command, json.dumps(draw(badly_signed(body, command))).encode()
    if not (kind == "bad_field" and field in ("sig", "kid")):
        # Signed by the county, so the checks after the signature's are reached too.
        body = sign_ed25519(body, command, DEVICE, COUNTY)
    return command, json.dumps(body).encode()


@pytest.fixture
def quiet_agent(tmp_path):
    """A constructed, not started, agent: commands are handled directly, responses captured."""
    config = linkage_config(tmp_path, 1)
    path = tmp_path / "shaobing.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    agent = Agent(
        load_config(path), pin_factory=MockFactory(), verifier=FakeCamera({"cam-1": "person"}),
        config_path=path,
    )  # fmt: skip
    sent: list = []
    agent.uplink.publish_direct = lambda topic, payload, qos=1, properties=None: sent.append(
        (topic, payload)
    )
    yield agent, path, sent
    agent.stop()


def observable(agent: Agent, path) -> tuple:
    seen = path.parent / "commands-seen.json"
    arming = path.parent / "arming.json"
    return (
        {z: s for z, s in agent.arming.states().items()},
        arming.read_bytes() if arming.exists() else None,
        agent.config,
        path.read_bytes(),
        path.with_name(path.name + ".prev").exists(),
        seen.read_bytes() if seen.exists() else None,
        agent.outputs.state(),
        agent.restart_requested.is_set(),
        agent.outbox.depth(),
        agent.control.stats.executed,
    )


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=malformed())
def test_malformed_commands_are_rejected_and_change_nothing(quiet_agent, schemas, case):
    agent, path, sent = quiet_agent
    command, payload = case
    before = observable(agent, path)
    topic = f"{agent.topics.base}/cmd/{command}"
    small = payload if len(payload) <= agent.config.control.max_payload_bytes else None
    response = agent.control.handle(Incoming(topic, small, len(payload), None, None))
    assert response["ok"] is False, (command, payload[:300], response)
    assert response["error"]["code"] in ERROR_CODES
    assert observable(agent, path) == before
    schemas.check(f"{agent.topics.base}/cmd/response", sent[-1][1])


def test_a_valid_command_does_change_state(quiet_agent):
    """The fuzz test's observer is not blind: one good command is seen."""
    agent, path, _sent = quiet_agent
    before = observable(agent, path)
    payload = json.dumps(sign_ed25519(valid_body("disarm", 1), "disarm", DEVICE, COUNTY)).encode()
    topic = f"{agent.topics.base}/cmd/disarm"
    assert agent.control.handle(Incoming(topic, payload, len(payload), None, None))["ok"]
    assert observable(agent, path) != before


def test_config_for_is_used(tmp_path):
    # linkage_config builds on conftest.config_for; keep the import honest for ruff.
    assert config_for(tmp_path, 1).device.id
