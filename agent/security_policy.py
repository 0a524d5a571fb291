"""Secure by default (issue 12): what a config must say to be less than secure.

- Commands: a box with ``control`` enabled needs the county's command key(s)
  (``control.command_keys``) or a per-box HMAC key; accepting unsigned
  commands takes ``control.insecure_unsigned: true``.
- MQTT: plain TCP to a broker off this box takes ``mqtt.insecure_plaintext:
  true``; TLS on 8883 is what provisioning writes.

Whatever is insecure is named in ``status.health`` ``warnings`` and logged at
start (``insecure_settings``). Key files must be owner-only (core/signing.py
``check_owner_only``); a config file others can read is only warned about,
since it may hold nothing secret.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from shaobing.core.signing import KeyFileError, Keyring, check_owner_only

if TYPE_CHECKING:
    from shaobing.agent.config import Config, ControlConfig

log = logging.getLogger("shaobing.security")

NO_COMMAND_KEY = (
    "no command key: give the county's command public key(s) in control.command_keys "
    "(shaobing provision installs it), or a per-box HMAC key in control.key_file/key_env; "
    "to accept unsigned commands say control.insecure_unsigned: true"
)
PLAINTEXT = (
    "plain TCP to {host}: give mqtt.tls (CA, client certificate and key; port 8883), "
    "or say mqtt.insecure_plaintext: true"
)


def _on_this_box(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cross_check(config: Config) -> list[tuple[tuple, str]]:
    found: list[tuple[tuple, str]] = []
    control = config.control
    if control.enabled and not control.has_keys() and not control.insecure_unsigned:
        found.append((("control", "command_keys"), NO_COMMAND_KEY))
    mqtt = config.mqtt
    if mqtt.tls is None and not mqtt.insecure_plaintext:
        remote = [e.host for e in mqtt.endpoints() if not _on_this_box(e.host)]
        if remote:
            found.append((("mqtt", "tls"), PLAINTEXT.format(host=remote[0])))
    return found


def insecure_settings(config: Config) -> list[str]:
    """The ``status.health`` warnings for security turned down."""
    warnings = []
    if config.mqtt.tls is None:
        warnings.append("mqtt_plaintext")
    if config.control.enabled and config.control.insecure_unsigned:
        warnings.append("commands_unsigned")
    return warnings


def load_command_keys(control: ControlConfig) -> Keyring:
    """The county public keys; raises ``KeyFileError`` naming the file.

    A public key may be read by all, but one that others can write could be
    swapped for a key of theirs.
    """
    try:
        keyring = Keyring.load(control.command_keys)
    except KeyFileError as exc:
        raise KeyFileError(f"control.command_keys: {exc}") from None
    for path in control.command_keys:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KeyFileError(
                f"control.command_keys: {path} is writable by others (mode {mode:04o}), who "
                f"could swap the county's key; run: chmod 644 {path}"
            )
    return keyring


def load_hmac_key(control: ControlConfig) -> bytes | None:
    """The per-box shared key; a key file others can read is refused (``KeyFileError``)."""
    if control.key_env and os.environ.get(control.key_env):
        return os.environ[control.key_env].strip().encode()
    if not control.key_file:
        return None
    path = control.key_file
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise KeyFileError(f"control.key_file {path}: cannot read it ({exc.strerror})") from None
    check_owner_only(path, "control.key_file")
    return data or None


def key_problems(config: Config) -> list[tuple[str, str]]:
    """For `shaobing config check`: the key files as the agent will load them."""
    found: list[tuple[str, str]] = []
    tls = config.mqtt.tls
    if tls is not None and tls.key is not None and tls.key.exists():
        try:
            check_owner_only(tls.key, "mqtt.tls.key")
        except KeyFileError as exc:
            found.append(("mqtt.tls.key", str(exc).removeprefix("mqtt.tls.key ")))
    control = config.control
    if not control.enabled:
        return found
    for field, load in (
        ("control.command_keys", load_command_keys),
        ("control.key_file", load_hmac_key),
    ):
        try:
            load(control)
        except KeyFileError as exc:
            found.append((field, str(exc).removeprefix(f"{field}: ").removeprefix(f"{field} ")))
    return found


def warn_at_start(config: Config, config_path: Path | None) -> None:
    for warning in insecure_settings(config):
        log.warning("insecure setting in use", extra={"fields": {"warning": warning}})
    if config_path is None:
        return
    try:
        mode = stat.S_IMODE(os.stat(config_path).st_mode)
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the config file is readable by others; run: chmod 600 %s",
            config_path,
            extra={"fields": {"path": str(config_path), "mode": f"{mode:04o}"}},
        )
