"""Run as ``python -m benchmarks.inference`` or ``python benchmarks/inference.py``.

The code lives in ``shaobing.agent.detection.bench`` so that installed boxes
have it too (``shaobing bench``).
"""

from shaobing.agent.detection.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
