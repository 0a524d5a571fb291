"""`shaobing config check` past the file (issue 14 item 6): certificates against their key,
the model and its labels, did-you-mean for unknown keys, full-width colons, YAML lines."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import EXAMPLE
from county_key import example_in
from detection_support import V1, need_shared
from hypothesis import given, settings
from hypothesis import strategies as st

from shaobing.agent.config import ConfigError, parse_config
from shaobing.agent.config_check import deep_problems
from shaobing.simulator.pki import CountyCA

GOOD = EXAMPLE.read_text(encoding="utf-8")


def _check(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _with(tmp_path, **sections):
    data = yaml.safe_load(example_in(tmp_path / "etc"))  # the files it names, in place
    data.update(sections)
    path = tmp_path / "post.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_certificate_that_does_not_match_its_key_or_expired_is_named(tmp_path):
    ca = CountyCA()
    ca_path = ca.write_ca(tmp_path / "ca.pem")
    good_cert, good_key = ca.client("post-1").write(tmp_path, "good")
    other_cert, _ = ca.client("post-1").write(tmp_path, "other")
    old_cert, old_key = ca.client("post-1", days=1, start_days_ago=10).write(tmp_path, "old")
    mqtt = yaml.safe_load(GOOD)["mqtt"]

    def tls(cert, key):
        return {
            **mqtt,
            "port": 8883,
            "tls": {"ca": str(ca_path), "cert": str(cert), "key": str(key)},
        }

    assert _check(_with(tmp_path, mqtt=tls(good_cert, good_key))).returncode == 0
    run = _check(_with(tmp_path, mqtt=tls(other_cert, good_key)))
    assert run.returncode == 1
    assert "mqtt.tls.key: " in run.stderr and "is not the key of the certificate" in run.stderr
    run = _check(_with(tmp_path, mqtt=tls(old_cert, old_key)))
    assert run.returncode == 1 and "expired on" in run.stderr


def test_labels_the_model_does_not_know_and_a_missing_model_are_named(tmp_path):
    need_shared()
    zone = {"id": "crossing", "polygon": [[0, 0], [1, 0], [1, 1]], "labels": ["persn", "汽车"]}
    cam = {"id": "cam-1", "source": "sim:empty", "zones": [zone], "filters": {"cars": {}}}
    path = _with(tmp_path, cameras=[cam], detector={"model": str(V1)})
    run = _check(path)
    assert run.returncode == 1, run.stdout
    assert "label 'persn' is not one the model knows; did you mean 'person'?" in run.stderr
    assert "label '汽车' is not one the model knows; labels are the model's English names" in (
        run.stderr
    )
    assert "cameras[0].filters.cars: label 'cars' is not one the model knows; did you mean" in (
        run.stderr
    )
    path = _with(tmp_path, cameras=[cam], detector={"model": str(tmp_path / "nope.tflite")})
    run = _check(path)
    assert "detector.model: model file" in run.stderr and "does not exist" in run.stderr


def test_the_summary_counts_cameras_and_serial_devices(tmp_path):
    need_shared()
    cam = {"id": "cam-1", "source": "sim:empty"}
    run = _check(_with(tmp_path, cameras=[cam], detector={"model": str(V1)}))
    assert run.returncode == 0, run.stderr
    assert "1 camera(s), " in run.stdout and " serial device(s))" in run.stdout


def test_unknown_keys_get_a_did_you_mean():
    text = GOOD.replace("  village_code:", "  vilage_code:", 1)
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert any(
        p.path == "site.vilage_code" and "did you mean 'village_code'?" in p.message
        for p in exc.value.problems
    ), exc.value.problems
    text = GOOD.replace("bounce_ms", "bounse_ms", 1) if "bounce_ms" in GOOD else GOOD
    text = text.replace("  path: /var/lib/shaobing/outbox.db", "  pth: /var/lib/shaobing/outbox.db")
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert any("did you mean 'path'?" in p.message for p in exc.value.problems)


def test_a_full_width_colon_is_named_with_its_line():
    lines = GOOD.splitlines()
    n = next(i for i, line in enumerate(lines) if line.strip().startswith("village_name:"))
    lines[n] = lines[n].replace("village_name:", "village_name：", 1)
    with pytest.raises(ConfigError) as exc:
        parse_config("\n".join(lines))
    colon = [p for p in exc.value.problems if "U+FF1A" in p.message]
    assert colon and colon[0].line == n + 1, exc.value.problems


def test_a_missing_colon_is_reported_on_its_own_line():
    lines = GOOD.splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("site:"))
    lines[n + 1] = lines[n + 1].replace(":", "", 1)  # "  village_code 130521104201"
    with pytest.raises(ConfigError) as exc:
        parse_config("\n".join(lines))
    assert exc.value.problems[0].line == n + 2, exc.value.problems


@settings(deadline=None, max_examples=50)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20))
def test_unknown_key_messages_never_crash(key):
    data = yaml.safe_load(GOOD)
    data["site"][key] = 1
    try:
        parse_config(yaml.safe_dump(data, allow_unicode=True))
    except ConfigError as exc:
        assert all(isinstance(p.message, str) for p in exc.problems)


def test_deep_problems_of_the_example_are_none(tmp_path):
    # With the files it names in place (the example's /etc/shaobing paths are placeholders).
    assert deep_problems(parse_config(example_in(tmp_path))) == []
    missing = deep_problems(parse_config(GOOD))
    assert {p.path for p in missing} >= {"mqtt.tls.cert", "control.command_keys"}, missing


def test_problems_say_the_value_and_what_is_expected():
    data = yaml.safe_load(GOOD)
    data["inputs"][0]["kind"] = "烟感"  # a smoke detector: not a kind this box wires
    data["inputs"][0]["pin"] = "abc"
    data["mqtt"]["port"] = 70000
    with pytest.raises(ConfigError) as exc:
        parse_config(yaml.safe_dump(data, allow_unicode=True))
    text = "\n".join(map(str, exc.value.problems))
    assert (
        "inputs[0].kind" in text
        and "'烟感' is not a sensor kind: one of pir (红外), door (门磁)" in text
    )
    assert "'abc' is not a whole number (BCM GPIO number, 2..27)" in text
    assert "70000 is out of range: it must be at most 65535" in text
    assert "Input should be" not in text and "String should match" not in text


@pytest.mark.parametrize("name", ["village-post", "railway-post", "railway-camera"])
def test_every_example_passes_config_check(tmp_path, name):
    """Examples are secure as written and consistent with the default model's labels."""
    from county_key import example_in

    path = tmp_path / f"{name}.yaml"
    path.write_text(example_in(tmp_path / "etc", EXAMPLE.parent / f"{name}.yaml"), "utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "--lang", "en", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
