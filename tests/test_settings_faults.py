"""What counts as a settings change failing in service (agent/settings_faults.py), and
settings bundles from anywhere refused with BundleError only (fuzzed)."""

from __future__ import annotations

import json

import pytest
from bundle_support import county_key
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shaobing.agent.conditions import Key, OpenCondition
from shaobing.agent.config import load_config, validate_config
from shaobing.agent.config_bundle import AppliedVersions, sign
from shaobing.agent.config_commands import ConfigChangeError, ConfigEditor, config_data, merge_patch
from shaobing.agent.config_install import _OnDisk, take
from shaobing.agent.settings_faults import new_faults, open_faults, scope_of
from shaobing.core.signing import Keyring
from shaobing.models.bundle import BundleError

RAILWAY = ROOT / "examples" / "railway-post.yaml"
CAMERAS = ROOT / "examples" / "railway-camera.yaml"


def changed(config, patch):
    new = validate_config(merge_patch(config_data(config), patch))
    assert new is not None, patch
    return new


def opened(kind: str, id: str, condition: str, zone: str = "") -> OpenCondition:
    return OpenCondition(Key(kind, id, zone, condition), "e1", 1, 2, 0)


def test_faults_count_only_where_the_change_reaches():
    old = load_config(RAILWAY)
    host = config_data(old)["serial"]["contact_id"][0]
    new = changed(old, {"serial": {"contact_id": [{**host, "heartbeat_timeout_s": 999}]}})
    scope = scope_of(old, new)
    assert scope["serial"] == ["host-1"] and scope["workers"] == ["serial"]
    faults = [
        opened("contact_id", "host-1", "fault.device_offline"),  # the changed host: counts
        opened("contact_id", "host-1", "fault.ac_loss"),  # the host's own news: not
        opened("modbus", "fibre-1", "fault.device_offline"),  # a detector not touched: not
    ]
    now = open_faults(scope, faults, failing_workers=["serial", "health"], detector_fault=None)
    assert new_faults(now, baseline=[]) == [
        "fault.device_offline on contact_id:host-1",
        "worker serial not live",
    ]
    # Open before the change: not the change's.
    assert new_faults(now, baseline=list(now)) == []

    # A bus's settings reach every device on it.
    first, second = config_data(old)["serial"]["buses"]
    faster = {"serial": {"buses": [{**first, "baudrate": 19200}, second]}}
    scope = scope_of(old, changed(old, faster))
    assert scope["serial"] == ["fence-1", "fibre-1"]


def test_cameras_detector_and_tamper_loops():
    old = load_config(CAMERAS)
    cams = config_data(old)["cameras"]
    new = changed(old, {"cameras": [{**cams[0], "source": "rtsp://10.0.0.9/other"}, cams[1]]})
    scope = scope_of(old, new)
    assert scope["cameras"] == ["cam-track"] and scope["detector"]
    faults = [opened("camera", cam, "fault.camera") for cam in ("cam-track", "cam-road")]
    assert list(open_faults(scope, faults, [], "model missing").values()) == [
        "fault.camera on camera:cam-track",
        "detector fault: model missing",
    ]
    # Linkage only: a camera going down is the post's news.
    calm = scope_of(old, changed(old, {"linkage": {"cooldown_s": 99}}))
    assert open_faults(calm, faults, ["inference"], "model missing") == {}

    village = load_config(ROOT / "examples" / "village-post.yaml")
    tamper = next(i for i in config_data(village)["inputs"] if i["kind"] == "tamper")
    others = [i for i in config_data(village)["inputs"] if i["id"] != tamper["id"]]
    flipped = {**tamper, "contact": "NO" if tamper.get("contact", "NC") == "NC" else "NC"}
    scope = scope_of(village, changed(village, {"inputs": [*others, flipped]}))
    assert scope["inputs"] == [tamper["id"]]
    loop = opened("gpio", tamper["id"], "alarm.tamper", tamper.get("zone", ""))
    [fault] = open_faults(scope, [loop], [], None)
    assert fault.startswith(f"alarm.tamper on gpio:{tamper['id']}")


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    key, public = county_key(tmp)
    config = load_config(RAILWAY)
    return key, Keyring.load([public]), config, tmp


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=json_values, signed_patch=st.dictionaries(st.text(max_size=8), json_values, max_size=3))
def test_any_document_is_refused_with_a_code_and_never_written(box, doc, signed_patch):
    key, keyring, config, tmp = box
    editor = ConfigEditor(_OnDisk(config), None)  # never persisted: nothing may be written
    versions = AppliedVersions(tmp / "config-bundle.json")
    with pytest.raises(BundleError) as refused:
        take(doc, keyring, editor, versions)
    assert refused.value.code in ("bad_bundle", "unknown_key", "bad_signature")
    # Signed but arbitrary: refused by the config's rules, or taken as a valid config.
    signed = json.loads(json.dumps(sign(signed_patch, key, versions.last() + 1)))
    try:
        take(signed, keyring, editor, versions)
    except ConfigChangeError as exc:
        assert exc.code in ("protected_key", "invalid_config") and exc.message
    with pytest.raises(BundleError, match="version"):  # once taken or not: never again
        take(json.loads(json.dumps(sign({}, key, 1))), keyring, editor, versions)
