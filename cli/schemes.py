"""Camera sources the simulator serves, by URL scheme, for the agents the command line builds.

Drivers never import the simulator; the top floor hands these in. The import is
lazy so a box without simulated cameras never loads the simulator's scenes.
"""

from __future__ import annotations

from typing import Any


def _simulated_camera(source: str) -> Any:
    from shaobing.simulator.camera import VirtualCameraFactory

    return VirtualCameraFactory(source)


CAMERA_SCHEMES = {"sim": _simulated_camera}
