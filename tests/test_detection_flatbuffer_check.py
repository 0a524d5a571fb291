from __future__ import annotations

import contextlib

import pytest
from detection_support import V1, V2, default_model_path, need_shared
from hypothesis import given, settings
from hypothesis import strategies as st

from shaobing.agent.detection.flatbuffer_check import (
    FlatbufferError,
    check_tflite_bounds,
    check_tflite_bytes,
)


@pytest.fixture(scope="module")
def v1_bytes() -> bytes:
    need_shared()
    return V1.read_bytes()


def test_flatbuffer_check_accepts_the_real_models():
    need_shared()
    for path in (V1, V2, default_model_path()):
        check_tflite_bounds(path)


def test_flatbuffer_check_refuses_a_cut_short_model(v1_bytes):
    for size in (8, 4096, len(v1_bytes) // 2):
        with pytest.raises(FlatbufferError, match=f"past the end \\({size} bytes\\)"):
            check_tflite_bytes(v1_bytes[:size])


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_flatbuffer_check_fuzz_never_crashes(v1_bytes, data):
    # Cut anywhere and overwrite a few bytes near the tables: refused with FlatbufferError
    # or accepted, never an IndexError/struct.error or a hang.
    size = data.draw(st.integers(0, len(v1_bytes)))
    blob = bytearray(v1_bytes[:size])
    for _ in range(data.draw(st.integers(0, 4))):
        if blob:
            pos = data.draw(st.integers(0, min(len(blob), 4096) - 1))
            blob[pos] = data.draw(st.integers(0, 255))
    with contextlib.suppress(FlatbufferError):
        check_tflite_bytes(bytes(blob))
