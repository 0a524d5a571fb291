"""`shaobing provision` end to end against a real Mosquitto with mutual TLS,
and every kind of bad input an installer can bring."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SCHEMAS
from county_key import COUNTY, county_public_key
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from jsonschema import Draft202012Validator
from tls_helpers import TlsBroker, county_pki, start_tls_broker
from wiring_helpers import wired_factory

from shaobing.agent import link_words
from shaobing.agent.command_signature import signed_command
from shaobing.agent.config import load_config
from shaobing.agent.versions import config_version
from shaobing.core.signing import generate
from shaobing.provisioning import answers as A
from shaobing.provisioning.flow import Options, ProvisionError, prepare, provision
from shaobing.provisioning.selftest import FAIL, PASS
from shaobing.simulator.broker import free_port
from shaobing.simulator.gpio import VirtualWiring
from shaobing.simulator.pki import CountyCA

DEVICE = "sb-130521104201-01"
REGISTER = Draft202012Validator(json.loads((SCHEMAS / "register.schema.json").read_text()))
EVENT = Draft202012Validator(json.loads((SCHEMAS / "event.schema.json").read_text()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[CountyCA, Path]:
    d = tmp_path_factory.mktemp("county")
    ca = county_pki(d)
    ca.client(DEVICE).write(d, "device")
    ca.client(DEVICE, days=10).write(d, "short")
    ca.client(DEVICE, days=30, start_days_ago=60).write(d, "expired")
    ca.client(DEVICE).write(d, "other")  # another device's pair: its key is the wrong one
    return ca, d


@pytest.fixture
def tls_broker(pki) -> Iterator[TlsBroker]:
    _, d = pki
    broker = start_tls_broker(d / "ca.pem", d / "server.pem", d / "server.key")
    yield broker
    broker.close()


def answers_data(d: Path, port: int, **over) -> dict:
    data = {
        "device_id": DEVICE,
        "site": {
            "village_code": "130521104201",
            "code_year": 2023,
            "village_name": "东关村",
            "gps": {"lat": 37.06, "lon": 114.51},
        },
        "railway": {"line": "京广线", "start": "K361+200", "end": "K361+450", "side": "双线"},
        "broker": {"host": "127.0.0.1", "port": port},
        "identity": {
            "mode": "install",
            "cert": str(d / "device.pem"),
            "key": str(d / "device.key"),
            "ca": str(d / "ca.pem"),
        },
        "inputs": [
            {"id": "panic-1", "pin": 17, "kind": "panic", "contact": "NO"},
            {"id": "tamper-1", "pin": 23, "kind": "tamper", "contact": "NC"},
        ],
        "outputs": [{"id": "siren-1", "pin": 24, "kind": "siren"}],
        "gpio_backend": "mock",
        "command_key": str(county_public_key(d)),
    }
    data.update(over)
    return data


def wired_options(tmp_path: Path, data: dict, **kw) -> tuple[Options, VirtualWiring, list[str]]:
    """Options on a MockFactory whose sensors rest as wired sensors do."""
    factory = wired_factory()
    config_like = A.parse_answers(data)
    from shaobing.drivers.gpio_config import InputConfig, OutputConfig

    inputs = [InputConfig(zone="post", **i) for i in config_like.inputs]
    outputs = [OutputConfig(**o) for o in config_like.outputs]
    wiring = VirtualWiring(factory, inputs, outputs)
    wiring.rest()
    said: list[str] = []
    opts = Options(
        config_dir=tmp_path / "etc",
        state_dir=tmp_path / "var",
        pin_factory=factory,
        say=said.append,
        **kw,
    )
    return opts, wiring, said


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_non_interactive_provisioning_end_to_end(tmp_path, pki, tls_broker, county_factory):
    _, d = pki
    county = county_factory(tls_broker.plain_port)
    data = answers_data(d, tls_broker.tls_port)
    opts, _, said = wired_options(tmp_path, data)
    started = time.perf_counter()
    outcome = provision(A.parse_answers(data), opts)
    elapsed = time.perf_counter() - started
    print(f"non-interactive provisioning (5 checks, mTLS): {elapsed:.2f} s")
    assert outcome.ok, [r.as_dict() for r in outcome.results]
    assert [(r.kind, r.status) for r in outcome.results] == [
        ("gpio input", PASS),
        ("gpio input", PASS),
        ("gpio output", PASS),
        ("broker", PASS),
        ("commands", PASS),
    ]
    etc = tmp_path / "etc"
    for name in ("shaobing.yaml", "device.key", "device.pem", "ca.pem", A.CONFIG_NAME):
        assert mode(etc / name) == 0o600, name
    assert mode(etc / "county-command.pub") == 0o644  # a public key
    # The written config is what `shaobing config check` accepts, in canonical form.
    config = load_config(etc / "shaobing.yaml")
    assert config.inputs[0].contact == "NO" and config.mqtt.tls.cert == etc / "device.pem"
    # Secure by default: TLS on 8883-style port, only county-signed commands.
    assert not config.mqtt.insecure_plaintext and not config.control.insecure_unsigned
    assert config.control.command_keys == [etc / "county-command.pub"]
    assert (etc / "county-command.pub").read_bytes() == COUNTY.public.pem()
    (commands,) = [r for r in outcome.results if r.kind == "commands"]
    assert commands.detail["verdicts"] == {"unsigned": "unsigned", "bad_signature": "bad_signature"}
    assert "&id" not in (etc / "shaobing.yaml").read_text()
    # Registration: retained, on the documented topic, valid against its schema.
    topic = f"shaobing/v1/130521104201/{DEVICE}/register"
    assert county.wait_for(lambda m: any(x.topic == topic for x in m), 5)
    late = county_factory(tls_broker.plain_port, client_id="late-county")
    assert late.wait_for(lambda m: any(x.topic == topic and x.retain for x in m), 5)
    reg = next(x for x in county.messages if x.topic == topic).json()
    assert not list(REGISTER.iter_errors(reg)), list(REGISTER.iter_errors(reg))
    assert reg["selftest"] == {"ok": True, "passed": 5, "failed": 0, "skipped": 0, "failures": []}
    assert reg["versions"]["config"] == config_version(config)  # issue 17: what it runs
    assert reg["versions"]["config_bundle"] is None  # no settings bundle taken yet
    fp = x509.load_pem_x509_certificate((d / "device.pem").read_bytes())
    assert reg["certificate"]["fingerprint_sha256"].replace(":", "").lower() == (
        fp.fingerprint(hashes.SHA256()).hex()
    )
    # The test event went the daemon's way: outbox, uplink, PUBACK.
    selftest = [e for e in county.events("status.selftest")]
    assert len(selftest) == 1 and not list(EVENT.iter_errors(selftest[0]))
    # Reports: JSON for the county, text for the installer; never the key.
    report = json.loads((etc / "provisioning-report.json").read_text())
    assert report["selftest"]["ok"] and report["registered_on"] == topic
    text = (etc / "provisioning-report.txt").read_text()
    assert "ALL CHECKS PASSED" in text and "PASS    broker" in text
    key_pem = (etc / "device.key").read_text()
    body = key_pem.splitlines()[1]
    for blob in [*said, text, json.dumps(report)]:
        assert "PRIVATE KEY" not in blob and body not in blob


def test_bad_inputs_are_explained_and_nothing_is_written(tmp_path, pki):
    _, d = pki
    cases = {
        "site.village_code": (
            {"site": {"village_code": "13052110420", "code_year": 2023, "village_name": "东关村"}},
            "village code must be exactly 12 digits (统计用区划代码), got 11",
        ),
        "outputs[0].pin": (
            {"outputs": [{"id": "siren-1", "pin": 17, "kind": "siren"}]},
            "pin 17 is already used by inputs[0]",
        ),
        "identity.cert": (
            {"identity": {"mode": "install", "cert": str(d / "device.pem"),
                          "key": str(d / "other.key"), "ca": str(d / "ca.pem")}},
            "does not match the private key",
        ),
        "identity.cert ": (
            {"identity": {"mode": "install", "cert": str(d / "expired.pem"),
                          "key": str(d / "expired.key"), "ca": str(d / "ca.pem")}},
            "expired on",
        ),
        "railway.start": (
            {"railway": {"line": "京广线", "start": "361+200", "side": "双线"}},
            "is not of the form K123+450",
        ),
        "identity.ca": (
            {"identity": {"mode": "generate"}},
            "TLS needs the county's CA certificate",
        ),
        "command_key": ({"command_key": None}, "the county's command public key is needed"),
        "command_key ": ({"command_key": str(d / "ca.pem")}, "not a PEM public key"),
    }  # fmt: skip
    for path, (override, expected) in cases.items():
        data = answers_data(d, 8883, **override)
        opts = Options(config_dir=tmp_path / "etc", state_dir=tmp_path / "var", say=lambda s: None)
        with pytest.raises(ProvisionError) as info:
            provision(A.parse_answers(data), opts)
        found = [p for p in info.value.problems if p.path == path.strip()]
        assert found and expected in found[0].message, (path, info.value.problems)
        assert not (tmp_path / "etc").exists() or not any((tmp_path / "etc").iterdir())


def test_selftest_accepts_the_countys_signed_sample_and_refuses_another(tmp_path, pki, mosquitto):
    """The installer has no county private key: the county signs a ping beforehand."""
    _, d = pki
    plain = {"broker": {"host": "127.0.0.1", "port": mosquitto.port, "tls": False}}
    verdicts = {}
    for name, key, device in [
        ("county", COUNTY, DEVICE),
        ("other_device", COUNTY, "sb-130521104201-99"),
        ("other_key", generate(), DEVICE),
    ]:
        sample = tmp_path / f"{name}.json"
        # Signed days before the visit: only the signature is checked, not the time.
        body = signed_command(key, device, "ping", now_ms=int(time.time() * 1000) - 3 * 86_400_000)
        sample.write_text(json.dumps(body))
        data = answers_data(d, mosquitto.port, selftest_command=str(sample), **plain)
        opts, _, _ = wired_options(tmp_path / name, data, register=False)
        outcome = provision(A.parse_answers(data), opts)
        (check,) = [r for r in outcome.results if r.kind == "commands"]
        verdicts[name] = (check.status, check.reason)
    assert verdicts["county"][0] == PASS, verdicts
    assert "the county's signed sample accepted" in verdicts["county"][1]
    assert verdicts["other_device"][0] == FAIL
    assert "sample: got bad_signature" in verdicts["other_device"][1]
    assert "for this device id" in verdicts["other_device"][1]
    assert verdicts["other_key"][0] == FAIL
    assert "sample: got unknown_key" in verdicts["other_key"][1]


def test_bench_without_a_command_key_says_insecure_unsigned(tmp_path, pki, mosquitto):
    _, d = pki
    data = answers_data(
        d,
        mosquitto.port,
        broker={"host": "127.0.0.1", "port": mosquitto.port, "tls": False},
        command_key=None,
        insecure_unsigned=True,
    )
    opts, _, _ = wired_options(tmp_path, data, register=False)
    outcome = provision(A.parse_answers(data), opts)
    config = load_config(tmp_path / "etc" / "shaobing.yaml")
    assert config.control.insecure_unsigned and config.mqtt.insecure_plaintext
    (check,) = [r for r in outcome.results if r.kind == "commands"]
    assert check.status == "warn" and "unsigned commands are accepted" in check.reason


def test_bad_rerun_leaves_the_previous_install_untouched(tmp_path, pki):
    _, d = pki
    opts = Options(config_dir=tmp_path / "etc", state_dir=tmp_path / "var", say=lambda s: None)
    data = answers_data(d, free_port())
    _, files, _, _ = prepare(A.parse_answers(data), opts)
    files.commit()
    before = {p.name: p.read_bytes() for p in (tmp_path / "etc").iterdir()}
    bad = answers_data(
        d,
        free_port(),
        identity={"mode": "install", "cert": str(d / "device.pem"), "key": str(d / "other.key")},
    )
    with pytest.raises(ProvisionError):
        provision(A.parse_answers(bad), opts)
    after = {p.name: p.read_bytes() for p in (tmp_path / "etc").iterdir()}
    assert after == before


def test_unreachable_broker_is_a_failed_check_with_a_reason(tmp_path, pki):
    _, d = pki
    port = free_port()  # nothing listens
    data = answers_data(d, port, selftest={"broker_timeout_s": 2})
    opts, _, _ = wired_options(tmp_path, data)
    outcome = provision(A.parse_answers(data), opts)
    broker = next(r for r in outcome.results if r.kind == "broker")
    assert broker.kind == "broker" and broker.status == FAIL
    # Said as the installer reads it, not as the socket says it ("[Errno 111] ...").
    assert broker.reason == link_words.REFUSED.format(host="127.0.0.1", port=port), broker
    assert not outcome.ok and not outcome.registered
    report = json.loads((tmp_path / "etc" / "provisioning-report.json").read_text())
    assert report["selftest"]["failures"][0]["kind"] == "broker"
    assert report["registered_on"] is None


def test_generate_key_and_csr_then_install_the_countys_certificate(
    tmp_path, pki, tls_broker, county_factory
):
    ca, d = pki
    data = answers_data(
        d, tls_broker.tls_port, identity={"mode": "generate", "ca": str(d / "ca.pem")}
    )
    opts, _, said = wired_options(tmp_path, data, register=False)
    first = provision(A.parse_answers(data), opts)
    etc = tmp_path / "etc"
    assert mode(etc / "device.key") == 0o600 and mode(etc / "device.csr") == 0o600
    csr = x509.load_pem_x509_csr((etc / "device.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == DEVICE
    broker = next(r for r in first.results if r.kind == "broker")
    assert broker.status == FAIL and "no device certificate yet" in broker.reason
    assert any("send" in line and "device.csr" in line for line in said)

    # The county signs the CSR; the installer comes back with the certificate.
    (tmp_path / "signed.pem").write_bytes(
        ca.sign_csr((etc / "device.csr").read_bytes()).public_bytes(serialization.Encoding.PEM)
    )
    key_before = (etc / "device.key").read_bytes()
    again = answers_data(
        d,
        tls_broker.tls_port,
        identity={"mode": "install", "cert": str(tmp_path / "signed.pem")},
    )
    opts2, _, _ = wired_options(tmp_path, again)
    second = provision(A.parse_answers(again), opts2)
    assert second.ok, [r.as_dict() for r in second.results]
    assert (etc / "device.key").read_bytes() == key_before  # the CSR's key was kept
    assert second.report["identity"]["key"] == "kept"


def test_certificate_expiring_soon_is_warned_about(tmp_path, pki):
    _, d = pki
    data = answers_data(
        d,
        free_port(),
        identity={"mode": "install", "cert": str(d / "short.pem"), "key": str(d / "short.key"),
                  "ca": str(d / "ca.pem")},
    )  # fmt: skip
    opts = Options(config_dir=tmp_path / "etc", state_dir=tmp_path / "var", say=lambda s: None)
    _, files, _, warnings = prepare(A.parse_answers(data), opts)
    files.discard()
    assert any(re.search(r"short.pem expires in [89] day\(s\)", w) for w in warnings), warnings


def test_walk_test_sees_each_sensor_or_says_which_was_missed(tmp_path, pki):
    _, d = pki
    data = answers_data(
        d,
        free_port(),
        broker={"host": "127.0.0.1", "port": free_port(), "tls": False},
        identity={},
        selftest={"walk_test": True, "walk_timeout_s": 3, "broker_timeout_s": 0.5},
    )
    opts, wiring, said = wired_options(tmp_path, data)

    def installer():
        # Walks past the PIR... only the panic button is pressed.
        while not any("trigger panic-1" in s for s in said):
            time.sleep(0.02)
        time.sleep(0.3)
        wiring.press("panic-1", hold_s=0.2)

    walker = threading.Thread(target=installer, daemon=True)
    walker.start()
    outcome = provision(A.parse_answers(data), opts)
    walker.join(5)
    by_id = {r.name.split()[0]: r for r in outcome.results}
    assert by_id["panic-1"].status == PASS and "triggered after" in by_id["panic-1"].reason
    assert by_id["tamper-1"].status == FAIL
    assert "not triggered within 3 s" in by_id["tamper-1"].reason


def test_cli_flags_give_precise_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "provision", "--non-interactive",
         "--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "var"),
         "--device-id", DEVICE, "--village-code", "13052110420", "--code-year", "2023",
         "--village-name", "东关村", "--broker", "127.0.0.1:1883", "--no-tls",
         "--input", "panic-1:17:panic:NO", "--output", "siren-1:17:siren"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "site.village_code: village code must be exactly 12 digits" in result.stderr
    assert "nothing was written" in result.stderr
    assert not (tmp_path / "etc").exists()
    # Cross-section rules run once every field is valid (agent/config.py cross_check).
    args = [a if a != "13052110420" else "130521104201" for a in result.args]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "outputs[0].pin: pin 17 is already used by inputs[0]" in result.stderr
    assert not (tmp_path / "etc").exists()


def test_interactive_over_stdin_matches_the_answers_file(tmp_path, mosquitto, county_factory):
    """The installer's keystrokes through a pipe, typos included, re-asked until right."""
    county = county_factory(mosquitto.port)
    keystrokes = "\n".join(
        [
            "13052110420",  # 11 digits: re-asked
            "130521104201",
            "2023",
            "东关村",
            "37.06,114.51",
            "y",  # railway
            "京广线",
            "K361+200",
            "K361+100",  # before start: re-asked
            "K361+450",
            "",  # side: default 双线
            "",  # device id: default sb-130521104201-01
            "127.0.0.1",
            str(mosquitto.port),
            "n",  # no TLS on this bench
            str(tmp_path / "nowhere.pub"),  # no such file: re-asked
            str(county_public_key(tmp_path)),
            "panic-1",
            "17",
            "panic",
            "",  # contact default NO for panic
            "",  # no more inputs
            "siren-1",
            "17",  # pin already used by panic-1: the output is re-entered
            "siren",
            "n",
            "siren-1",
            "24",
            "siren",
            "n",
            "",  # no more outputs
            "n",  # no walk test
        ]
    )
    result = subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "provision",
         "--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "var"),
         "--gpio-backend", "mock"],
        input=keystrokes + "\n", capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "village code must be exactly 12 digits (统计用区划代码), got 11" in out
    assert "end K361+100 lies before start K361+200" in out
    assert "pin 17 is already used by inputs[0]" in out
    assert "nowhere.pub: no such file" in out
    assert "unsigned and forged pings refused over the broker" in out
    assert "ALL CHECKS PASSED" in out
    assert county.wait_for(lambda m: any(x.topic.endswith("/register") for x in m), 5)
    interactive = yaml.safe_load((tmp_path / "etc" / "shaobing.yaml").read_text())

    answers = tmp_path / "answers.yaml"
    answers.write_text(
        yaml.safe_dump(
            {
                "device_id": DEVICE,
                "site": {"village_code": "130521104201", "code_year": 2023,
                         "village_name": "东关村", "gps": {"lat": 37.06, "lon": 114.51}},
                "railway": {"line": "京广线", "start": "K361+200", "end": "K361+450",
                            "side": "双线"},
                "broker": {"host": "127.0.0.1", "port": mosquitto.port, "tls": False},
                "inputs": [{"id": "panic-1", "pin": 17, "kind": "panic", "contact": "NO"}],
                "outputs": [{"id": "siren-1", "pin": 24, "kind": "siren", "active_high": True}],
                "gpio_backend": "mock",
                "command_key": "county-command.pub",  # beside the answers file
            },
            allow_unicode=True,
        )
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "provision", "--answers", str(answers),
         "--config-dir", str(tmp_path / "etc2"), "--state-dir", str(tmp_path / "var")],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    from_file = yaml.safe_load((tmp_path / "etc2" / "shaobing.yaml").read_text())
    assert from_file["control"] == {"command_keys": [str(tmp_path / "etc2" / "county-command.pub")]}
    assert interactive["control"] == {
        "command_keys": [str(tmp_path / "etc" / "county-command.pub")]
    }
    # Plain TCP only because the installer said so, and the config says so too.
    assert from_file["mqtt"]["insecure_plaintext"] is True
    assert {**from_file, "control": None} == {**interactive, "control": None}


