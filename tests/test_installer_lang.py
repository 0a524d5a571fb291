"""Issue 14 item 8: the installer's text in zh-CN and English, chosen by --lang or the locale."""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from conftest import ROOT
from county_key import county_public_key, example_in
from hypothesis import given
from hypothesis import strategies as st

from shaobing.agent.status_file import status_path, write_status
from shaobing.cli.main import main
from shaobing.core.i18n import LANGUAGES, LOCALE_DIR, from_environment

CLI = [sys.executable, "-m", "shaobing.cli.main"]
PACKAGES = ("core", "agent", "drivers", "provisioning", "cli", "simulator", "models")


def used_msgids() -> dict[str, str]:
    """Every literal ``_("...")`` and ``N_("...")`` in the code, with where it is (Babel's
    own extractor)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for lineno, msg, _c, _ctx in extract_from_file(
                "python", str(path), {"_": None, "N_": None}
            ):
                if isinstance(msg, str):
                    found.setdefault(msg, f"{path.relative_to(ROOT)}:{lineno}")
    return found


def po_messages(lang: str) -> dict[str, str]:
    with (LOCALE_DIR / LANGUAGES[lang] / "LC_MESSAGES" / "shaobing.po").open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_po(fh) if m.id}


def fields(text: str) -> set[str]:
    return {name for _t, name, _s, _c in string.Formatter().parse(text) if name}


def test_every_msgid_in_the_code_is_in_both_catalogues():
    used = used_msgids()
    assert len(used) > 100  # the extractor sees the installer's text at all
    for lang in LANGUAGES:
        catalogue = po_messages(lang)
        missing = {m: where for m, where in used.items() if m not in catalogue}
        assert not missing, f"{lang} .po lacks: {missing}"
    zh = po_messages("zh-CN")
    for msgid in used:
        assert zh[msgid], f"no Chinese for {msgid!r} ({used[msgid]})"
        # A translation that drops or renames a {field} would crash .format() on a box.
        assert fields(zh[msgid]) == fields(msgid), (msgid, zh[msgid])


@pytest.mark.parametrize(
    ("environ", "flag", "expected"),
    [
        ({}, None, "zh-CN"),  # nothing set: installers read Chinese
        ({"LANG": "C"}, None, "zh-CN"),  # a typical SSH session on a box
        ({"LANG": "C.UTF-8"}, None, "zh-CN"),
        ({"LANG": "POSIX"}, None, "zh-CN"),
        ({"LANG": "en_US.UTF-8"}, None, "en"),
        ({"LANG": "zh_CN.UTF-8"}, None, "zh-CN"),
        ({"LANG": "de_DE.UTF-8"}, None, "zh-CN"),
        ({"LANG": "zh_CN.UTF-8", "LC_ALL": "en_GB.UTF-8"}, None, "en"),
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, None, "zh-CN"),
        ({"LANG": "en_US.UTF-8", "SHAOBING_LANG": "zh-CN"}, None, "zh-CN"),
        ({"LANG": "zh_CN.UTF-8"}, "en", "en"),
        ({"LANG": "en_US.UTF-8"}, "zh", "zh-CN"),
    ],
)
def test_language_from_flag_then_locale(environ, flag, expected):
    assert from_environment(environ, flag) == expected


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=90, env=env or dict(os.environ)
    )


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """In-process: config check and status load no logging set-up of their own."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_config_check_speaks_both_languages(tmp_path, capsys, monkeypatch):
    good = tmp_path / "village-post.yaml"  # the example, its /etc/shaobing files made real
    good.write_text(example_in(tmp_path / "etc"), encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text(encoding="utf-8").replace("130521104201", "13052110420"))
    rc, out, err = cli(capsys, "--lang", "zh-CN", "config", "check", str(good), str(bad))
    assert rc == 1
    assert "：正确（设备 sb-130521-dongguan-01，村 130521104201 东关村" in out
    assert "4 路输入，2 路输出" in out
    assert re.search(rf"{bad}：\d+ 个问题", err), err
    assert "2 个文件中 1 个正确，1 个有问题" in err
    rc, out, err = cli(capsys, "--lang", "en", "config", "check", str(good), str(bad))
    assert rc == 1
    assert ": ok (device sb-130521-dongguan-01, village 130521104201 东关村" in out
    assert re.search(rf"{bad}: \d+ problem\(s\)", err), err
    assert "1 of 2 file(s) ok, 1 with problems" in err
    # No flag, no English locale: Chinese, as on a box's LANG=C session.
    for name in ("SHAOBING_LANG", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C")
    assert "正确" in cli(capsys, "config", "check", str(good))[1]
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert ": ok (" in cli(capsys, "config", "check", str(good))[1]


def test_provision_answers_report_in_both_languages(tmp_path, mosquitto):
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        yaml.safe_dump(
            {
                "device_id": "sb-130521104201-01",
                "site": {"village_code": "130521104201", "code_year": 2023,
                         "village_name": "东关村"},
                "broker": {"host": "127.0.0.1", "port": mosquitto.port, "tls": False},
                "inputs": [{"id": "panic-1", "pin": 17, "kind": "panic", "contact": "NO"}],
                "outputs": [{"id": "siren-1", "pin": 24, "kind": "siren"}],
                "gpio_backend": "mock",
                "command_key": str(county_public_key(tmp_path)),
            },
            allow_unicode=True,
        )
    )  # fmt: skip
    words = {
        "zh-CN": ["哨兵安装报告", "结果", "类别", "通过", "全部检查通过：通过", "已写入"],
        "en": ["provisioning report", "RESULT", "KIND", "PASS", "ALL CHECKS PASSED: ", "wrote"],
    }
    for lang, expected in words.items():
        etc = tmp_path / f"etc-{lang}"
        result = run(
            "--lang", lang, "provision", "--answers", str(answers), "--no-register",
            "--config-dir", str(etc), "--state-dir", str(tmp_path / "var"),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        for word in expected:
            assert word in result.stdout, (lang, word, result.stdout)
        assert all(w in (etc / "provisioning-report.txt").read_text() for w in expected[:3])
    # A refused answers file: the frame is translated, the located problem stays as it is.
    bad = tmp_path / "bad.yaml"
    bad.write_text(answers.read_text(encoding="utf-8").replace("130521104201", "1305"))
    dirs = ["--config-dir", str(tmp_path / "etc-bad"), "--state-dir", str(tmp_path / "var")]
    zh = run("--lang", "zh-CN", "provision", "--answers", str(bad), *dirs)
    assert zh.returncode == 2 and "个问题；未写入任何文件" in zh.stderr, zh.stderr
    en = run("--lang", "en", "provision", "--answers", str(bad), *dirs)
    assert en.returncode == 2 and "problem(s); nothing was written" in en.stderr, en.stderr


def test_status_in_both_languages(tmp_path, capsys):
    now = int(time.time() * 1000)
    doc = {
        "v": 1, "written_ms": now, "pid": os.getpid(), "state": "running",
        "device": "sb-x", "version": "1.0", "broker": "127.0.0.1:8883",
        "health": {"uplink": {"connected": False}, "outbox": {"alarm": 1}, "outbox_bytes": 10},
        "open_alarms": [], "last_events": [], "certificate": None,
    }  # fmt: skip
    write_status(status_path(tmp_path), doc)
    rc, out, err = cli(capsys, "--lang", "zh-CN", "status", "--state-dir", str(tmp_path))
    assert rc == 0, err
    for word in ("运行中（进程", "链路", "未连接", "待发队列", "未结束告警", "最近事件", "证书"):
        assert word in out, (word, out)
    _rc, out, _err = cli(capsys, "--lang", "en", "status", "--state-dir", str(tmp_path))
    assert "link         NOT connected" in out and "open alarms  none" in out
    # --json is for machines: the same keys whatever the language.
    _rc, out, _err = cli(
        capsys, "--lang", "zh-CN", "status", "--state-dir", str(tmp_path), "--json"
    )
    assert json.loads(out)["device"] == "sb-x"


def test_zh_table_lines_up_by_display_width():
    from shaobing.core.i18n import catalogue
    from shaobing.provisioning.selftest import PASS, Result, table

    results = [
        Result("gpio_input", "panic-1 (GPIO17)", PASS, "reason-a", 0.1, {}),
        Result("broker", "东关村 broker", PASS, "reason-b", 0.1, {}),
    ]
    lines = table(results, _=catalogue("zh-CN")).splitlines()
    from wcwidth import wcswidth

    # The reason column starts at the same terminal column on every row.
    starts = {
        wcswidth(line[: line.index(r)])
        for line, r in zip(lines[2:], ["reason-a", "reason-b"], strict=True)
    }
    assert len(starts) == 1, lines
    assert Path(ROOT / "core" / "locale").is_dir()


@given(
    st.dictionaries(
        st.sampled_from(["SHAOBING_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"]),
        st.text(max_size=30),
    ),
    st.one_of(st.none(), st.text(max_size=20)),
)
def test_any_locale_or_flag_gives_a_supported_language(environ, flag):
    assert from_environment(environ, flag) in LANGUAGES
