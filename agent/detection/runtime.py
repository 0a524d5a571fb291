"""Loading a .tflite model into whichever interpreter the box has.

ai-edge-litert is preferred (maintained, XNNPACK, numpy 2); tflite-runtime is
the fallback for images that still carry it. Errors name the file and what was
expected, because the person reading them is an installer at a remote post.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

RuntimeName = Literal["auto", "ai-edge-litert", "tflite-runtime"]

_MODULES = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
}

TFLITE_MAGIC = b"TFL3"


class ModelError(RuntimeError):
    """A model file that cannot be used, with the reason an installer can act on."""


@dataclass(frozen=True)
class LoadedModel:
    interpreter: Any
    runtime: str
    path: Path
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def interpreter_class(runtime: RuntimeName = "auto") -> tuple[str, type]:
    names = list(_MODULES) if runtime == "auto" else [runtime]
    errors = []
    for name in names:
        try:
            return name, importlib.import_module(_MODULES[name]).Interpreter
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ModelError("no TFLite runtime available (" + "; ".join(errors) + ")")


def load_model(path: Path, runtime: RuntimeName = "auto", num_threads: int = 2) -> LoadedModel:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist (expected a .tflite file)")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[4:8] != TFLITE_MAGIC:
        raise ModelError(
            f"model file {path} is not a TFLite flatbuffer (expected identifier 'TFL3' at "
            f"byte 4, found {head[4:8]!r}); the file is corrupt or of another format"
        )
    name, cls = interpreter_class(runtime)
    try:
        interp = cls(model_path=str(path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"model file {path} could not be loaded by {name}: {exc}") from exc
    return LoadedModel(
        interpreter=interp,
        runtime=name,
        path=path,
        inputs=interp.get_input_details(),
        outputs=interp.get_output_details(),
    )
