"""Every mistake an installer can make in the config gets a located, precise message."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import EXAMPLE
from county_key import example_in
from hypothesis import given
from hypothesis import strategies as st

from shaobing.agent import location
from shaobing.agent.config import ConfigError, parse_config

GOOD = EXAMPLE.read_text(encoding="utf-8")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "post.yaml")
    return [str(p) for p in info.value.problems]


def test_example_is_valid():
    config = parse_config(GOOD)
    assert config.inputs[0].contact == "NO"  # YAML 1.1 reads bare NO as false
    assert config.zones[0].railway.side == "双线"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "pin: 27",
            "pin: 17",
            "inputs[1].pin (line {line}): pin 17 is already used by inputs[0]",
        ),
        (
            "pin: 24",
            "pin: seventeen",
            "outputs[0].pin (line {line}): 'seventeen' is not a whole number",
        ),
        (
            "pin: 24",
            "pin: 40",
            "outputs[0].pin (line {line}): 40 is out of range: it must be at most 27",
        ),
        (
            "bounce_ms: 200",
            "bounce_ms: 200, colour: red",
            "inputs[1].colour (line {line}): unknown key",
        ),
        (
            '"130521104201"',
            '"13052110420"',
            "site.village_code (line {line}): village code must be exactly 12 digits",
        ),
        (
            '"130521104201"',
            '"990521104201"',
            "site.village_code (line {line}): village code '990521104201' starts with 99",
        ),
        ("K361+200", "K361+20", "zones[0].railway.start (line {line}): mileage 'K361+20' is not"),
        (
            "end: K361+450",
            "end: K360+450",
            "zones[0].railway (line 18): end K360+450 lies before start K361+200",
        ),
        ("side: 双线", "side: 左线", "zones[0].railway.side (line {line}): track side '左线'"),
        (
            "contact: NC, zone: cabinet}",
            "contact: NC, zone: cabin}",
            "inputs[2].zone (line {line}): zone 'cabin'",
        ),
        (
            "kind: siren",
            "kind: horn",
            "outputs[0].kind (line {line}): 'horn' is not an output kind: one of siren",
        ),
        ("code_year: 2023", "code_year: 2002", "site.code_year (line {line}): code year 2002"),
        ("lat: 37.06, lon: 114.51", "lat: 114.51, lon: 37.06", "site.gps.lat (line {line}):"),
        (
            "keepalive_s: 60",
            "keepalive_s: 5",
            "mqtt.keepalive_s (line {line}): 5 is out of range: it must be at least 10",
        ),
        (
            "id: pir-1",
            "id: panic-1",
            "inputs[1].id (line {line}): id 'panic-1' is already used by inputs[0]",
        ),
    ],
)
def test_bad_values_are_located(old, new, expected):
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    line = GOOD[: GOOD.index(old)].count("\n") + 1
    found = problems(text)
    assert any(p.startswith(expected.format(line=line)) for p in found), found


def test_every_problem_is_reported_at_once():
    text = (
        GOOD.replace('"130521104201"', '"1305"')
        .replace("K361+200", "K361")
        .replace("keepalive_s: 60", "keepalive_s: sixty")
    )
    assert len(problems(text)) == 3


def test_missing_section_and_duplicate_key_and_syntax():
    no_site = GOOD.replace("site:", "sight:")
    found = problems(no_site)
    assert any(p.startswith("site: missing: this setting is required") for p in found), found
    assert any(p.startswith("sight (line") and "unknown key" in p for p in found), found
    dup = GOOD.replace("  port: 8883", "  port: 8883\n  port: 1884")
    assert any("mqtt.port" in p and "appears twice" in p for p in problems(dup))
    broken = GOOD.replace("  port: 8883", "  port: [8883")
    (only,) = problems(broken)
    assert only.startswith("<top> (line") and "YAML syntax" in only


def test_cli_config_check(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("pin: 27", "pin: 17"), encoding="utf-8")
    run = [sys.executable, "-m", "shaobing.cli.main", "config", "check"]
    good = tmp_path / "good.yaml"
    good.write_text(example_in(tmp_path / "etc"), encoding="utf-8")  # its files in place
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ": ok (device sb-130521-dongguan-01" in ok.stdout, ok.stderr
    res = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "inputs[1].pin (line 28): pin 17 is already used by inputs[0]" in res.stderr
    missing = subprocess.run([*run, str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert missing.returncode == 1 and "cannot read file" in missing.stderr


@given(st.integers(0, 9999), st.integers(0, 999))
def test_mileage_round_trip(km, m):
    assert location.mileage_metres(f"K{km}+{m:03d}") == km * 1000 + m


@given(st.text(max_size=20))
def test_mileage_parser_never_crashes(text):
    try:
        value = location.mileage_metres(text)
    except ValueError as exc:
        assert repr(text) in str(exc)
    else:
        assert value >= 0 and text.startswith("K")


@given(st.text(max_size=600))
def test_config_parser_only_raises_config_error(text):
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.problems
