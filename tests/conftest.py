"""Shared fixtures: a real Mosquitto per test, configs pointing at it, schema checks."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from jsonschema import Draft202012Validator

from shaobing.agent.config import Config, load_config
from shaobing.simulator.broker import Mosquitto
from shaobing.simulator.county import County

# CI replays the same examples every run (a red CI must be reproducible);
# developers' runs explore new ones: set HYPOTHESIS_PROFILE=ci to replay.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "village-post.yaml"
SCHEMAS = ROOT / "agent" / "schemas"
SHARED = ROOT.parent / "shared"


# In CI, with ../shared present, every real component must run: a skip there
# means a broker, encoder, browser or model went missing, so it fails the run.
STRICT = bool(os.environ.get("CI")) and SHARED.is_dir()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every real component must run: {report.longrepr}"


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        if value := cond():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    broker = Mosquitto().start()
    yield broker
    broker.close()


def config_for(tmp_path: Path, port: int, **mqtt: object) -> Config:
    base = load_config(EXAMPLE)
    return base.model_copy(
        update={
            "mqtt": base.mqtt.model_copy(update={"port": port, "reconnect_max_s": 2.0, **mqtt}),
            "storage": base.storage.model_copy(update={"path": tmp_path / "outbox.db"}),
            "gpio": base.gpio.model_copy(update={"backend": "mock", "allow_mock": True}),
            "health": base.health.model_copy(update={"interval_s": 3600}),
            # Outputs run their configured duration; tests/test_latching.py holds them.
            "latching": base.latching.model_copy(update={"hold_outputs": False}),
            # Delivery tests press the same button several times in a row and
            # count every alarm: no de-duplication window for them.
            "linkage": base.linkage.model_copy(
                update={
                    "cooldown_s": 0.0,
                    "rules": [
                        rule.model_copy(update={"cooldown_s": None}) for rule in base.linkage.rules
                    ],
                }
            ),
        }
    )


@pytest.fixture
def county_factory() -> Iterator:
    made: list[County] = []

    def make(port: int, **kw) -> County:
        county = County("127.0.0.1", port, **kw)
        made.append(county)
        return county

    yield make
    for county in made:
        county.close()


class Schemas:
    def __init__(self) -> None:
        self.event = Draft202012Validator(json.loads((SCHEMAS / "event.schema.json").read_text()))
        self.state = Draft202012Validator(json.loads((SCHEMAS / "state.schema.json").read_text()))
        self.command_doc = json.loads((SCHEMAS / "command.schema.json").read_text())
        self.command = Draft202012Validator(self.command_doc)
        self.response = Draft202012Validator(
            json.loads((SCHEMAS / "response.schema.json").read_text())
        )

    def check(self, topic: str, payload: bytes) -> None:
        """Validate one published message against the schema for its topic."""
        if "/snapshot/" in topic:
            assert payload[:2] == b"\xff\xd8", f"{topic}: snapshot is not a JPEG"
            return
        reply = topic.endswith("/cmd/response") or "/cmd/response/" in topic
        if "/cmd/" in topic and not reply:
            return  # commands are the platform's (and tests send malformed ones on purpose)
        validator = self.state if topic.endswith("/state") else self.event
        if reply or "/replies/" in topic:
            validator = self.response
        errors = sorted(validator.iter_errors(json.loads(payload)), key=lambda e: e.path)
        assert not errors, f"{topic}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
        )

    def check_command(self, command: str, body: dict) -> None:
        """A well-formed command: envelope and the command's own args."""
        errors = list(self.command.iter_errors(body))
        args_schema = {"$ref": f"#/$defs/{command}_args", "$defs": self.command_doc["$defs"]}
        errors += list(Draft202012Validator(args_schema).iter_errors(body.get("args", {})))
        assert not errors, f"{command}: " + "; ".join(e.message for e in errors)


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    return Schemas()
