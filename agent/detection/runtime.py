"""Loading a .tflite model into whichever interpreter the box has.

ai-edge-litert is preferred (maintained, XNNPACK, numpy 2); tflite-runtime is
the fallback for images that still carry it. Errors name the file and what was
expected, because the person reading them is an installer at a remote post.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import sys
import unicodedata
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from .flatbuffer_check import FlatbufferError, check_tflite_bounds

log = logging.getLogger(__name__)

RuntimeName = Literal["auto", "ai-edge-litert", "tflite-runtime"]

_MODULES = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
}

# What an installer does when a runtime cannot run here (missing, wrong NumPy ABI).
_FIX = {
    "tflite-runtime": "pip install 'shaobing[tflite-runtime]' in a fresh venv (Python 3.11), "
    "or use --runtime ai-edge-litert",
    "ai-edge-litert": "pip install 'ai-edge-litert>=1.2,<3', or use --runtime tflite-runtime",
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


class RuntimeUnavailable(ModelError):
    """A TFLite runtime that cannot run here; the message is one line naming the fix."""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _numpy_version() -> str:
    return _version("numpy") or "unknown"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def failure_message(name: str, exc: BaseException) -> str:
    """One line saying why runtime ``name`` cannot run here and what to do about it."""
    fix = _FIX[name]
    installed = _version(name)
    if installed is None:
        return f"{name} is not installed: {fix}"
    numpy = _numpy_version()
    if _numpy_abi_failure(exc) and int(numpy.split(".")[0] or 0) >= 2:
        return f"{name} {installed} needs NumPy < 2 (found {numpy}): {fix}"
    return (
        f"{name} {installed} cannot be used with NumPy {numpy} "
        f"({type(exc).__name__}: {_first_line(exc)}): {fix}"
    )


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _numpy_abi_failure(exc: BaseException) -> bool:
    """An extension built for another NumPy ABI: import_array failed somewhere in the chain.

    tflite-runtime 2.14 calls import_array lazily, so under NumPy 2 its import works and
    the first Interpreter() fails (SystemError <- ImportError 'numpy.core.multiarray
    failed to import' <- AttributeError '_ARRAY_API not found').
    """
    return any(
        "_ARRAY_API" in str(e) or "numpy.core.multiarray failed to import" in str(e)
        for e in _chain(exc)
    )


@contextlib.contextmanager
def _quiet_numpy_banner():
    # NumPy 2 writes a banner and a traceback to stderr when an extension built for
    # NumPy 1.x asks for its C API; the installer gets our one line instead. Anything
    # else written meanwhile is passed on.
    noise = io.StringIO()
    with contextlib.redirect_stderr(noise):
        yield
    text = noise.getvalue()
    if text and "compiled using NumPy 1.x" not in text:
        sys.stderr.write(text)


def _import_interpreter(name: str) -> type:
    try:
        with _quiet_numpy_banner():
            return importlib.import_module(_MODULES[name]).Interpreter
    except Exception as exc:  # ImportError, or AttributeError from a broken extension
        raise RuntimeUnavailable(failure_message(name, exc)) from exc


def _candidates(runtime: RuntimeName) -> list[str]:
    return list(_MODULES) if runtime == "auto" else [runtime]


def interpreter_class(runtime: RuntimeName = "auto") -> tuple[str, type]:
    """The first importable runtime's name and Interpreter class."""
    errors: list[str] = []
    for name in _candidates(runtime):
        try:
            return name, _import_interpreter(name)
        except RuntimeUnavailable as exc:
            errors.append(str(exc))
    raise _unavailable(runtime, errors)


def _unavailable(runtime: RuntimeName, errors: list[str]) -> RuntimeUnavailable:
    if runtime != "auto":
        return RuntimeUnavailable(errors[0])
    return RuntimeUnavailable("no TFLite runtime available (" + "; ".join(errors) + ")")


def _interpreter(name: str, path: Path, num_threads: int) -> Any:
    cls = _import_interpreter(name)
    try:
        with _quiet_numpy_banner():
            interp = cls(model_path=str(path), num_threads=num_threads)
            interp.allocate_tensors()
    except Exception as exc:
        if _numpy_abi_failure(exc):
            raise RuntimeUnavailable(failure_message(name, exc)) from exc
        if isinstance(exc, ValueError | RuntimeError):
            raise ModelError(f"model file {path} could not be loaded by {name}: {exc}") from exc
        raise
    return interp


def interpreter_threads(setting: int | Literal["auto"]) -> int:
    """``detector.num_threads``: ``auto`` leaves one core to the rest of the agent.

    Every core in ``invoke()`` makes the cameras' H.264 decoding and the next frames'
    preparation wait for it (docs/benchmarks.md: 0.91 of the raw interpreter's rate with
    2 threads on 2 cores, 0.96-0.98 with a core left free); a Pi 4/5 gets 3 of its 4.
    """
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, (cores or 1) - 1))


def threads_arg(text: str) -> int | Literal["auto"]:
    """``--threads`` of the command line: ``auto`` or 1-8, as ``detector.num_threads``."""
    plain = unicodedata.normalize("NFKC", text).strip()  # full-width digits as typed in Chinese
    if plain == "auto":
        return "auto"
    if plain not in {str(n) for n in range(1, 9)}:
        raise argparse.ArgumentTypeError(f"{text!r}: give 'auto' or a number from 1 to 8")
    return int(plain)


def load_model(
    path: Path, runtime: RuntimeName = "auto", num_threads: int | Literal["auto"] = "auto"
) -> LoadedModel:
    path = Path(path)
    num_threads = interpreter_threads(num_threads)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist (expected a .tflite file)")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[4:8] != TFLITE_MAGIC:
        raise ModelError(
            f"model file {path} is not a TFLite flatbuffer (expected identifier 'TFL3' at "
            f"byte 4, found {head[4:8]!r}); the file is corrupt or of another format"
        )
    try:
        check_tflite_bounds(path)
    except FlatbufferError as exc:
        # tflite-runtime would crash the process on such a file (no verifier of its own).
        raise ModelError(
            f"model file {path} could not be loaded: it is cut short or corrupt ({exc}); "
            "copy it again"
        ) from exc
    errors: list[str] = []
    for name in _candidates(runtime):
        try:
            interp = _interpreter(name, path, num_threads)
        except RuntimeUnavailable as exc:
            errors.append(str(exc))
            continue
        if errors:
            # The message carries the reason too: `shaobing detect` sets up no log handler.
            log.warning(
                "TFLite runtime fallback to %s: %s",
                name,
                "; ".join(errors),
                extra={"runtime": name, "unavailable": "; ".join(errors)},
            )
        return LoadedModel(
            interpreter=interp,
            runtime=name,
            path=path,
            inputs=interp.get_input_details(),
            outputs=interp.get_output_details(),
        )
    raise _unavailable(runtime, errors)
