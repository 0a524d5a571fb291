"""The county key machinery shared by commands and update bundles (core/signing.py)."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shaobing.core import signing


def test_round_trip_and_tamper(tmp_path):
    key = signing.write_keypair(tmp_path / "county.key", tmp_path / "county.pub")
    assert stat.S_IMODE(os.stat(tmp_path / "county.key").st_mode) == 0o600
    ring = signing.Keyring.load([tmp_path / "county.pub"])
    assert ring.kids == [key.kid]
    data = signing.canonical({"b": 1, "a": "村"})
    assert data == '{"a":"村","b":1}'.encode()
    sig = key.sign(data)
    assert len(sig) == signing.SIGNATURE_CHARS
    assert ring.verify(data, key.kid, sig)
    assert not ring.verify(data + b" ", key.kid, sig)
    assert not ring.verify(data, "0" * 16, sig)
    other = signing.generate()
    assert not ring.verify(data, key.kid, other.sign(data))
    assert signing.load_private(tmp_path / "county.key").kid == key.kid


def test_open_private_key_refused_and_wrong_kind_named(tmp_path):
    signing.write_keypair(tmp_path / "k", tmp_path / "k.pub")
    os.chmod(tmp_path / "k", 0o640)
    with pytest.raises(signing.KeyFileError, match=r"readable by others \(mode 0640\).*chmod 600"):
        signing.load_private(tmp_path / "k")
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(signing.KeyFileError, match=r"bad\.pub: not a PEM public key"):
        signing.load_public(tmp_path / "bad.pub")
    with pytest.raises(signing.KeyFileError, match="no such file"):
        signing.load_public(tmp_path / "missing.pub")


@given(st.text(max_size=200))
def test_garbage_signatures_never_verify_or_raise(sig):
    key = signing.generate()
    assert not key.public.verify(b"data", sig)
