"""The pieces of command flow control and once-only execution, on real files.

End to end (a real Mosquitto, a SIGKILLed `shaobing run`): test_control_flow.py
and test_command_crash.py.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shaobing.agent.arming import Arming
from shaobing.agent.command_effects import CommandEffects
from shaobing.agent.command_envelope import ArmArgs, CommandError, Envelope, SetConfigArgs
from shaobing.agent.command_lanes import READS_MAX, CommandLanes
from shaobing.agent.command_once import ExecuteOnce, Replayed
from shaobing.agent.command_replies import Incoming
from shaobing.agent.config import ArmingConfig
from shaobing.agent.replay_cache import ReplayCache

NOW = time.time()


def incoming(command: str) -> Incoming:
    return Incoming(f"sb/v/d/cmd/{command}", b"{}", 2, None, None)


def envelope(command_id: str) -> Envelope:
    ms = int(NOW * 1000)
    return Envelope(id=command_id, issued_ms=ms, expires_ms=ms + 60_000)


def cache(tmp_path) -> ReplayCache:
    return ReplayCache(tmp_path / "commands-seen.json", lambda: NOW, lambda: 30.0)


def arming(tmp_path) -> Arming:
    return Arming(
        ArmingConfig(), ["crossing", "yard"], tmp_path / "arming.json", lambda: True, lambda: NOW
    )


def test_reads_never_crowd_out_actions_and_a_full_lane_is_refused():
    lanes = CommandLanes()
    acked: list[str] = []
    for i in range(READS_MAX + 3):
        assert lanes.offer(incoming("ping"), lambda i=i: acked.append(f"ping-{i}"))
    assert lanes.offer(incoming("disarm"), lambda: acked.append("disarm"))
    order = []
    while len(order) < READS_MAX + 4:
        queued = lanes.take()
        assert queued is not None
        order.append((queued.item.topic.rsplit("/", 1)[-1], queued.busy))
    # The disarm first, then the three refusals (answered `busy`), then the reads.
    assert order == [("disarm", False)] + [("ping", True)] * 3 + [("ping", False)] * READS_MAX
    assert acked == []  # nothing is acknowledged by the lanes themselves
    lanes.close()
    assert lanes.take() is None


def test_a_started_disarm_whose_effect_is_on_disk_is_answered_not_rerun(tmp_path):
    zones = arming(tmp_path)
    seen = cache(tmp_path)
    effects = CommandEffects(zones, None)
    args = ArmArgs(zones=["crossing"])
    seen.start("c-1", int(NOW * 1000) + 60_000, "disarm", effects.before("disarm", args))
    zones.set(["crossing"], "disarmed", by="c-1")  # then the power cut, before `done`
    runs: list = []

    def handler(a, e):
        runs.append(e.id)
        return {}

    announced: list = []
    effects = CommandEffects(arming(tmp_path), None, lambda z, c: announced.append((c, z)))
    again = ExecuteOnce(cache(tmp_path), effects)
    with pytest.raises(Replayed) as refused:
        again.run("disarm", handler, args, envelope("c-1"))
    original = refused.value.original
    assert original["ok"] is True and original["result"]["recovered"] is True
    crossing = original["result"]["zones"]["crossing"]
    assert crossing["state"] == "disarmed" and crossing["changed"] is True
    assert runs == []
    # Its status.arming events may have been cut off too: announced again.
    assert [(c, z["crossing"]["state"]) for c, z in announced] == [("c-1", "disarmed")]
    assert cache(tmp_path).get("c-1")["state"] == "done"


def test_set_config_cut_before_its_write_runs_again_and_after_it_is_answered(tmp_path):
    config = tmp_path / "shaobing.yaml"
    config.write_text("a: 1\n")
    effects = CommandEffects(arming(tmp_path), config)
    args = SetConfigArgs(rollback=True)
    before = effects.before("set_config", args)
    assert effects.applied("set_config", "c-2", before) is None
    config.write_text("a: 2\n")
    assert effects.applied("set_config", "c-2", before) == {"persisted": True, "recovered": True}


def test_a_refused_command_leaves_no_trace_and_a_failed_one_is_kept(tmp_path):
    once = ExecuteOnce(cache(tmp_path), CommandEffects(arming(tmp_path), None))
    args = ArmArgs(zones=["crossing"])

    def refuse(a, e):
        raise CommandError("unknown_zone", "no")

    def explode(a, e):
        raise RuntimeError("boom")

    with pytest.raises(CommandError):
        once.run("disarm", refuse, args, envelope("c-refuse"))
    with pytest.raises(RuntimeError):
        once.run("disarm", explode, args, envelope("c-explode"))
    assert cache(tmp_path).get("c-refuse") is None
    kept = cache(tmp_path).get("c-explode")
    assert kept["state"] == "done" and kept["error"]["code"] == "failed"
    # A read keeps its outcome, not its result; a second time it is refused.
    assert once.run("ping", lambda a, e: {"pong": True}, None, envelope("c-ping")) == {"pong": True}
    with pytest.raises(Replayed) as refused:
        once.run("ping", lambda a, e: {"pong": True}, None, envelope("c-ping"))
    assert refused.value.original["ok"] is True
    assert refused.value.original["result_omitted"] is True


def test_a_v1_cache_still_refuses_its_ids(tmp_path):
    ms = int(NOW * 1000) + 60_000
    (tmp_path / "commands-seen.json").write_text(json.dumps({"v": 1, "seen": {"c-old": ms}}))
    once = ExecuteOnce(cache(tmp_path), CommandEffects(arming(tmp_path), None))
    with pytest.raises(Replayed) as refused:
        once.run("ping", lambda a, e: {}, None, envelope("c-old"))
    assert refused.value.original == {}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(seen=st.dictionaries(st.text(min_size=1, max_size=8), JSON, max_size=6))
def test_any_cache_file_loads_to_valid_records(tmp_path_factory, seen):
    path = tmp_path_factory.mktemp("seen") / "commands-seen.json"
    path.write_text(json.dumps({"v": 2, "seen": seen}))
    loaded = ReplayCache(path, lambda: NOW, lambda: 30.0)
    for command_id in seen:
        record = loaded.get(command_id)
        if record is not None:
            assert record["state"] in ("started", "done")
            assert isinstance(record["expires_ms"], int)