def test_install_service_writes_the_unit_and_enables_it(tmp_path):
    from shaobing.provisioning.service import install_service

    ran: list[list[str]] = []
    unit, commands = install_service(
        Path("/etc/shaobing"),
        Path("/var/lib/shaobing"),
        root=tmp_path,
        run=lambda argv: ran.append(list(argv)),
        command="/opt/shaobing/.venv/bin/shaobing",
    )
    assert unit == tmp_path / "etc/systemd/system/shaobing.service"
    text = unit.read_text()
    assert (
        "ExecStart=/opt/shaobing/.venv/bin/shaobing run --config /etc/shaobing/shaobing.yaml"
        in (text)
    )
    assert "@SHAOBING@" not in text and mode(unit) == 0o644
    assert ran == commands
    assert ["systemctl", "enable", "--now", "shaobing.service"] in ran
    assert ["chown", "-R", "shaobing:shaobing", "/etc/shaobing", "/var/lib/shaobing"] in ran
    assert (
        text.replace("/opt/shaobing/.venv/bin/shaobing", "@SHAOBING@")
        == (ROOT / "systemd" / "shaobing.service").read_text()
    )


def test_camera_and_model_checks(tmp_path, pki):
    """A camera (a directory of site pictures) delivers a frame; the model loads and
    runs one inference on it. A camera that cannot open fails with a reason."""
    from detection_support import MEDIA, V1, need_shared

    need_shared()
    _, d = pki
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0001.jpg").write_bytes((MEDIA / "cat_720p.jpg").read_bytes())
    data = answers_data(
        d,
        free_port(),
        broker={"host": "127.0.0.1", "port": free_port(), "tls": False},
        identity={},
        inputs=[],
        outputs=[],
        cameras=[
            {"id": "cam-road", "source": str(frames)},
            {"id": "cam-dead", "source": str(tmp_path / "no-such-video.mp4")},
        ],
        detector={"model": str(V1)},
        selftest={"broker_timeout_s": 0.5},
    )
    opts, _, _ = wired_options(tmp_path, data, register=False)
    outcome = provision(A.parse_answers(data), opts)
    by_kind = {(r.kind, r.name.split()[0]): r for r in outcome.results}
    cam = by_kind[("camera", "cam-road")]
    assert cam.status == PASS and "1280x720 frame" in cam.reason, cam
    dead = by_kind[("camera", "cam-dead")]
    assert dead.status == FAIL and "does not open" in dead.reason, dead
    model = next(r for r in outcome.results if r.kind == "model")
    assert model.status == PASS and "one inference in" in model.reason, model
    assert outcome.report["inventory"]["cameras"] == ["cam-road", "cam-dead"]


