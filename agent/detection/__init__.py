"""On-device object detection: runtime, model adapters, cameras-to-events pipeline."""
