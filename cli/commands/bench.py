"""``shaobing bench``: raw interpreter vs detection pipeline on this box."""

from shaobing.simulator.detection_bench import register

__all__ = ["register"]
