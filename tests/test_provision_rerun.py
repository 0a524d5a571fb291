"""Issue 14 item 4: a failed provisioning never costs the installer the answers;
a re-run offers them as defaults; bad files are re-asked at their own prompt;
the state directory is checked before anything is written."""

from __future__ import annotations

import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from county_key import county_public_key
from hypothesis import given
from hypothesis import strategies as st
from test_provision import answers_data, pki, tls_broker, wired_options  # noqa: F401

from shaobing.provisioning import answers as A
from shaobing.provisioning import rerun
from shaobing.provisioning.flow import Options, ProvisionError, provision
from shaobing.provisioning.prompts import Prompter, interview
from shaobing.simulator.broker import free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_late_failure_keeps_the_answers_for_a_rerun(tmp_path, pki):  # noqa: F811
    _, d = pki
    data = answers_data(d, free_port(), selftest={"broker_timeout_s": 2})
    opts, _, said = wired_options(tmp_path, data)
    outcome = provision(A.parse_answers(data), opts)
    assert not outcome.ok  # nothing listens on the broker port: the self-test fails
    kept = tmp_path / "etc" / rerun.ANSWERS_NAME
    assert mode(kept) == 0o600
    assert any(f"shaobing provision --answers {kept}" in line for line in said)
    again = A.parse_answers(A.read_answers_file(kept))
    assert again == A.parse_answers(data)


def test_kept_answers_hold_no_secret_and_say_so(tmp_path):
    data = {
        "device_id": "sb-130521104201-01",
        "cameras": [{"id": "cam-1", "url": "rtsp://admin:hunter2@10.0.0.5/ch1"}],
        "gb28181": {"server_id": "3402000000", "password": "s3cret"},
    }
    path = rerun.save_answers(data, tmp_path)
    text = path.read_text()
    assert "hunter2" not in text and "s3cret" not in text
    assert "fill in every value shown as ***" in text
    assert mode(path) == 0o600
    previous = rerun.previous_answers(tmp_path)
    assert previous["device_id"] == "sb-130521104201-01"
    assert "password" not in previous["gb28181"]  # asked again, never offered as ***
    assert "url" not in previous["cameras"][0]


def test_previous_answers_tolerate_a_broken_file(tmp_path):
    assert rerun.previous_answers(tmp_path) == {}
    (tmp_path / rerun.ANSWERS_NAME).write_text("- a list\n- not a mapping\n")
    assert rerun.previous_answers(tmp_path) == {}
    (tmp_path / rerun.ANSWERS_NAME).write_text("key: [unclosed\n")
    assert rerun.previous_answers(tmp_path) == {}


def test_state_dir_is_checked_before_anything_is_written(tmp_path, pki):  # noqa: F811
    _, d = pki
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    opts = Options(config_dir=tmp_path / "etc", state_dir=blocker / "var", say=lambda s: None)
    with pytest.raises(ProvisionError) as info:
        provision(A.parse_answers(answers_data(d, 8883)), opts)
    problem = next(p for p in info.value.problems if p.path == "--state-dir")
    assert f"{blocker} is not a directory" in problem.message
    assert not (tmp_path / "etc").exists() or not any((tmp_path / "etc").iterdir())
    # Space: the same check with a need no disk can meet.
    (low,) = rerun.state_dir_problems(tmp_path / "var", min_free=1 << 60)
    assert "MiB free on" in low.message and "needs at least" in low.message


def _provision(tmp_path: Path, keys: list[str], state_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "--lang", "en", "provision",
         "--config-dir", str(tmp_path / "etc"), "--state-dir", str(state_dir),
         "--gpio-backend", "mock", "--no-register"],
        input="\n".join(keys) + "\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_interactive_run_checks_the_directories_before_the_first_question(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _provision(tmp_path, ["130521104201"], blocker / "var")
    assert result.returncode == 2
    assert f"--state-dir: {blocker} is not a directory" in result.stderr, result.stderr
    assert "Village code" not in result.stdout  # not one question asked in vain


