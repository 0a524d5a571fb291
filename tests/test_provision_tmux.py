"""The interactive `shaobing provision` in a real terminal (tmux), as an installer sees it:
prompts in the terminal's language, typing answered prompt by prompt, the final table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import wait_for
from county_key import county_public_key

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
            ("输入编号", "panic-1"), ("引脚", "17"), ("类型", "panic"), ("触点", ""),
            ("输入编号", ""), ("输出编号", ""), ("走测", "n"),
        ],
        ["哨兵安装报告", "结果", "通过", "全部检查通过"],
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
    finally:
        term.close()
