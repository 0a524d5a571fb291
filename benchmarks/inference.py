"""Run as ``python -m benchmarks.inference`` or ``python benchmarks/inference.py``.

The code lives in ``shaobing.simulator.detection_bench`` so that installed boxes
have it too (``shaobing bench``).
"""

from shaobing.simulator.detection_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