def test_interactive_rerun_after_a_failure_is_enter_enter_enter(
    tmp_path,
    pki,  # noqa: F811
    tls_broker,  # noqa: F811
):
    _, d = pki
    keys = [
        "130521104201", "2023", "东关村", "37.06,114.51",
        "n",  # no railway
        "",  # device id: default
        "127.0.0.1", str(tls_broker.tls_port),
        "y",  # TLS
        str(d / "missing-ca.pem"),  # no such file: re-asked at once
        str(d / "ca.pem"),
        "y",  # the county gave a certificate
        str(d / "expired.pem"),  # expired: re-asked at its own prompt
        str(d / "device.pem"),
        str(d / "other.key"),  # another device's key: re-asked at its own prompt
        str(d / "device.key"),
        str(county_public_key(d)),  # the county's command key
        "panic-1", "17", "panic", "",
        "tamper-1", "23", "tamper", "",  # NC, and nothing wired on the bench: FAIL
        "",  # no more inputs
        "",  # no outputs
        "n",  # no walk test
    ]  # fmt: skip
    first = _provision(tmp_path, keys, tmp_path / "var")
    out = first.stdout + first.stderr
    assert first.returncode == 1, out  # written, but the self-test failed
    assert "missing-ca.pem" in out and "expired on" in out
    assert "does not match the private key" in out
    kept = tmp_path / "etc" / rerun.ANSWERS_NAME
    assert f"shaobing provision --answers {kept}" in out
    assert mode(kept) == 0o600

    # The re-run: every previous answer is the default, Enter keeps it; only the
    # inputs change (the tamper loop is not wired yet).
    second = _provision(
        tmp_path,
        [""] * 14 + ["n", "panic-1", "17", "panic", "", "", "", ""],
        tmp_path / "var",
    )
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert "[130521104201]" in out and f"[{d / 'device.key'}]" in out
    assert "Keep these 2 inputs?" in out and "ALL CHECKS PASSED" in out
    config = yaml.safe_load((tmp_path / "etc" / "shaobing.yaml").read_text())
    assert [i["id"] for i in config["inputs"]] == ["panic-1"]
    assert config["mqtt"]["port"] == tls_broker.tls_port
    assert config["mqtt"]["tls"]["cert"].endswith("device.pem")
    assert config["site"]["village_name"] == "东关村"
    assert config["site"]["gps"] == {"lat": 37.06, "lon": 114.51}


def test_a_refusal_after_the_questions_keeps_the_answers(tmp_path, pki):  # noqa: F811
    _, d = pki
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "device.key").write_text("not a key\n")  # a damaged key on the box
    keys = [
        "130521104201", "2023", "东关村", "", "n", "", "127.0.0.1", "8883",
        "y", str(d / "ca.pem"),
        "n",  # no certificate yet: the key on the box is used for the CSR
        str(county_public_key(d)),  # the county's command key
        "", "", "n",
    ]  # fmt: skip
    result = _provision(tmp_path, keys, tmp_path / "var")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nothing was written" in result.stderr
    kept = tmp_path / "etc" / rerun.ANSWERS_NAME
    assert f"shaobing provision --answers {kept}" in result.stderr
    kept_answers = A.parse_answers(A.read_answers_file(kept))
    assert kept_answers.site["village_name"] == "东关村"
    assert kept_answers.identity.ca == d / "ca.pem"

    # The installer removes the damaged key and runs the interview again: every
    # answer is offered as its default, so Enter at each prompt finishes the job.
    (tmp_path / "etc" / "device.key").unlink()
    again = _provision(tmp_path, [""] * 20, tmp_path / "var")
    out = again.stdout + again.stderr
    assert again.returncode == 1, out  # written; only the broker (none on 8883) fails
    assert "[130521104201]" in out and f"[{d / 'ca.pem'}]" in out, out
    assert "nothing was written" not in out and "an answer is needed" not in out, out
    assert (tmp_path / "etc" / "device.csr").exists()


@given(st.text(max_size=300))
def test_any_previous_answers_file_reads_or_is_ignored(text):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / rerun.ANSWERS_NAME).write_text(text, encoding="utf-8", errors="replace")
        assert isinstance(rerun.previous_answers(Path(d)), dict)


def test_a_run_from_the_kept_file_does_not_mask_it_again(tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    etc.mkdir()
    monkeypatch.chdir(etc)
    kept = etc / rerun.ANSWERS_NAME
    assert rerun.is_kept_file(Path(rerun.ANSWERS_NAME), etc)  # relative, from inside etc
    assert rerun.is_kept_file(kept, etc)
    assert not rerun.is_kept_file(tmp_path / "answers.yaml", etc)
    assert not rerun.is_kept_file(None, etc)


def test_a_rerun_keeps_what_the_interview_does_not_ask(tmp_path):
    previous = {
        "command_key": str(county_public_key(tmp_path)),
        "site": {"village_code": "130521104201", "code_year": 2023, "village_name": "东关村"},
        "device_id": "sb-130521104201-01",
        "broker": {"host": "127.0.0.1", "port": 1883, "tls": False},
        "cameras": [{"id": "cam-1", "url": "rtsp://10.0.0.5/ch1"}],
        "serial": {"modbus": []},
        "selftest": {"walk_test": False},
    }
    said: list[str] = []
    answers = iter([""] * 13)  # Enter everywhere: every previous answer kept
    data = interview(Prompter(read=lambda _q: next(answers), write=said.append), previous=previous)
    assert data["cameras"] == previous["cameras"] and data["serial"] == {"modbus": []}
    assert data["site"]["village_code"] == "130521104201"
    assert data["broker"] == {"host": "127.0.0.1", "port": 1883, "tls": False}
    assert data["selftest"] == {"walk_test": False}
    assert "kept from the previous answers: cameras, serial" in said
