"""``shaobing bench``: raw interpreter vs detection pipeline on this box."""

from shaobing.agent.detection.bench import register

__all__ = ["register"]
