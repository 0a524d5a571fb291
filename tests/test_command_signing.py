"""Issue 12 items 1, 2, 4: only the county can command a box.

Over a real Mosquitto: unsigned, forged, unknown-key and box-HMAC-signed
commands are refused with their codes and change nothing; county-signed ones
run; `shaobing sign-command` output is accepted by a real `shaobing run`.
Also: the config check's policy, key-file modes, health warnings, and a
hypothesis fuzz of the signature fields against the verifier.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from agent_harness import SimulatedPost
from conftest import EXAMPLE, wait_for
from county_key import COUNTY, county_public_key, example_in, local_test_config
from hypothesis import given, settings
from hypothesis import strategies as st
from linkage_helpers import linkage_config
from platform_client import Platform

from shaobing.agent.command_envelope import CommandError, Envelope, canonical, sign
from shaobing.agent.command_signature import CommandVerifier, sign_ed25519, signed_command
from shaobing.agent.config import ControlConfig, load_config
from shaobing.agent.status_file import status_path
from shaobing.agent.tls import TlsSetupError, client_context
from shaobing.cli.main import main
from shaobing.core.signing import KeyFileError, Keyring, generate, write_keypair

CLI = [sys.executable, "-m", "shaobing.cli.main"]
DEVICE = "sb-130521-dongguan-01"
HMAC_KEY = b"per-box-shared-secret-0123456789"
ROTATED = generate()  # the county's next key, during a rotation


def error(response: dict) -> str:
    assert response["ok"] is False, response
    return response["error"]["code"]


@pytest.fixture
def post(tmp_path, mosquitto):
    made: list = []

    def start(control: dict | None = None) -> tuple[SimulatedPost, Platform]:
        config = linkage_config(tmp_path, mosquitto.port, control=control, cameras=[])
        path = tmp_path / "shaobing.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
        path.chmod(0o600)
        box = SimulatedPost(load_config(path), config_path=path)
        made.append(box)
        assert box.agent.uplink.connected.wait(10)
        platform = Platform(mosquitto.port, box.agent.topics.base, config.device.id)
        made.append(platform)
        return box, platform

    yield start
    for item in reversed(made):
        (item.close if isinstance(item, Platform) else item.stop)()


def test_only_county_signed_commands_change_anything(post, tmp_path):
    box, platform = post()
    state = box.agent.arming.state("crossing")
    disarm = {"zones": ["crossing"]}
    other = generate()  # another county's key, or one made on a stolen box
    forged = platform.body("disarm", disarm, key=other)
    forged["kid"] = COUNTY.kid  # claims to be the county's
    forged = {**forged, "sig": other.sign(canonical(forged, "disarm", DEVICE))}
    refused = {
        "unsigned": platform.body("disarm", disarm, signed=False),
        "unknown_key": platform.body("disarm", disarm, key=other),
        "bad_signature": forged,
    }
    for code, body in refused.items():
        assert error(platform.send("disarm", body)) == code, code
    # A per-box HMAC signature is no use where the county's Ed25519 is required.
    hmac_signed = platform.body("disarm", disarm, key=HMAC_KEY)
    response = platform.send("disarm", hmac_signed)
    assert error(response) == "bad_signature" and "county's Ed25519" in response["error"]["message"]
    # Re-aimed at another box, or tampered after signing.
    assert error(platform.command("disarm", disarm, sign_as=("disarm", "sb-other-01"))) == (
        "bad_signature"
    )
    tampered = platform.body("arm", {"zones": ["crossing"]})
    tampered["args"] = {"zones": "all"}
    assert error(platform.send("arm", tampered)) == "bad_signature"
    assert box.agent.arming.state("crossing") == state
    assert box.agent.control.stats.executed == 0
    # The county's signature: executed.
    response = platform.command("disarm", disarm)
    assert response["ok"], response
    assert box.agent.arming.state("crossing").state == "disarmed"
    health = box.agent._sections()["warnings"]()
    assert "commands_unsigned" not in health and "mqtt_plaintext" in health


def test_two_county_keys_during_a_rotation(post, tmp_path):
    (tmp_path / "next").mkdir()
    rotated = county_public_key(tmp_path / "next", ROTATED)
    _box, platform = post({"command_keys": [str(county_public_key(tmp_path)), str(rotated)]})
    assert platform.command("ping")["ok"]
    assert platform.command("ping", key=ROTATED)["ok"]
    assert error(platform.command("ping", key=generate())) == "unknown_key"


def test_per_box_hmac_is_an_explicit_alternative(post, monkeypatch):
    monkeypatch.setenv("SHAOBING_BOX_KEY", HMAC_KEY.decode())
    _box, platform = post({"key_env": "SHAOBING_BOX_KEY"})
    assert platform.command("ping", key=HMAC_KEY)["ok"]
    assert platform.command("ping")["ok"]  # the county key is configured too
    assert error(platform.command("ping", key=b"another box's key")) == "bad_signature"
    assert error(platform.command("ping", signed=False)) == "unsigned"


def test_insecure_unsigned_accepts_unsigned_and_says_so(post, caplog):
    caplog.set_level(logging.WARNING, logger="shaobing.security")
    box, platform = post({"insecure_unsigned": True})
    assert platform.command("ping", signed=False)["ok"]
    # A signature that is present is still checked.
    assert error(platform.command("ping", key=generate())) == "unknown_key"
    assert box.agent._sections()["warnings"]() == [
        "gpio_mock",
        "mqtt_plaintext",
        "commands_unsigned",
    ]
    warned = [r.fields.get("warning") for r in caplog.records if hasattr(r, "fields")]
    assert {"mqtt_plaintext", "commands_unsigned"} <= set(warned)


def test_config_readable_by_others_is_warned_at_start(tmp_path, mosquitto, caplog):
    caplog.set_level(logging.WARNING, logger="shaobing.security")
    config = linkage_config(tmp_path, mosquitto.port, cameras=[])
    path = tmp_path / "shaobing.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    path.chmod(0o644)
    box = SimulatedPost(load_config(path), config_path=path)
    try:
        assert any("readable by others" in r.getMessage() for r in caplog.records)
    finally:
        box.stop()


# ---- config check ------------------------------------------------------------


def test_config_check_refuses_control_without_keys_and_plaintext_off_the_box(tmp_path):
    secure = yaml.safe_load(example_in(tmp_path / "etc"))  # the files it names, in place
    unsigned = json.loads(json.dumps(secure))
    unsigned["control"].pop("command_keys")
    said_unsigned = json.loads(json.dumps(unsigned))
    said_unsigned["control"]["insecure_unsigned"] = True
    plaintext = json.loads(json.dumps(said_unsigned))
    plaintext["mqtt"].pop("tls")
    said_plaintext = json.loads(json.dumps(plaintext))
    said_plaintext["mqtt"]["insecure_plaintext"] = True
    old_switch = json.loads(json.dumps(said_plaintext))
    old_switch["control"]["require_signature"] = False  # says what replaced it
    open_keys = yaml.safe_load(example_in(tmp_path / "etc2"))
    (tmp_path / "etc2" / "device.key").chmod(0o640)
    (tmp_path / "box.key").write_bytes(HMAC_KEY)
    (tmp_path / "box.key").chmod(0o644)
    open_keys["control"]["key_file"] = str(tmp_path / "box.key")
    files = {}
    for name, data in [
        ("secure", secure), ("unsigned", unsigned), ("said_unsigned", said_unsigned),
        ("plaintext", plaintext), ("said_plaintext", said_plaintext), ("old_switch", old_switch),
        ("open_keys", open_keys),
    ]:  # fmt: skip
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = subprocess.run(
        [*CLI, "config", "check", *map(str, files.values())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    for name in ("secure", "said_unsigned", "said_plaintext"):
        assert f"{files[name]}: ok" in result.stdout, name
    problems: dict[str, str] = {}  # file name -> its problem lines
    for line in result.stderr.splitlines():
        if re.match(r"\d+ of \d+ file\(s\) ok", line):
            continue  # the closing count of several files
        if not line.startswith(" "):
            name = Path(line.split(": ")[0]).stem
            problems[name] = ""
        else:
            problems[name] += line + "\n"
    assert set(problems) == {"unsigned", "plaintext", "old_switch", "open_keys"}, result.stderr
    assert "mqtt.tls.key: " in problems["open_keys"] and "(mode 0640)" in problems["open_keys"]
    assert "control.key_file: " in problems["open_keys"]
    assert "is readable by others (mode 0644)" in problems["open_keys"]
    assert "control.command_keys" in problems["unsigned"]
    assert "insecure_unsigned: true" in problems["unsigned"]
    assert "mqtt.tls" in problems["plaintext"] and "mqtt.county.example" in problems["plaintext"]
    assert "require_signature was removed" in problems["old_switch"]


# ---- key files -----------------------------------------------------------------


def test_key_files_readable_by_others_are_refused(tmp_path, capsys):
    hmac_file = tmp_path / "command.key"
    hmac_file.write_bytes(HMAC_KEY)
    hmac_file.chmod(0o644)
    data = local_test_config(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")), tmp_path)
    data["control"]["key_file"] = str(hmac_file)
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"].update(backend="mock", allow_mock=True)
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = subprocess.run(
        [*CLI, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 78, result.stderr
    assert f"control.key_file {hmac_file} is readable by others (mode 0644)" in result.stderr
    assert f"chmod 600 {hmac_file}" in result.stderr
    # The county's private key, for sign-command.
    write_keypair(tmp_path / "county.key", tmp_path / "county.pub")
    (tmp_path / "county.key").chmod(0o640)
    rc = main(["sign-command", "--key", str(tmp_path / "county.key"), "--device", DEVICE,
               "--command", "ping"])  # fmt: skip
    assert rc == 2 and "readable by others (mode 0640)" in capsys.readouterr().err


def test_tls_client_key_readable_by_others_is_refused(tmp_path):
    from shaobing.agent.config import TlsConfig
    from shaobing.simulator.pki import CountyCA

    ca = CountyCA()
    ca.write_ca(tmp_path / "ca.pem")
    cert, key = ca.client(DEVICE).write(tmp_path, "device")
    client_context(TlsConfig(ca=tmp_path / "ca.pem", cert=cert, key=key))  # 0600: fine
    key.chmod(0o644)
    with pytest.raises(TlsSetupError, match=r"mqtt\.tls\.key .* is readable by others"):
        client_context(TlsConfig(ca=tmp_path / "ca.pem", cert=cert, key=key))


# ---- sign-command against a real `shaobing run` -----------------------------------


def test_sign_command_output_is_accepted_by_a_running_agent(tmp_path, mosquitto, capsys):
    keys = tmp_path / "county"
    assert main(["keys", "generate", "--out", str(keys)]) == 0
    assert "key id" in capsys.readouterr().out
    assert main(["keys", "generate", "--out", str(keys)]) == 1  # never overwritten silently
    assert oct(keys.with_suffix(".key").stat().st_mode & 0o777) == "0o600"
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["mqtt"].update(host="127.0.0.1", port=mosquitto.port, reconnect_max_s=1)
    data["mqtt"].pop("tls")
    data["control"]["command_keys"] = [str(keys.with_suffix(".pub"))]
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"].update(backend="mock", allow_mock=True)
    data["health"]["interval_s"] = 1
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cfg.chmod(0o600)
    agent = subprocess.Popen(
        [*CLI, "run", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        status = status_path(tmp_path)
        assert wait_for(lambda: status.exists() and '"connected": true' in status.read_text(), 60)
        sign = [
            "sign-command", "--key", str(keys.with_suffix(".key")), "--device", DEVICE,
            "--command", "disarm", "--args", '{"zones": ["crossing"]}', "--ttl", "60",
        ]  # fmt: skip
        capsys.readouterr()
        assert main(sign) == 0
        body = json.loads(capsys.readouterr().out)
        assert body["kid"] == load_kid(keys.with_suffix(".pub"))
        broker = ["--broker", f"127.0.0.1:{mosquitto.port}", "--village", "130521104201"]
        assert main([*sign, *broker]) == 0
        answer = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert answer["ok"] and answer["result"]["zones"]["crossing"]["state"] == "disarmed"
        # The printed (not published) one is a valid command too: a county script sends it.
        platform = Platform(mosquitto.port, f"shaobing/v1/130521104201/{DEVICE}", DEVICE)
        try:
            assert platform.send("disarm", body)["ok"]
            assert error(platform.command("arm", {"zones": "all"})) == "unknown_key"
            assert error(platform.command("arm", {"zones": "all"}, signed=False)) == "unsigned"
        finally:
            platform.close()
        assert wait_for(lambda: "mqtt_plaintext" in status.read_text(), 30)
    finally:
        agent.kill()
        agent.wait(10)


def load_kid(path: Path) -> str:
    from shaobing.core.signing import load_public

    return load_public(path).kid


# ---- hypothesis: the signature fields ---------------------------------------------

VERIFIER = CommandVerifier(Keyring([COUNTY.public]), None, insecure_unsigned=False)
KIDS = st.text("0123456789abcdef", min_size=16, max_size=16)
SIGS = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=86,
               max_size=86)  # fmt: skip


def _code(body: dict, command: str = "ping") -> str:
    try:
        VERIFIER.check(body, command, DEVICE, Envelope.model_validate(body))
    except CommandError as exc:
        return exc.code
    return "ok"


@settings(max_examples=300, deadline=None)
@given(
    kid=st.none() | KIDS | st.just(COUNTY.kid),
    sig=st.none() | SIGS | st.text("0123456789abcdef", min_size=64, max_size=64),
    issued=st.integers(0, 2**41),
    args=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_signature_fields_fuzz(kid, sig, issued, args):
    body = {"v": 1, "id": "c-1", "issued_ms": issued, "expires_ms": issued + 1, "args": args}
    good = sign_ed25519(body, "ping", DEVICE, COUNTY)
    assert _code(good) == "ok"
    assert _code(good, "restart") == "bad_signature"  # bound to the command
    fields = {k: v for k, v in (("kid", kid), ("sig", sig)) if v is not None}
    mangled = {**body, **fields}
    expected = (
        "unsigned" if sig is None and kid is None
        else "bad_signature" if sig is None  # kid without sig
        else "unknown_key" if kid is not None and kid != COUNTY.kid
        else "bad_signature"
    )  # fmt: skip
    if mangled.get("sig") == good["sig"] and mangled.get("kid") == COUNTY.kid:
        expected = "ok"
    assert _code(mangled) == expected


def test_signed_command_helper_and_hmac_alternative():
    body = signed_command(COUNTY, DEVICE, "ping", ttl_s=30, now_ms=1_000, command_id="c-9")
    assert body["expires_ms"] == 31_000 and body["kid"] == COUNTY.kid and len(body["sig"]) == 86
    assert _code(body) == "ok"
    hmac_box = CommandVerifier(Keyring([]), HMAC_KEY, insecure_unsigned=False)
    plain = {k: v for k, v in body.items() if k not in ("kid", "sig")}
    plain["sig"] = sign(plain, "ping", DEVICE, HMAC_KEY)
    hmac_box.check(plain, "ping", DEVICE, Envelope.model_validate(plain))
    with pytest.raises(CommandError) as info:
        hmac_box.check(body, "ping", DEVICE, Envelope.model_validate(body))
    assert info.value.code == "unknown_key"


def test_key_loading_errors_name_the_field(tmp_path):
    from shaobing.agent.control import verifier_for

    with pytest.raises(KeyFileError, match=r"control\.command_keys: public key .*absent\.pub"):
        verifier_for(ControlConfig(command_keys=[tmp_path / "absent.pub"]))
    swappable = county_public_key(tmp_path)
    swappable.chmod(0o666)
    with pytest.raises(KeyFileError, match=r"writable by others \(mode 0666\)"):
        verifier_for(ControlConfig(command_keys=[swappable]))
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        verifier_for(ControlConfig(command_keys=[junk]))


def test_the_signing_snippet_in_docs_mqtt_md_makes_a_valid_command(tmp_path, monkeypatch):
    """docs/mqtt.md shows how to sign with only `cryptography`; it must stay right."""
    doc = (EXAMPLE.parents[1] / "docs" / "mqtt.md").read_text(encoding="utf-8")
    (snippet,) = re.findall(r"```python\n(import base64.*?)```", doc, re.S)
    write_keypair(tmp_path / "county-command.key", tmp_path / "county-command.pub")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(snippet, scope)
    body = scope["body"]
    verifier = CommandVerifier(
        Keyring.load([tmp_path / "county-command.pub"]), None, insecure_unsigned=False
    )
    verifier.check(body, "disarm", DEVICE, Envelope.model_validate(body))
