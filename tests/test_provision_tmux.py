"""The interactive `shaobing provision` in a real terminal (tmux), as an installer sees it:
prompts in the terminal's language, typing answered prompt by prompt, the final table."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import wait_for
from county_key import county_public_key, example_in
from wcwidth import wcswidth

from shaobing.agent.status_file import status_path, write_status
from shaobing.core.i18n import catalogue
from shaobing.provisioning.selftest import words as shown

TMUX = shutil.which("tmux") or "tmux"  # installed by .ci/system-packages


class Terminal:
    """One tmux server of our own (-L name): killing it ends only what this test started."""

    def __init__(self, command: list[str], env: dict[str, str], width: int = 110):
        self.socket = f"shaobing-test-{uuid.uuid4().hex[:8]}"
        shell = " ".join(_quote(c) for c in command) + '; echo "EXIT=$?"; sleep 3600'
        env_args = [f"{k}={v}" for k, v in env.items()]
        self._tmux(
            "new-session", "-d", "-s", "t", "-x", str(width), "-y", "200",
            "env", "-i", *env_args, "sh", "-c", shell,
        )  # fmt: skip

    def _tmux(self, *args: str) -> str:
        # -u: UTF-8 whatever the locale, so Chinese is not drawn as "_".
        return subprocess.run(
            [TMUX, "-u", "-L", self.socket, *args],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "t")

    def last_line(self) -> str:
        lines = [line for line in self.screen().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def answer(self, prompt: str, keys: str) -> None:
        """Wait for ``prompt`` on the cursor's line, then type ``keys`` and Enter."""

        def waiting() -> bool:
            line = self.last_line()
            return prompt in line and line.rstrip().endswith(":")

        try:
            wait_for(waiting, 60, f"prompt {prompt!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; screen:\n{self.screen()}") from None
        if keys:
            self._tmux("send-keys", "-t", "t", "-l", keys)
        self._tmux("send-keys", "-t", "t", "Enter")

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


