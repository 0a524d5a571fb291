"""The floor every layer stands on: events, clocks, workers, atomic files, keys."""
