"""The shared worker lifecycle: a failing turn never ends a worker, a wedged one is seen."""

from __future__ import annotations

import threading

from agent_harness import SimulatedPost
from conftest import config_for, wait_for

from shaobing.core.watchdog import Heartbeat
from shaobing.core.worker import LoopWorker, ThreadWorker


def test_health_keeps_reporting_when_a_driver_state_raises(tmp_path, mosquitto, county_factory):
    county = county_factory(mosquitto.port)
    config = config_for(tmp_path, mosquitto.port)
    config = config.model_copy(
        update={"health": config.health.model_copy(update={"interval_s": 0.2})}
    )
    post = SimulatedPost(config)
    try:

        def broken_state():
            raise RuntimeError("gpio chip vanished")

        post.agent.inputs.state = broken_state
        assert county.wait_for(
            lambda m: (
                len(
                    [
                        e
                        for e in county.events("status.health")
                        if "drivers.gpio_inputs" in e["data"]["health"]["failed_sections"]
                    ]
                )
                >= 3
            ),
            20,
        ), "health stopped reporting after a driver's state() raised"
        last = county.events("status.health")[-1]["data"]
        assert last["drivers"]["gpio_inputs"] == {"error": "RuntimeError: gpio chip vanished"}
        assert last["health"]["section_errors"] >= 3
        # The other sections are still there and the agent is still live.
        assert "alarm" in last["outbox"] and last["uplink"]["connected"] is True
        assert post.agent.healthy()
    finally:
        post.stop()


def test_a_turn_that_raises_is_counted_and_the_loop_goes_on():
    calls = []

    def turn():
        calls.append(1)
        if len(calls) % 2:
            raise ValueError("odd turn")

    worker = LoopWorker("flaky", turn, interval_s=0.01)
    worker.start()
    try:
        wait_for(lambda: len(calls) >= 6, 10, "six turns")
        assert worker.alive()
        assert worker.state.errors >= 3 and "ValueError: odd turn" in worker.state.last_error
    finally:
        worker.stop()


def test_a_wedged_worker_makes_the_agent_unhealthy(tmp_path, mosquitto):
    post = SimulatedPost(config_for(tmp_path, mosquitto.port))
    release = threading.Event()
    wedged = LoopWorker("wedged", lambda: release.wait(30), interval_s=0.01, max_turn_s=0.2)
    try:
        wedged.start()
        post.agent.liveness.register("wedged", wedged.alive)
        wait_for(lambda: not post.agent.healthy(), 10, "the wedged worker to be noticed")
        assert post.agent.liveness.failing() == ["wedged"]
        release.set()
        wait_for(post.agent.healthy, 10, "the worker to turn again")
    finally:
        release.set()
        wedged.stop()
        post.stop()


def test_a_thread_worker_whose_loop_raises_is_restarted_and_counted():
    stop = threading.Event()
    entered = []

    def loop():
        entered.append(1)
        if len(entered) < 3:
            raise OSError("socket went away")
        stop.wait()

    worker = ThreadWorker("flaky", loop, stop, restart_pause_s=0.01)
    worker.start()
    try:
        assert wait_for(lambda: len(entered) == 3, 10)
        assert worker.state.errors == 2
        assert worker.state.last_error == "OSError: socket went away"
        assert worker.alive() and worker.is_running()
    finally:
        worker.stop(2)
    assert not worker.is_running()


def test_a_thread_worker_with_a_stale_heartbeat_is_not_alive():
    stop = threading.Event()
    beat = Heartbeat(max_age_s=0.05)
    worker = ThreadWorker("wedged", stop.wait, stop, heartbeat=beat)
    assert worker.alive()  # not started: not a failure
    worker.start()
    try:
        assert wait_for(lambda: not worker.alive(), 10), "a loop that stopped beating looks alive"
        beat.beat()
        assert worker.alive()
    finally:
        worker.stop(2)
    assert worker.alive()  # stopping is not a failure
