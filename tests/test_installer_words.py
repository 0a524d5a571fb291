"""Issue 14 item 5: what reaches the installer's screen says what is wrong and what to do.

No key or CSR for plain MQTT; no raw library text (gpiozero's fallback warnings,
JSON log lines in the self-test table, ``[Errno -2] ...``, paho's ``Unspecified
error``); a plain-MQTT config at a TLS port says the port expects TLS, in the
self-test, in `run`'s log and in `status`, in both languages.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, wait_for
from county_key import county_public_key
from hypothesis import given
from hypothesis import strategies as st
from tls_helpers import county_pki, start_tls_broker

from shaobing.agent import link_words
from shaobing.agent.config import MqttConfig
from shaobing.agent.status_file import status_path
from shaobing.core.i18n import catalogue

CLI = [sys.executable, "-m", "shaobing.cli.main"]
DEVICE = "sb-130521104201-01"
JSON_LINE = re.compile(r'^\s*\{"ts"', re.M)
# Library text an installer must never see (gpiozero, Python warnings, socket, paho, pydantic).
RAW = (
    "PinFactoryFallback",
    "warnings.warn",
    "Falling back from",
    "Unable to load any default pin factory",
    "[Errno",
    "Unspecified error",
    "Protocol error",
    "Traceback",
    "Input should be",
    "String should match",
)


def _provision(tmp_path: Path, broker: str, *extra: str, lang: str = "en", env=None):
    env = {**os.environ, **(env or {})}
    env.pop("GPIOZERO_PIN_FACTORY", None)
    return subprocess.run(
        [*CLI, "--lang", lang, "provision", "--non-interactive",
         "--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "var"),
         "--device-id", DEVICE, "--village-code", "130521104201", "--code-year", "2023",
         "--village-name", "东关村", "--broker", broker, "--no-tls", "--no-register",
         "--command-key", str(county_public_key(tmp_path)), *extra],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_no_tls_makes_no_key_no_csr_and_lists_no_certificate(tmp_path, mosquitto):
    result = _provision(
        tmp_path, f"127.0.0.1:{mosquitto.port}", "--gpio-backend", "mock",
        "--input", "panic-1:17:panic:NO",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    etc = tmp_path / "etc"
    assert not (etc / "device.key").exists() and not (etc / "device.csr").exists()
    report = json.loads((etc / "provisioning-report.json").read_text())
    assert set(report["files"]) == {"config", "command_key"}, report["files"]
    assert report["certificate"] is None and "csr" not in report["identity"]
    assert "device.csr" not in result.stdout and "no device certificate yet" not in result.stdout
    assert "none: plain MQTT without TLS" in result.stdout
    assert "device.csr" not in (etc / "provisioning-report.txt").read_text()


@pytest.fixture
def tls_broker(tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    county_pki(pki)
    broker = start_tls_broker(pki / "ca.pem", pki / "server.pem", pki / "server.key")
    yield broker
    broker.close()


def test_plain_mqtt_at_a_tls_port_says_so_everywhere_with_no_library_text(tmp_path, tls_broker):
    # gpio.backend auto on a machine without a GPIO library: gpiozero warns four times.
    result = _provision(
        tmp_path, f"127.0.0.1:{tls_broker.tls_port}", "--input", "panic-1:17:panic:NO",
        lang="zh-CN",
    )  # fmt: skip
    screen = result.stdout + result.stderr
    assert result.returncode == 1, screen
    for raw in RAW:
        assert raw not in screen, (raw, screen)
    assert not JSON_LINE.search(screen), screen
    zh = catalogue("zh-CN")
    expects_tls = zh(link_words.PLAIN_TO_TLS).format(host="127.0.0.1", port=tls_broker.tls_port)
    assert expects_tls in screen, screen
    assert "没有可用的 GPIO 库（试过 lgpio" in screen and "shaobing[pi]" in screen, screen
    # The agent's log lines went beside the report, with the library's own words.
    log = (tmp_path / "etc" / "provisioning.log").read_text()
    assert "expects TLS" in log and "Errno 104" in log, log
    assert str(tmp_path / "etc" / "provisioning.log") in result.stdout

    # The daemon on the same config: its log and `shaobing status` say the same.
    cfg = tmp_path / "etc" / "shaobing.yaml"
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data["inputs"] = []
    data["health"] = {"interval_s": 1}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    stderr = tmp_path / "run.err"
    with stderr.open("w") as err:
        agent = subprocess.Popen([*CLI, "run", "--config", str(cfg)], stderr=err)
    try:
        wait_for(lambda: "expects TLS" in stderr.read_text(), 60, "run's log line")

        def refusal() -> str | None:
            try:
                doc = json.loads(status_path(tmp_path / "var").read_text())
            except (OSError, ValueError):
                return None
            return ((doc.get("health") or {}).get("uplink") or {}).get("last_refusal")

        wait_for(lambda: "expects TLS" in (refusal() or ""), 60, "status.json's last_refusal")
        for lang, words in (("zh-CN", expects_tls), ("en", "expects TLS")):
            status = subprocess.run(
                [*CLI, "--lang", lang, "status", "--state-dir", str(tmp_path / "var")],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert words in status.stdout, status.stdout + status.stderr
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
    assert "Unspecified error" not in stderr.read_text().split("detail")[0]


@pytest.mark.parametrize(
    "error",
    [
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        "[Errno -2] Name or service not known",
    ],
)
def test_a_broker_name_that_does_not_resolve_is_called_dns(error):
    plain = MqttConfig(host="county.example", port=1883, insecure_plaintext=True)
    said = link_words.explain_failure(error, plain, "county.example", 1883, in_handshake=True)
    assert said == link_words.DNS_FAILED.format(host="county.example")
    assert "Errno" not in said and "/etc/resolv.conf" in said
    zh = link_words.translate(said, catalogue("zh-CN"))
    assert "无法解析" in zh and "county.example" in zh


def test_protocol_error_before_connack_names_the_port():
    plain = MqttConfig(host="h", port=8883, insecure_plaintext=True)
    said = link_words.explain_failure("Protocol error", plain, "h", 8883, before_connack=True)
    assert said == link_words.PLAIN_TO_TLS.format(host="h", port=8883)
    # A sentence not of this module passes through translate untouched.
    assert link_words.translate("connection refused", catalogue("zh-CN")) == "connection refused"


def test_answers_file_problems_say_the_value_and_what_is_expected(tmp_path):
    from shaobing.provisioning import answers as A

    data = {
        "device_id": DEVICE,
        "site": {"village_code": "130521104201", "code_year": 2023, "village_name": "东关村"},
        "broker": {"host": "127.0.0.1", "port": "x", "tls": False},
        "gpio_backend": "foo",
        "selftest": {"walk_timeout_s": -1},
    }
    with pytest.raises(A.AnswersError) as info:
        A.parse_answers(data)
    said = {p.path: p.message for p in info.value.problems}
    assert said["broker.port"] == "'x' is not a whole number (8883 for TLS, 1883 for plain MQTT)"
    assert said["gpio_backend"].startswith("'foo' is not one of 'auto'")
    assert said["selftest.walk_timeout_s"] == "-1 is out of range: it must be more than 0"
    assert not any(raw in str(info.value) for raw in RAW), info.value


def test_kinds_typed_in_chinese_are_taken_and_unknown_ones_listed():
    from shaobing.drivers.gpio_config import INPUT_KINDS, InputConfig, OutputConfig

    def sensor(kind: str) -> InputConfig:
        return InputConfig(id="x", pin=17, kind=kind, contact="NO", zone="post")

    assert sensor("紧急按钮").kind == "panic" and sensor("门磁").kind == "door"
    assert sensor("ＰＩＲ").kind == "pir"  # full-width, from a Chinese input method
    assert OutputConfig(id="y", pin=24, kind="警号").kind == "siren"
    with pytest.raises(ValueError) as info:
        sensor("烟感")
    message = str(info.value)
    assert "'烟感' is not a sensor kind" in message and "Input should be" not in message
    for kind, names in INPUT_KINDS.items():
        assert f"{kind} ({names[0]})" in message


@given(st.text(max_size=12))
def test_any_typed_kind_is_a_known_kind_or_a_listed_refusal(text):
    from pydantic import ValidationError

    from shaobing.drivers.gpio_config import INPUT_KINDS, InputConfig

    try:
        cfg = InputConfig(id="x", pin=17, kind=text, contact="NO", zone="post")
    except ValidationError as exc:
        (error,) = exc.errors()
        assert "is not a sensor kind: one of pir (红外)" in error["msg"], error
    else:
        assert cfg.kind in INPUT_KINDS


def _heads() -> list[str]:
    """What the code says for DNS, the wrong protocol on a port, clock and certificate
    failures, and a missing GPIO library: each sentence up to its first parenthesis."""
    from shaobing.agent import tls
    from shaobing.drivers.gpio import NO_PIN_FACTORY

    sentences = [*link_words.SENTENCES, *(m for _n, m in tls._EXPLANATIONS), NO_PIN_FACTORY]
    return sorted({s.split(" (")[0].split(": ")[0] for s in sentences})


@pytest.mark.parametrize("head", _heads())
def test_the_troubleshooting_table_has_a_row_for_each_message(head):
    guide = (ROOT / "docs" / "installer-guide.md").read_text(encoding="utf-8")
    rows = [line for line in guide.splitlines() if line.startswith("| `")]
    parts = re.split(r"\{\w+\}", head)
    pattern = re.compile(".+?".join(re.escape(p) for p in parts))
    assert any(pattern.search(row) for row in rows), f"no row in the guide's tables for {head!r}"


def test_tls_at_a_plain_port_says_so_in_the_installers_language(tmp_path, mosquitto):
    from shaobing.provisioning import answers as A
    from shaobing.provisioning.flow import Options, provision

    pki = tmp_path / "pki"
    pki.mkdir()
    county_pki(pki).client(DEVICE).write(pki, "device")
    data = {
        "device_id": DEVICE,
        "site": {"village_code": "130521104201", "code_year": 2023, "village_name": "东关村"},
        "broker": {"host": "127.0.0.1", "port": mosquitto.port},
        "identity": {"mode": "install", "cert": str(pki / "device.pem"),
                     "key": str(pki / "device.key"), "ca": str(pki / "ca.pem")},
        "gpio_backend": "mock",
        "command_key": str(county_public_key(tmp_path)),
    }  # fmt: skip
    said: list[str] = []
    opts = Options(
        config_dir=tmp_path / "etc", state_dir=tmp_path / "var", say=said.append,
        register=False, lang="zh-CN",
    )  # fmt: skip
    outcome = provision(A.parse_answers(data), opts)
    (broker,) = [r for r in outcome.results if r.kind == "broker"]
    # English in the result (the JSON report is for machines), Chinese on the screen.
    sentence = link_words.TLS_TO_PLAIN
    assert broker.reason == sentence.format(host="127.0.0.1", port=mosquitto.port), broker
    expected = catalogue("zh-CN")(sentence).format(host="127.0.0.1", port=mosquitto.port)
    assert any(line.endswith(expected) for line in said), said
    assert not any(raw in "\n".join(said) for raw in RAW), said


def test_a_login_refusal_is_not_reported_as_protocol_error(tmp_path):
    """Mosquitto refuses an anonymous login with CONNACK 'Not authorized'; paho then
    reports the disconnect as 'Protocol error', which used to overwrite the reason."""
    from shaobing.provisioning import answers as A
    from shaobing.provisioning.flow import Options, provision
    from shaobing.simulator.broker import Mosquitto, free_port

    port = free_port()
    broker = Mosquitto(port, listener=f"listener {port} 127.0.0.1\nallow_anonymous false\n")
    broker.start()
    try:
        data = {
            "device_id": DEVICE,
            "site": {"village_code": "130521104201", "code_year": 2023, "village_name": "东关村"},
            "broker": {"host": "127.0.0.1", "port": port, "tls": False},
            "gpio_backend": "mock",
            "command_key": str(county_public_key(tmp_path)),
        }
        opts = Options(
            config_dir=tmp_path / "etc", state_dir=tmp_path / "var", say=lambda _s: None,
            register=False,
        )  # fmt: skip
        outcome = provision(A.parse_answers(data), opts)
    finally:
        broker.close()
    (check,) = [r for r in outcome.results if r.kind == "broker"]
    assert check.reason == link_words.LOGIN_REFUSED.format(reason="Not authorized", device=DEVICE)


@pytest.mark.parametrize(
    ("error", "sentence"),
    [
        (ConnectionRefusedError(111, "Connection refused"), link_words.REFUSED),
        (OSError(101, "Network is unreachable"), link_words.UNREACHABLE),
        (OSError(113, "No route to host"), link_words.UNREACHABLE),
    ],
)
def test_socket_errors_are_said_in_words(error, sentence):
    plain = MqttConfig(host="county.example", port=1883, insecure_plaintext=True)
    said = link_words.explain_failure(error, plain, "county.example", 1883, in_handshake=True)
    assert said == sentence.format(host="county.example", port=1883)
    assert "Errno" not in said


def test_first_run_without_a_certificate_says_what_to_do_not_openssl(tmp_path, tls_broker):
    from shaobing.provisioning import answers as A
    from shaobing.provisioning.flow import Options, provision
    from shaobing.provisioning.selftest import NO_CERT_YET

    data = {
        "device_id": DEVICE,
        "site": {"village_code": "130521104201", "code_year": 2023, "village_name": "东关村"},
        "broker": {"host": "127.0.0.1", "port": tls_broker.tls_port},
        "identity": {"mode": "generate", "ca": str(tmp_path / "pki" / "ca.pem")},
        "gpio_backend": "mock",
        "command_key": str(county_public_key(tmp_path)),
    }
    said: list[str] = []
    opts = Options(
        config_dir=tmp_path / "etc", state_dir=tmp_path / "var", say=said.append,
        register=False, lang="zh-CN",
    )  # fmt: skip
    outcome = provision(A.parse_answers(data), opts)
    (broker,) = [r for r in outcome.results if r.kind == "broker"]
    assert broker.reason == NO_CERT_YET.format(csr="device.csr"), broker
    expected = catalogue("zh-CN")(NO_CERT_YET).format(csr="device.csr")
    assert any(line.endswith(expected) for line in said), said
    assert not any(raw in "\n".join(said) for raw in (*RAW, "[SSL", "_ssl.c")), said


@given(st.sampled_from(link_words.SENTENCES), st.data())
def test_reworded_reasons_round_trip_and_never_fail(sentence, data):
    from shaobing.core.i18n import reword
    from shaobing.provisioning.selftest import REASONS

    names = {n for _t, n, _s, _c in string.Formatter().parse(sentence) if n}
    values = {n: data.draw(st.text(min_size=1, max_size=20), label=n) for n in names}
    text = sentence.format(**values)
    known = (*REASONS, *link_words.SENTENCES)
    assert reword(text, known, str) == text  # English in, the same English out
    assert isinstance(reword(text, known, catalogue("zh-CN")), str)
