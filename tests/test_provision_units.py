"""The pieces of provisioning on their own: atomic files, prompts, identity, TLS words."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shaobing.agent import tls as tls_words
from shaobing.agent.config import (
    DeviceConfig,
    InputConfig,
    MqttConfig,
    OutputConfig,
    RailwayConfig,
    SiteConfig,
    TlsConfig,
)
from shaobing.core.atomic import FileSet, atomic_write
from shaobing.provisioning.identity import IdentityError, build_identity
from shaobing.provisioning.prompts import (
    Aborted,
    Prompter,
    choice_check,
    field_check,
    gps_check,
    interview,
)
from shaobing.simulator.pki import CountyCA

CHECKS = {
    "village_code": field_check(SiteConfig, "village_code"),
    "code_year": field_check(SiteConfig, "code_year"),
    "village_name": field_check(SiteConfig, "village_name"),
    "gps": gps_check,
    "line": field_check(RailwayConfig, "line"),
    "start": field_check(RailwayConfig, "start"),
    "end": field_check(RailwayConfig, "end", start="K1+000"),
    "side": field_check(RailwayConfig, "side"),
    "device": field_check(DeviceConfig, "id"),
    "host": field_check(MqttConfig, "host"),
    "port": field_check(MqttConfig, "port"),
    "pin": field_check(InputConfig, "pin"),
    "kind": field_check(InputConfig, "kind"),
    "contact": field_check(InputConfig, "contact"),
    "out_kind": field_check(OutputConfig, "kind"),
    "yes": choice_check(("y", "n")),
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_is_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = atomic_write(tmp_path / "sub" / "device.key", "secret")
    finally:
        os.umask(old)
    assert mode(path) == 0o600 and path.read_text() == "secret"
    assert [p.name for p in path.parent.iterdir()] == ["device.key"]  # no temp left


def test_fileset_commits_all_or_restores_what_it_replaced(tmp_path):
    (tmp_path / "a").write_text("old a")
    files = FileSet()
    files.add(tmp_path / "a", "new a")
    files.add(tmp_path / "b", "new b")
    files.add(tmp_path / "c", "new c")
    (tmp_path / "c").mkdir()  # the last rename fails: a directory is in the way
    (tmp_path / "c" / "x").write_text("x")
    with pytest.raises(OSError):
        files.commit()
    assert (tmp_path / "a").read_text() == "old a"
    assert not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c"]  # no temps, no backups


def test_fileset_discard_leaves_nothing(tmp_path):
    files = FileSet()
    files.add(tmp_path / "a", "x")
    files.discard()
    assert list(tmp_path.iterdir()) == []


def test_field_checks_say_what_the_config_says():
    with pytest.raises(ValueError, match=r"exactly 12 digits \(统计用区划代码\), got 11"):
        CHECKS["village_code"]("13052110420")
    assert CHECKS["village_code"]("130521104201") == "130521104201"
    assert CHECKS["side"]("up") == "上行"
    assert CHECKS["contact"]("nc") == "NC"
    assert CHECKS["pin"]("17") == 17
    with pytest.raises(
        ValueError,
        match=r"pin: '40' is out of range: it must be at most 27 \(BCM GPIO number, 2\.\.27\)",
    ):
        CHECKS["pin"]("40")
    with pytest.raises(ValueError, match="lies before start"):
        CHECKS["end"]("K0+500")
    with pytest.raises(ValueError, match=r"lat: .*54 \(WGS-84 latitude \(China: 3\.5\.\.54\)\)"):
        gps_check("95,114")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CHECKS)), text=st.text(max_size=40))
def test_random_answers_never_crash_a_validator(name, text):
    """Any keystrokes give a value or a ValueError with a message, nothing else."""
    try:
        CHECKS[name](text)
    except ValueError as exc:
        assert str(exc)


@settings(max_examples=100, deadline=None)
@given(junk=st.lists(st.text(max_size=20).filter(lambda s: s.strip() != "1"), max_size=5))
def test_prompter_reasks_until_valid(junk):
    answers = iter([*junk, "1"])
    said: list[str] = []
    p = Prompter(read=lambda _q: next(answers), write=said.append)
    value = p.ask("pin?", lambda raw: int(raw) if raw.strip() == "1" else int("x"))
    assert value == 1
    assert len(said) == len(junk)  # one explanation per bad answer


def test_prompter_gives_up_and_ends_on_eof():
    p = Prompter(read=lambda _q: "bad", write=lambda _s: None, max_tries=3)
    with pytest.raises(Aborted, match="after 3 tries"):
        p.ask("code", CHECKS["village_code"])

    def eof(_q):
        raise EOFError

    with pytest.raises(Aborted):
        interview(Prompter(read=eof, write=lambda _s: None))


def test_identity_errors_name_the_file(tmp_path):
    ca = CountyCA()
    a, b = ca.client("sb-test-01"), ca.client("sb-test-01")
    a.write(tmp_path, "a")
    b.write(tmp_path, "b")
    common = {"device_id": "sb-test-01", "village_code": "130521104201", "village_name": "x"}
    with pytest.raises(IdentityError, match=r"a\.pem does not match the private key .*b\.key"):
        build_identity(existing_key=None, key=tmp_path / "b.key", cert=tmp_path / "a.pem", **common)
    with pytest.raises(IdentityError, match="does not exist"):
        build_identity(existing_key=None, cert=tmp_path / "missing.pem", **common)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(IdentityError, match=r"junk\.pem is not a PEM certificate"):
        build_identity(
            existing_key=None, key=tmp_path / "a.key", cert=tmp_path / "junk.pem", **common
        )
    ident = build_identity(existing_key=None, **common)
    assert ident.csr is not None and "PRIVATE" not in repr(ident)


def test_tls_explanations():
    assert "has expired" in tls_words.explain("[SSL] sslv3 alert certificate expired")
    assert "not signed by a CA the broker trusts" in tls_words.explain("tlsv1 alert unknown ca")
    assert "does not speak TLS" in tls_words.explain("[SSL: WRONG_VERSION_NUMBER] wrong version")
    assert tls_words.explain("Connection refused") == "Connection refused"


def test_tls_context_names_missing_files(tmp_path):
    with pytest.raises(tls_words.TlsSetupError, match=r"mqtt\.tls\.ca: file .* does not exist"):
        tls_words.client_context(TlsConfig(ca=tmp_path / "nope.pem"))
