"""Event load for fault-injection tests and benchmarks: the real agent stack,
fed by threads that raise events as fast as they are accepted.

Prints ``accepted <seq> <id>`` on stdout after each alarm-class ``emit``
returned, i.e. after the event became durable; a parent that SIGKILLs this
process knows exactly which events were promised. At start it prints
``skipped <from> <to>`` when the outbox skipped a seq range (after a crash).

    python -m shaobing.simulator.loadgen --config post.yaml --alarms 3000 --threads 4
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from gpiozero.pins.mock import MockFactory

from shaobing.agent.config import load_config
from shaobing.agent.runtime import Agent
from shaobing.core.events import Source


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadgen")
    p.add_argument("--config", required=True)
    p.add_argument("--alarms", type=int, default=0, help="alarm events to raise")
    p.add_argument("--telemetry", type=int, default=0, help="status events to raise")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--linger", type=float, default=0.0, help="seconds to keep running after")
    p.add_argument("--drain", action="store_true", help="then wait until the outbox is empty")
    args = p.parse_args(argv)

    agent = Agent(load_config(args.config), pin_factory=MockFactory())
    agent.start()
    if agent.outbox.seq_skipped:
        # The range this start skipped: the parent checks the seq gaps against it.
        sys.stdout.write("skipped {} {}\n".format(*agent.outbox.seq_skipped))
        sys.stdout.flush()
    out_lock = threading.Lock()
    source = Source(kind="loadgen", id="burst")

    def raise_alarms(n: int, worker: int) -> None:
        for i in range(n):
            event = agent.recorder.emit(
                "alarm.intrusion", source, zone="crossing", data={"worker": worker, "i": i}
            )
            with out_lock:
                sys.stdout.write(f"accepted {event.seq} {event.id}\n")
                sys.stdout.flush()

    def raise_telemetry(n: int) -> None:
        for i in range(n):
            agent.recorder.emit("status.telemetry", source, data={"i": i})

    threads = [
        threading.Thread(target=raise_alarms, args=(args.alarms // args.threads, w))
        for w in range(args.threads)
    ]
    threads.append(threading.Thread(target=raise_telemetry, args=(args.telemetry,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    agent.outbox.flush()
    deadline = time.monotonic() + args.linger
    while time.monotonic() < deadline or (args.drain and sum(agent.outbox.depth().values()) > 0):
        time.sleep(0.05)
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
