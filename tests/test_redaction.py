"""No secret leaves the box: URL credentials and secret fields are masked wherever they are."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sinks import ListSink

from shaobing.core.redaction import redact_data, redact_text
from shaobing.drivers.camera import Camera, CameraError


def test_url_credentials_are_masked_whole_even_with_at_and_slash_in_the_password():
    assert redact_text("rtsp://admin:secret@10.1.2.3/stream") == "rtsp://***@10.1.2.3/stream"
    assert redact_text("rtsp://admin:p@ss/w0rd@cam:554/h264") == "rtsp://***@cam:554/h264"
    text = "open failed: rtsp://u:pw@a/1 then http://x:y@b/2"
    assert redact_text(text) == "open failed: rtsp://***@a/1 then http://***@b/2"
    assert redact_text("sim:person-crossing?fps=5") == "sim:person-crossing?fps=5"
    assert redact_text("rtsp://10.1.2.3/stream") == "rtsp://10.1.2.3/stream"


@given(
    user=st.text(string.ascii_letters + string.digits, min_size=1, max_size=12),
    password=st.text(string.ascii_letters + string.digits + "@/:!#$%&*+=?", min_size=6),
)
def test_no_password_survives_redaction(user, password):
    source = f"rtsp://{user}:{password}@192.168.1.64:554/Streaming/Channels/101"
    redacted = redact_text(source)
    assert password not in redacted
    assert redacted == "rtsp://***@192.168.1.64:554/Streaming/Channels/101"


def test_secret_fields_anywhere_and_urls_in_any_string_are_masked():
    data = {
        "mqtt": {"password": "pw1", "host": "h"},
        "cameras": [{"id": "c", "source": "rtsp://a:pw2@h/s", "pin": 17}],
        "extra": {"api_token": "pw3", "nested": [{"secret": "pw4"}]},
        "console": {"password": None},
    }
    out = redact_data(data)
    assert not any(pw in repr(out) for pw in ("pw1", "pw2", "pw3", "pw4"))
    assert out["cameras"][0] == {"id": "c", "source": "rtsp://***@h/s", "pin": 17}
    assert out["console"]["password"] is None  # an unset secret stays visibly unset


def test_camera_fault_event_carries_no_credentials():
    def opener():
        raise RuntimeError("cannot open rtsp://admin:p@ss/w0rd@10.0.0.9/live")

    sink = ListSink()
    cam = Camera("gate", opener, sink, describe="rtsp://admin:p@ss/w0rd@10.0.0.9/live")
    with pytest.raises(CameraError) as raised:
        cam._session()  # one open attempt, as the capture thread makes it
    text = repr(sink.events) + str(raised.value)
    assert "fault.camera" in text and "w0rd" not in text and "p@ss" not in text
