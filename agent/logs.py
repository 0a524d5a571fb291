"""Structured logs: one JSON object per line, so journald and grep both work."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(level: str = "INFO", stream=sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    root = logging.getLogger("shaobing")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class Captured(logging.Handler):
    """Log lines kept in memory, for a command whose terminal belongs to a person
    (``shaobing provision``): written to a file afterwards, never between its lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonLines())
        self.lines: list[str] = []
        self.worst = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.worst = max(self.worst, record.levelno)


def capture(level: str = "INFO") -> Captured:
    """Route the agent's logs and Python warnings (gpiozero's, ...) into a ``Captured``."""
    handler = Captured()
    logging.captureWarnings(True)
    for name in ("shaobing", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return handler
