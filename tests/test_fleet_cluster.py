"""A fleet of 200 boxes against a real 3-node RabbitMQ cluster, one node killed and restarted
(issue 16 item 4): nothing acknowledged is lost, every box on the killed node fails over.
The boxes run in two worker processes (simulator/fleet_processes.py), as a county's
load test of a thousand boxes would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import EXAMPLE

from shaobing.agent.config import load_config
from shaobing.simulator.fleet import FleetOptions, run_fleet
from shaobing.simulator.rabbitmq import RabbitCluster


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    cluster = RabbitCluster(3)
    try:
        cluster.start()
        cluster.wait_clustered()
        yield cluster
    finally:
        cluster.close()


@pytest.mark.timeout(300)
def test_fleet_survives_a_killed_cluster_node(rabbit_cluster, tmp_path):
    victim = 1  # the platform's subscriber sits on node 0, where its queue lives
    options = FleetOptions(
        boxes=200,
        hosts=rabbit_cluster.mqtt_hosts,
        protocol="3.1.1",
        scenario="node-kill",
        duration_s=30,
        health_s=10,
        alarm_rate=2,
        fault_burst_every_s=10,
        platform_host=rabbit_cluster.mqtt_hosts[0],
        drain_timeout_s=120,
        processes=2,  # the boxes in two worker processes, the platform in this one
    )

    def kill() -> str:
        rabbit_cluster.kill(victim)
        return rabbit_cluster.mqtt_hosts[victim]

    report = run_fleet(
        options,
        load_config(EXAMPLE),
        tmp_path,
        kill_node=kill,
        restart_node=lambda: rabbit_cluster.start(victim),
    )
    print(report.summary())
    assert report.emitted > 500 and report.alarms > 10
    assert report.lost == 0, report.summary()
    assert report.seq_gaps == 0, report.summary()
    # About a third of the boxes were on the killed node; each connected elsewhere.
    assert report.failover_p99_s is not None and len(report.per_box) == 200
