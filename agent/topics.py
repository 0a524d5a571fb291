"""MQTT topic names: the one place that knows them (documented in docs/mqtt.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str
    village_code: str
    device: str

    @property
    def base(self) -> str:
        # The village code leads so a county platform can subscribe per village.
        return f"{self.prefix}/{self.village_code}/{self.device}"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    def event(self, event_type: str) -> str:
        return f"{self.base}/event/{event_type.replace('.', '/')}"

    def snapshot(self, event_id: str) -> str:
        return f"{self.base}/snapshot/{event_id}"

    @property
    def register(self) -> str:
        """Retained registration written by `shaobing provision` (docs/mqtt.md)."""
        return f"{self.base}/register"

    @property
    def commands(self) -> str:
        """Subscription filter for platform commands (handled by a later component)."""
        return f"{self.base}/cmd/+"

    @property
    def bundle_chunks(self) -> str:
        """Subscription filter for model bundle chunks: .../bundle/{update_id}/{n}."""
        return f"{self.base}/bundle/+/+"

    @property
    def responses(self) -> str:
        return f"{self.base}/cmd/response"
