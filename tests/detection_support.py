"""Shared helpers of the detection and camera tests (real models, real images)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MEDIA = SHARED / "media"
V1 = SHARED / "models" / "coco-ssd-mobilenet-v1-quant" / "detect.tflite"
V2 = SHARED / "models" / "ssd-mobilenet-v2-fpnlite-320-float" / "model.tflite"
# The TFLite runtime the detection tests run on: CI runs them once per runtime, the
# second time in .venv-tflite (NumPy 1.x) with SHAOBING_TEST_RUNTIME=tflite-runtime.
RUNTIME = os.environ.get("SHAOBING_TEST_RUNTIME", "auto")


def need_shared() -> None:
    if not (MEDIA.is_dir() and V1.is_file() and V2.is_file()):
        pytest.skip(f"shared models/media not found at {SHARED} (../shared beside the repo)")


def default_model_path() -> Path:
    from shaobing.models.fetch import FetchError, fetch

    try:
        return fetch()
    except FetchError as exc:
        pytest.skip(f"default model cannot be fetched here (offline registry?): {exc}")
