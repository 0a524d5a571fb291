"""Plain words for a broker connection that fails before TLS or MQTT could say why:
the host name does not resolve (DNS), a plain-MQTT config meets a port that
expects TLS (or TLS a plain port), or the port answers but not in MQTT.

The library's own words (``[Errno -2] Name or service not known``, paho's
``Unspecified error`` / ``Protocol error``, a reset during what looks like a TLS
handshake) say nothing to an installer; these sentences say what is wrong and
what to do. TLS errors proper are agent/tls.py's. The uplink logs and reports
the English sentence (``status.health``: ``uplink.last_refusal``); the
self-test table and ``shaobing status`` show it in the installer's language
with ``translate``, which recognises the sentences below in that English text.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from shaobing.agent import tls as tls_words
from shaobing.agent.config import MqttConfig
from shaobing.core.i18n import N_, made_from, reword

DNS_FAILED = N_(
    "the broker host name {host} cannot be resolved (DNS): check the name, "
    "the 4G link/APN and /etc/resolv.conf"
)
PLAIN_TO_TLS = N_(
    "port {port} on {host} expects TLS (it closed our plain MQTT connection unanswered): "
    "set mqtt.tls (the county's CA) or use the broker's plain MQTT port"
)
REFUSED = N_(
    "nothing listens on port {port} at {host} (connection refused): check the port "
    "(TLS: usually 8883, plain: 1883) and that the county's broker is running"
)
UNREACHABLE = N_(
    "no network path to {host} (no route or network down): check the 4G link or the "
    "LAN cable (`ip route` must show a default route)"
)
TLS_TO_PLAIN = N_(
    "port {port} on {host} does not speak TLS (a plain MQTT port?): use the county's TLS "
    "port (usually 8883)"
)
NOT_MQTT = N_(
    "{host}:{port} answered, but not in MQTT: is this the broker's MQTT port? "
    "(TLS: usually 8883, plain: 1883)"
)
LOGIN_REFUSED = N_(
    "the broker refused this box's login ({reason}): ask the county to let device {device} "
    "in (its certificate, or mqtt.username and mqtt.password)"
)
SENTENCES = (DNS_FAILED, REFUSED, UNREACHABLE, PLAIN_TO_TLS, TLS_TO_PLAIN, NOT_MQTT, LOGIN_REFUSED)

# getaddrinfo's words for "no such name" and "no DNS answer" (glibc, musl, macOS).
_DNS_TEXT = (
    "name or service not known",
    "temporary failure in name resolution",
    "no address associated with hostname",
    "nodename nor servname provided",
    "name does not resolve",
    "try again",
)
# What paho or the socket says when a TLS listener drops a plain MQTT CONNECT.
_DROPPED_TEXT = (
    "unspecified error",
    "connection reset",
    "closed the connection during tls",
    "eof occurred",
    "connection lost",
)


def _is_dns(error: BaseException | str) -> bool:
    if isinstance(error, socket.gaierror):
        return True
    text = str(error).lower()
    return "errno -" in text and any(words in text for words in _DNS_TEXT)


def explain_failure(
    error: BaseException | str,
    config: MqttConfig,
    host: str,
    port: int,
    *,
    before_connack: bool = False,
    in_handshake: bool = False,
) -> str:
    """The installer's sentence for a connection attempt that failed.

    ``before_connack``: the connection was made, then dropped (or answered with
    non-MQTT bytes) before the broker accepted or refused it. ``in_handshake``:
    as for ``tls.explain_refusal``.
    """
    if _is_dns(error):
        return DNS_FAILED.format(host=host)
    text = str(error).lower()
    if isinstance(error, ConnectionRefusedError) or "connection refused" in text:
        return REFUSED.format(host=host, port=port)
    if any(words in text for words in ("no route to host", "network is unreachable")):
        return UNREACHABLE.format(host=host)
    if before_connack and "protocol error" in text:
        if config.tls is None:
            return PLAIN_TO_TLS.format(host=host, port=port)
        return NOT_MQTT.format(host=host, port=port)
    if before_connack and config.tls is None and any(w in text for w in _DROPPED_TEXT):
        return PLAIN_TO_TLS.format(host=host, port=port)
    said = tls_words.explain_refusal(error, config.tls, in_handshake=in_handshake)
    if config.tls is not None and said.startswith(tls_words.NOT_TLS):
        return TLS_TO_PLAIN.format(host=host, port=port)
    return said


# CONNACK reason codes that mean "not this client" rather than a broker fault.
_LOGIN_CODES = (
    "not authorized",
    "bad user name or password",
    "client identifier not valid",
    "identifier rejected",
    "banned",
)


def refused_login(reason: str, device: str) -> str:
    """The sentence for a CONNACK refusal (paho's reason code text ``reason``)."""
    if any(code in reason.lower() for code in _LOGIN_CODES):
        return LOGIN_REFUSED.format(reason=reason, device=device)
    return reason


def is_sentence(reason: str) -> bool:
    """Whether ``reason`` is one of this module's sentences (not a TLS or broker reason)."""
    return made_from(reason, SENTENCES) is not None


def translate(reason: str, translate: Callable[[str], str]) -> str:
    """``reason`` in the installer's language when it is one of the sentences above."""
    return reword(reason, SENTENCES, translate)