def test_broken_model_file_is_a_failed_check_with_the_reason(tmp_path, pki):
    _, d = pki
    bad = tmp_path / "detect.tflite"
    bad.write_bytes(b"this is not a model")
    data = answers_data(
        d,
        free_port(),
        broker={"host": "127.0.0.1", "port": free_port(), "tls": False},
        identity={},
        inputs=[],
        outputs=[],
        cameras=[{"id": "cam-1", "source": str(tmp_path / "none")}],
        detector={"model": str(bad)},
        selftest={"broker_timeout_s": 0.5},
    )
    opts, _, _ = wired_options(tmp_path, data, register=False)
    outcome = provision(A.parse_answers(data), opts)
    model = next(r for r in outcome.results if r.kind == "model")
    assert model.status == FAIL and "not a TFLite flatbuffer" in model.reason, model


def test_serial_devices_answer_their_profile(tmp_path, pki):
    from shaobing.simulator.modbus_device import SimulatedDetector, SimulatedModbusBus

    _, d = pki
    sim = SimulatedModbusBus([SimulatedDetector(2, "pulse_fence_2")], transport="pty")
    sim.start()
    try:
        data = answers_data(
            d,
            free_port(),
            broker={"host": "127.0.0.1", "port": free_port(), "tls": False},
            identity={},
            inputs=[],
            outputs=[],
            serial={
                "buses": [
                    {"id": "rs485-1", "url": sim.url, "timeout_s": 0.2},
                    {"id": "rs485-2", "url": str(tmp_path / "ttyUSB9"), "timeout_s": 0.2},
                ],
                "modbus": [
                    {"id": "fence-1", "bus": "rs485-1", "unit": 2, "profile": "pulse_fence_2",
                     "retries": 0, "zones": [{"device_zone": 1, "zone": "post"}]},
                    {"id": "fence-9", "bus": "rs485-1", "unit": 9, "profile": "pulse_fence_2",
                     "retries": 0, "zones": [{"device_zone": 1, "zone": "post"}]},
                ],
                "contact_id": [{"id": "host-1", "bus": "rs485-2", "default_zone": "post"}],
            },
            selftest={"broker_timeout_s": 0.5},
        )  # fmt: skip
        opts, _, _ = wired_options(tmp_path, data, register=False)
        outcome = provision(A.parse_answers(data), opts)
    finally:
        sim.stop()
    by_id = {r.name.split()[0]: r for r in outcome.results if r.kind == "serial device"}
    assert by_id["fence-1"].status == PASS and "answers its profile" in by_id["fence-1"].reason
    assert by_id["fence-9"].status == FAIL and "no valid answer" in by_id["fence-9"].reason
    assert by_id["host-1"].status == FAIL and "cannot open" in by_id["host-1"].reason
