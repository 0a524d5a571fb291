from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from detection_support import MEDIA, RUNTIME, V1, need_shared

from shaobing.agent.detection.runtime import interpreter_class, load_model

NUMPY_2 = int(np.__version__.split(".")[0]) >= 2
SHAOBING = Path(sys.executable).with_name("shaobing")


@pytest.fixture(scope="module")
def tflite_runtime_path(tmp_path_factory) -> str:
    """A directory to put on PYTHONPATH so that ``tflite_runtime`` imports.

    In .venv-tflite it is installed already. In the NumPy 2 venv the real wheel is
    unpacked beside it (no dependencies), which is exactly the broken box of issue 13
    item 7: tflite-runtime 2.14 built for NumPy 1.x under NumPy 2.
    """
    try:
        metadata.version("tflite-runtime")
        return ""
    except metadata.PackageNotFoundError:
        pass
    target = tmp_path_factory.mktemp("tflite-runtime")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-deps"),
            *("--target", str(target), "tflite-runtime>=2.14,<3"),
        ],
        check=True,
        timeout=300,
    )
    return str(target)


def run_python(code: str, pythonpath: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_detection_runtime_auto_prefers_litert():
    name, _ = interpreter_class("auto")
    assert name == "ai-edge-litert"


def test_detection_runtime_the_selected_runtime_runs_the_model():
    # SHAOBING_TEST_RUNTIME=tflite-runtime (CI's second venv) really runs on tflite-runtime.
    need_shared()
    model = load_model(V1, RUNTIME, num_threads=1)
    assert model.runtime == ("ai-edge-litert" if RUNTIME == "auto" else RUNTIME)
    assert len(model.outputs) == 4
    assert load_model(V1, "ai-edge-litert", num_threads=1).runtime == "ai-edge-litert"


def test_detection_runtime_tflite_runtime_works_or_says_the_fix_in_one_line(
    tflite_runtime_path, tmp_path
):
    need_shared()
    env = {**os.environ, "PYTHONPATH": tflite_runtime_path}
    proc = subprocess.run(
        [
            str(SHAOBING),
            "detect",
            "--model",
            str(V1),
            "--runtime",
            "tflite-runtime",
            str(MEDIA / "squat.bmp"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if not NUMPY_2:
        assert proc.returncode == 0, proc.stderr
        assert '"label": "person"' in proc.stdout
        return
    assert proc.returncode == 2
    assert proc.stdout == ""
    # Only our line: no traceback, no NumPy banner (the runtime's native INFO lines
    # never come: the import fails before any interpreter exists).
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.fullmatch(
        r"shaobing detect: tflite-runtime 2\.\d+\.\d+ needs NumPy < 2 "
        rf"\(found {re.escape(np.__version__)}\): pip install 'shaobing\[tflite-runtime\]' "
        r"in a fresh venv \(Python 3\.11\), or use --runtime ai-edge-litert",
        lines[0],
    ), lines[0]


# ai-edge-litert made unimportable the way Python documents: None in sys.modules.
AUTO_WITHOUT_LITERT = """
import sys
sys.modules["ai_edge_litert"] = None
from shaobing.agent.detection.runtime import ModelError, load_model
try:
    print("runtime", load_model(sys.argv[1], "auto").runtime)
except ModelError as exc:
    print("error", exc)
"""


def test_detection_runtime_auto_falls_back_with_a_warning(tflite_runtime_path):
    need_shared()
    proc = run_python(AUTO_WITHOUT_LITERT, tflite_runtime_path, str(V1))
    assert proc.returncode == 0, proc.stderr
    litert_failure = "ai-edge-litert 2"  # installed, but cannot be imported
    if not NUMPY_2:
        assert proc.stdout.strip() == "runtime tflite-runtime"
        assert "TFLite runtime fallback to tflite-runtime: " + litert_failure in proc.stderr
        return
    # Neither works: one line naming both, each with its fix.
    assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout.strip()
    assert out.startswith("error no TFLite runtime available (" + litert_failure), out
    assert "or use --runtime tflite-runtime" in out
    assert f"needs NumPy < 2 (found {np.__version__})" in out


def test_detection_runtime_auto_threads_leave_a_core_to_the_cameras():
    """With every core in invoke(), decoding and preparation wait (pipeline_vs_raw 0.91 on
    2 cores): `auto` gives the interpreter one core less than the process may use."""
    import argparse

    from shaobing.agent.detection.config import DetectorConfig
    from shaobing.agent.detection.runtime import interpreter_threads, threads_arg

    assert DetectorConfig().num_threads == "auto"
    cores = len(os.sched_getaffinity(0))
    assert interpreter_threads("auto") == max(1, min(4, cores - 1))
    assert interpreter_threads(3) == 3
    assert DetectorConfig(num_threads=2).num_threads == 2
    with pytest.raises(ValueError, match="num_threads"):
        DetectorConfig(num_threads=0)
    assert threads_arg("auto") == "auto" and threads_arg("2") == 2 and threads_arg("２") == 2
    for bad in ("0", "9", "two", "1.5", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="'auto' or a number from 1 to 8"):
            threads_arg(bad)
