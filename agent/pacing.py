"""Fleet manners for the uplink: which broker node next, how long to wait, how fast to replay.

A county runs hundreds of boxes against one broker cluster; after a shared
outage they all come back at once. Three rules keep that gentle while a
waiting alarm still goes out within seconds (docs/mqtt.md "Reconnecting"):

- reconnect with full-jitter exponential backoff capped at
  ``max(reconnect_max_s, fleet_size / fleet_connects_per_s)``;
- after a dropped connection, wait a random part of the fleet window before
  the first retry, so a killed node's clients do not all land on the next
  node in the same instant;
- replay the status/snapshot backlog at most ``replay_rate`` messages/s;
  alarms and faults bypass the cap.
"""

from __future__ import annotations

import random
import time

from tenacity import wait_random_exponential

from shaobing.agent.config import BrokerEndpoint, MqttConfig


def reconnect_wait(config: MqttConfig) -> wait_random_exponential:
    """tenacity wait strategy: uniform in [0, min(cap, first * 2^(attempt-1))]."""
    cap = max(config.reconnect_max_s, config.reconnect_spread_s())
    return wait_random_exponential(multiplier=config.reconnect_min_s, max=cap)


def first_retry_delay(config: MqttConfig, rng: random.Random) -> float:
    """Random pause before reconnecting after a drop: a fleet's share of the window."""
    return rng.uniform(0, config.reconnect_spread_s())


class Endpoints:
    """Round-robin over the cluster's nodes, starting at a random one per box,
    so a fleet spreads over the nodes and a dead node is left at the next try."""

    def __init__(self, endpoints: list[BrokerEndpoint], rng: random.Random):
        self._endpoints = endpoints
        self._next = rng.randrange(len(endpoints))
        self.current = endpoints[self._next]

    def advance(self) -> BrokerEndpoint:
        self.current = self._endpoints[self._next]
        self._next = (self._next + 1) % len(self._endpoints)
        return self.current

    def __len__(self) -> int:
        return len(self._endpoints)


class TokenBucket:
    """At most ``rate`` tokens per second, in bursts of at most one second's worth."""

    def __init__(self, rate: float, clock=time.monotonic):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()

    def available(self) -> int:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return int(self._tokens)

    def take(self, n: int) -> None:
        self._tokens -= n
