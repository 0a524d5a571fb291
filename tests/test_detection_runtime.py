from __future__ import annotations

import importlib.util

import pytest
from detection_support import V1, need_shared

from shaobing.agent.detection.runtime import ModelError, interpreter_class, load_model


def test_detection_runtime_auto_prefers_litert():
    if importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("ai-edge-litert not installed")
    name, _ = interpreter_class("auto")
    assert name == "ai-edge-litert"


def test_detection_runtime_override_and_missing_runtime():
    need_shared()
    model = load_model(V1, "ai-edge-litert", num_threads=1)
    assert model.runtime == "ai-edge-litert" and len(model.outputs) == 4
    if importlib.util.find_spec("tflite_runtime") is not None:
        assert load_model(V1, "tflite-runtime").runtime == "tflite-runtime"
    else:
        with pytest.raises(ModelError, match="no TFLite runtime available"):
            load_model(V1, "tflite-runtime")
