"""Input typed with a Chinese IME: full-width forms normalised, other non-ASCII named exactly."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

import pytest
from conftest import EXAMPLE
from county_key import example_in
from hypothesis import given
from hypothesis import strategies as st

from shaobing.agent.config import ConfigError, parse_config
from shaobing.agent.topics import Topics
from shaobing.core.ascii_input import to_ascii

GOOD = EXAMPLE.read_text(encoding="utf-8")


def fullwidth(text: str) -> str:
    # ASCII ! .. ~ map onto U+FF01 .. U+FF5E, the forms an IME types in full-width mode.
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "post.yaml")
    return [str(p) for p in info.value.problems]


FULLWIDTH = (
    GOOD.replace('"130521104201"', f'"{fullwidth("130521104201")}"')
    .replace("K361+200", fullwidth("K361+200"))
    .replace("lat: 37.06", f'lat: "{fullwidth("37.06")}"')
    .replace("id: sb-130521-dongguan-01", f"id: {fullwidth('sb-130521-dongguan-01')}")
    .replace("port: 8883", f'port: "{fullwidth("8883")}"')
)


def test_fullwidth_codes_mileage_gps_ids_ports_are_normalised():
    assert FULLWIDTH != GOOD
    config = parse_config(FULLWIDTH, "post.yaml")
    good = parse_config(GOOD, "post.yaml")
    assert config.site.village_code == "130521104201"
    assert config.zones[0].railway.start == "K361+200"
    assert config.site.gps.lat == 37.06
    assert config.device.id == good.device.id
    assert config.mqtt.port == 8883
    assert config == good


def test_topic_built_from_fullwidth_config_is_ascii():
    config = parse_config(FULLWIDTH, "post.yaml")
    topics = Topics(config.mqtt.topic_prefix, config.site.village_code, config.device.id)
    assert topics.base.isascii()
    assert topics.base == "shaobing/v1/130521104201/sb-130521-dongguan-01"


def test_config_check_cli_accepts_fullwidth_and_names_a_cjk_digit(tmp_path):
    path = tmp_path / "post.yaml"
    example_in(tmp_path)  # the files the example names, under tmp_path
    path.write_text(FULLWIDTH.replace("/etc/shaobing/", f"{tmp_path}/"), encoding="utf-8")
    ok = subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    path.write_text(GOOD.replace('"130521104201"', '"13052110420一"'), encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0
    assert "CJK UNIFIED IDEOGRAPH-4E00" in bad.stdout + bad.stderr
    assert "position 12" in bad.stdout + bad.stderr


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '"130521104201"',
            '"13052110420١"',
            "site.village_code (line {line}): character '١' (ARABIC-INDIC DIGIT ONE) "
            "at position 12",
        ),
        (
            "K361+200",
            "К361+200",
            "zones[0].railway.start (line {line}): character 'К' (CYRILLIC CAPITAL LETTER KA) "
            "at position 1",
        ),
        (
            "id: sb-130521-dongguan-01",
            "id: sb-130521-东关-01",
            "device.id (line {line}): character '东' (CJK UNIFIED IDEOGRAPH-4E1C) at position 11",
        ),
        (
            "lat: 37.06",
            'lat: "37\u300206"',
            "site.gps.lat (line {line}): character '。' (IDEOGRAPHIC FULL STOP) at position 3",
        ),
    ],
)
def test_non_ascii_left_after_nfkc_is_named_with_position(old, new, expected):
    assert old in GOOD
    line = GOOD.splitlines().index(next(x for x in GOOD.splitlines() if old in x)) + 1
    found = problems(GOOD.replace(old, new, 1))
    assert any(p.startswith(expected.format(line=line)) for p in found), found


_ascii_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)


@given(
    text=_ascii_text,
    mask=st.lists(st.booleans(), min_size=20, max_size=20),
    pad=st.sampled_from(["", " ", "\u3000", "\u00a0", "\t", "\u2003"]),
)
def test_any_mix_of_fullwidth_and_ascii_with_odd_whitespace_round_trips(text, mask, pad):
    mixed = "".join(fullwidth(c) if m else c for c, m in zip(text, mask, strict=False))
    mixed += text[len(mask) :]
    assert to_ascii(pad + mixed + pad) == text


@given(st.text(min_size=1, max_size=20))
def test_result_is_ascii_or_the_error_names_the_character(text):
    try:
        result = to_ascii(text)
    except ValueError as error:
        normal = unicodedata.normalize("NFKC", text).strip()
        bad = next(c for c in normal if not c.isascii())
        assert repr(bad) in str(error)
        assert f"position {normal.index(bad) + 1}" in str(error)
    else:
        assert result.isascii()
