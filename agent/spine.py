"""The spine, built one way: clock -> outbox (with its budget) -> recorder -> topics -> uplink.

The daemon (agent/runtime.py), the provisioning self-test and the fleet simulator
all build it here, so the self-test exercises the same disk budget, batching, TLS
and publish path as the service it vouches for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shaobing.agent.config import Config
from shaobing.agent.outbox import Budget, Outbox
from shaobing.agent.recorder import Recorder
from shaobing.agent.topics import Topics
from shaobing.agent.uplink import Uplink
from shaobing.core.clock import Clock


@dataclass
class Spine:
    clock: Clock
    outbox: Outbox
    recorder: Recorder
    topics: Topics
    uplink: Uplink
    # What the retained state and registration say about this run of this box.
    identity: Callable[[], dict[str, Any]]

    def close(self, timeout: float = 3.0) -> None:
        self.uplink.stop(timeout)
        self.outbox.close()


def budget_of(config: Config) -> Budget:
    storage = config.storage
    return Budget(
        max_bytes=storage.max_bytes,
        max_rows=storage.max_rows,
        max_age_s=storage.max_age_h * 3600 if storage.max_age_h else None,
    )


def build_spine(
    config: Config,
    version: str,
    *,
    clock: Clock | None = None,
    state_info: Callable[[], dict[str, Any]] | None = None,
) -> Spine:
    """``state_info`` overrides what the retained state says (the fleet's boxes say less)."""
    clock = clock or Clock(config.clock.trust)
    outbox = Outbox(
        config.storage.path, budget_of(config), batch_delay_s=config.storage.batch_delay_s
    )

    def identity() -> dict[str, Any]:
        return {
            "device": config.device.id,
            "village_code": config.site.village_code,
            "boot_id": clock.boot_id,
            "run": outbox.run,
            "version": version,
        }

    recorder = Recorder(config, outbox, clock)
    topics = Topics(config.mqtt.topic_prefix, config.site.village_code, config.device.id)
    uplink = Uplink(
        config.mqtt,
        config.device.id,
        topics,
        outbox,
        state_info or identity,
        correct_ts=clock.corrected_ts,
    )
    return Spine(clock, outbox, recorder, topics, uplink, identity)