STEPS = {
    # The terminal's own locale picks the language: LANG=C on a box gives Chinese.
    "zh-CN": (
        {"LANG": "C"},
        [
            ("村代码", "130521104201"), ("代码年份", "2023"), ("村名", "东关村"),
            ("GPS 位置", ""), ("看护铁路线", "n"), ("设备编号", ""),
            ("消息服务器地址", "127.0.0.1"), ("服务器端口", "{port}"), ("双向 TLS", "n"),
            ("指令公钥", "{key}"),
            ("输入编号", "panic-1"), ("引脚", "17"), ("类型", "紧急按钮"), ("触点", ""),
            ("输入编号", ""), ("输出编号", ""), ("走测", "n"),
        ],
        ["哨兵安装报告", "结果", "通过", "全部检查通过", "静止时读数正常", "县平台指令公钥"],
    ),
    "en": (
        {"LANG": "en_US.UTF-8"},
        [
            ("Village code", "130521104201"), ("Code year", "2023"), ("Village name", "东关村"),
            ("GPS position", ""), ("railway line", "n"), ("Device id", ""),
            ("County broker host", "127.0.0.1"), ("Broker port", "{port}"), ("mutual TLS", "n"),
            ("command public key", "{key}"),
            ("input id", "panic-1"), ("pin", "17"), ("kind", "panic"), ("contact", ""),
            ("input id", ""), ("output id", ""), ("Walk test", "n"),
        ],
        ["provisioning report", "RESULT", "PASS", "ALL CHECKS PASSED"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("lang", list(STEPS))
def test_interactive_provision_in_a_terminal(tmp_path, mosquitto, lang):
    locale, steps, words = STEPS[lang]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TERM": "xterm", **locale}
    env.update({k: os.environ[k] for k in ("VIRTUAL_ENV", "PYTHONPATH") if k in os.environ})
    command = [
        sys.executable, "-m", "shaobing.cli.main", "provision",
        "--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "var"),
        "--gpio-backend", "mock", "--no-register",
    ]  # fmt: skip
    county_key = county_public_key(tmp_path)
    term = Terminal(command, env)
    try:
        for prompt, keys in steps:
            term.answer(prompt, keys.format(port=mosquitto.port, key=county_key))
        wait_for(lambda: "EXIT=" in term.screen(), 90, "provisioning to end")
        screen = term.screen()
        if os.environ.get("SHAOBING_SCREEN_DIR"):  # docs/installer-guide.md's screens
            Path(os.environ["SHAOBING_SCREEN_DIR"], f"provision-{lang}.txt").write_text(screen)
        assert "EXIT=0" in screen, screen
        for word in words:
            assert word in screen, (word, screen)
        assert (tmp_path / "etc" / "provisioning-answers.yaml").exists()
        for raw in RAW:
            assert raw not in screen, (raw, screen)
        assert not re.search(r'^\s*\{"ts"', screen, re.M), screen  # no JSON log line
        # The self-test table's REASON column starts at one terminal column on every row.
        report = json.loads((tmp_path / "etc" / "provisioning-report.json").read_text())
        result, reason = {"zh-CN": ("结果", "说明"), "en": ("RESULT", "REASON")}[lang]
        header = next(line for line in screen.splitlines() if line.startswith(result))
        column = wcswidth(header[: header.index(reason)])
        table = screen[screen.index(header) :]
        for check in report["checks"]:
            text = shown(check["reason"], catalogue(lang))  # the report keeps English
            row = next(line for line in table.splitlines() if line.endswith(text))
            assert wcswidth(row[: row.rindex(text)]) == column, (row, header)
    finally:
        term.close()


# Library text that must never reach an installer's screen (pydantic, Python, sockets, paho).
RAW = ("Traceback", "Input should be", "String should match", "[Errno", "Unspecified error",
       "Protocol error", "PinFactoryFallback", "warnings.warn", "Value error")  # fmt: skip
CHECK_WORDS = {
    "zh-CN": ["：正确（设备 sb-130521-dongguan-01", "个问题", "'烟感' is not a sensor kind",
              "2 个文件中 1 个正确，1 个有问题"],
    "en": [": ok (device sb-130521-dongguan-01", "problem(s)", "'烟感' is not a sensor kind",
           "1 of 2 file(s) ok, 1 with problems"],
}  # fmt: skip
STATUS_LABELS = {
    "zh-CN": ["设备", "程序", "链路", "原因", "待发队列", "未结束告警", "证书"],
    "en": ["device", "agent", "link", "why", "outbox", "open alarms", "certificate"],
}


def _status_doc(port: int) -> dict:
    from shaobing.agent.link_words import PLAIN_TO_TLS

    now = int(time.time() * 1000)
    refusal = PLAIN_TO_TLS.format(host="127.0.0.1", port=port)  # as the uplink reports it
    return {
        "v": 1, "written_ms": now, "pid": os.getpid(), "state": "running",
        "device": "sb-130521104201-01", "version": "0.1.0", "broker": f"127.0.0.1:{port}",
        "health": {"uplink": {"connected": False, "last_refusal": refusal},
                   "outbox": {"alarm": 2, "event": 5}, "outbox_bytes": 4096},
        "open_alarms": [{"ts": now, "type": "alarm.panic", "zone": "post",
                         "source": "gpio:panic-1", "state": "open"}],
        "last_events": [{"seq": 7, "ts": now, "type": "alarm.panic", "zone": "post",
                         "source": "gpio:panic-1"}],
        "certificate": None,
    }  # fmt: skip


def _value_columns(screen: str, labels: list[str]) -> set[int]:
    """The terminal column where each labelled row's value starts (CJK labels take 2)."""
    columns = set()
    for label in labels:
        line = next(line for line in screen.splitlines() if line.startswith(label + " "))
        value_at = len(line) - len(line[len(label) :].lstrip(" "))
        columns.add(wcswidth(line[:value_at]))
    return columns


@pytest.mark.parametrize("lang", list(STEPS))
def test_config_check_and_status_in_a_terminal(tmp_path, lang):
    """Issue 14 "Done when": `config check` and `status` as an installer sees them."""
    locale = STEPS[lang][0]
    good = tmp_path / "village-post.yaml"
    good.write_text(example_in(tmp_path / "etc"), encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        good.read_text(encoding="utf-8")
        .replace("kind: panic", "kind: 烟感", 1)
        .replace("130521104201", "13052110420", 1),
        encoding="utf-8",
    )
    state = tmp_path / "var"
    write_status(status_path(state), _status_doc(8883))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TERM": "xterm", **locale}
    env.update({k: os.environ[k] for k in ("VIRTUAL_ENV", "PYTHONPATH") if k in os.environ})
    cli = f"{_quote(sys.executable)} -m shaobing.cli.main"
    script = (
        f"{cli} config check {_quote(str(good))} {_quote(str(bad))}; "
        f"{cli} status --state-dir {_quote(str(state))}"
    )
    term = Terminal(["sh", "-c", script], env, width=160)
    try:
        wait_for(lambda: "EXIT=" in term.screen(), 90, "config check and status to end")
        screen = term.screen().rstrip()
    finally:
        term.close()
    if os.environ.get("SHAOBING_SCREEN_DIR"):
        Path(os.environ["SHAOBING_SCREEN_DIR"], f"check-status-{lang}.txt").write_text(screen)
    for raw in RAW:
        assert raw not in screen, (raw, screen)
    assert not re.search(r'^\s*\{"ts"', screen, re.M), screen  # no JSON log line
    for words in CHECK_WORDS[lang]:
        assert words in screen, (words, screen)
    status = screen[re.search(rf"^{STATUS_LABELS[lang][0]} ", screen, re.M).start() :]
    assert len(_value_columns(status, STATUS_LABELS[lang])) == 1, status
    if lang == "zh-CN":
        assert "需要 TLS" in status and "expects TLS" not in status, status
    else:
        assert "port 8883 on 127.0.0.1 expects TLS" in status, status
