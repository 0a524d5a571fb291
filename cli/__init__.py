"""The command line: the top floor, the only place that imports provisioning/ and simulator/."""
