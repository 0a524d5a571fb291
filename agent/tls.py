"""TLS for the county broker: one SSLContext built from ``mqtt.tls``, and plain
words for the OpenSSL errors an installer or an operator will meet.

The context is built here rather than by paho's ``tls_set`` so that an unusable
certificate or key does not crash the agent at start-up: the uplink keeps the
error, logs it on every connection attempt and the outbox keeps buffering.
"""

from __future__ import annotations

import datetime as dt
import ssl

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from shaobing.agent.config import TlsConfig
from shaobing.core.signing import KeyFileError, check_owner_only

NOT_TLS = "the broker port does not speak TLS"
# Substrings of OpenSSL's messages (client side), most specific first. The
# server's verdict on our certificate arrives as a TLS alert, which OpenSSL
# names "... alert <reason>".
_EXPLANATIONS: tuple[tuple[str, str], ...] = (
    ("certificate expired", "the broker refused our client certificate: it has expired"),
    (
        "unknown ca",
        "the broker refused our client certificate: it is not signed by a CA the broker trusts",
    ),
    ("certificate required", "the broker requires a client certificate and none was sent"),
    ("bad certificate", "the broker refused our client certificate"),
    ("certificate unknown", "the broker refused our client certificate"),
    ("certificate revoked", "the broker refused our client certificate: it has been revoked"),
    (
        "certificate has expired",
        "the broker's certificate has expired (or this box's clock is wrong)",
    ),
    (
        "certificate is not yet valid",
        "the broker's certificate is not valid yet (is this box's clock wrong?)",
    ),
    (
        "hostname mismatch",
        "the broker's certificate does not name the host in mqtt.host",
    ),
    (
        "ip address mismatch",
        "the broker's certificate does not name the address in mqtt.host",
    ),
    (
        "certificate verify failed",
        "cannot verify the broker's certificate with the CA in mqtt.tls.ca (wrong CA file?)",
    ),
    ("wrong version number", f"{NOT_TLS} (plain MQTT port?)"),
    ("key values mismatch", "the client certificate does not match the private key"),
    ("eof occurred in violation of protocol", "the broker closed the connection during TLS"),
    ("connection reset", "the broker closed the connection during TLS"),
)
# With TLS 1.3 the broker's alert can be lost to a TCP reset; then only these
# remain, and what we know locally about our own certificate says more.
_AMBIGUOUS = ("closed the connection during TLS",)


# A county CA may take weeks to issue a certificate; warn well before expiry.
EXPIRY_WARNING_DAYS = 30


class TlsSetupError(Exception):
    """The TLS files in the config cannot be used; the message names the file."""


def explain(error: BaseException | str) -> str:
    """An installer-readable reason for a TLS/socket error, with OpenSSL's text kept."""
    text = str(error)
    lower = text.lower().replace("_", " ")
    for needle, meaning in _EXPLANATIONS:
        if needle in lower:
            return f"{meaning} ({text})"
    return text


def client_cert_findings(tls: TlsConfig, now: dt.datetime | None = None) -> list[str]:
    """What is wrong with our own client certificate, as far as this box can tell."""
    if not tls.cert:
        return []
    now = now or dt.datetime.now(dt.UTC)
    try:
        cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"mqtt.tls.cert: {tls.cert} is not a PEM certificate ({exc})"]
    found = []
    if cert.not_valid_after_utc < now:
        found.append(
            f"client certificate {tls.cert} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    elif cert.not_valid_after_utc - now < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        found.append(
            f"client certificate {tls.cert} expires on "
            f"{cert.not_valid_after_utc:%Y-%m-%d} UTC: ask the county for a new one now"
        )
    if cert.not_valid_before_utc > now:
        found.append(
            f"client certificate {tls.cert} is valid only from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (is the clock right?)"
        )
    try:
        ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        found.append(
            f"client certificate {tls.cert} is not signed by the CA in {tls.ca}; "
            "a broker trusting only that CA refuses it"
        )
    return found


def explain_refusal(
    error: BaseException | str, tls: TlsConfig | None, *, in_handshake: bool = False
) -> str:
    """``explain`` plus local findings when the broker's own reason was lost.

    ``in_handshake``: the error came from our side of the handshake, before
    the broker could judge our certificate (TLS 1.3 judges it afterwards), so
    a dropped connection there means the port does not speak TLS.
    """
    reason = explain(error)
    ambiguous = any(marker in reason for marker in _AMBIGUOUS)
    if tls and ambiguous and in_handshake:
        return f"{NOT_TLS} (plain MQTT port? TLS is usually 8883) ({error})"
    if tls and ambiguous:
        # "expires soon" is no reason for a refusal; only real faults explain one.
        findings = [f for f in client_cert_findings(tls) if "expires on" not in f]
        if findings:
            return "; ".join(findings) + f" ({reason})"
    return reason


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """Verify the broker against ``tls.ca`` and present ``tls.cert``/``tls.key`` if given."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    except FileNotFoundError as exc:
        raise TlsSetupError(f"mqtt.tls.ca: file {tls.ca} does not exist") from exc
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(f"mqtt.tls.ca: {tls.ca} is not a PEM CA certificate ({exc})") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert and tls.key:
        for field, path in (("cert", tls.cert), ("key", tls.key)):
            if not path.exists():
                raise TlsSetupError(f"mqtt.tls.{field}: file {path} does not exist")
        try:
            check_owner_only(tls.key, "mqtt.tls.key")
        except KeyFileError as exc:
            raise TlsSetupError(str(exc)) from exc
        try:
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError(
                f"mqtt.tls.cert/key: {tls.cert} and {tls.key} cannot be used together: "
                f"{explain(exc)}"
            ) from exc
    return ctx
