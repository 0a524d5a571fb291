"""A simulated alarm host (报警主机) reporting in Contact ID over a serial line.

It behaves as a host's serial output does: send one message, wait for the
receiver's ACK (0x06), resend after a NAK (0x15) or when no ACK comes within
``ack_timeout_s``, and give up after ``attempts`` tries. Faults are sent with
``send_bytes``: bad checksums, half frames, random bytes. ``heartbeat`` sends
periodic test reports (602) until stopped, the usual supervision signal.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal

from shaobing.drivers.contact_id import ACK, NAK, checksum_digit, format_raw

from .line import Line, PtyLine, TcpLine


@dataclass
class HostStats:
    messages: int = 0
    transmissions: int = 0
    acked: int = 0
    naked: int = 0
    timeouts: int = 0
    gave_up: int = 0


def line_form(raw: str) -> str:
    """The documented spaced form of a 16-digit message."""
    return f"{raw[0:4]} {raw[4:6]} {raw[6:10]} {raw[10:12]} {raw[12:15]} {raw[15]}"


class SimulatedAlarmHost:
    def __init__(
        self,
        transport: Literal["pty", "socket"] = "pty",
        account: str = "1234",
        framing: Literal["raw", "line"] = "raw",
        terminator: bytes = b"\r",
        ack_timeout_s: float = 1.0,
        attempts: int = 4,
    ) -> None:
        self.line: Line = PtyLine() if transport == "pty" else TcpLine()
        self.url = self.line.url
        self.account = account
        self.framing = framing
        self.terminator = terminator
        self.ack_timeout_s = ack_timeout_s
        self.attempts = attempts
        self.stats = HostStats()
        self._lock = threading.Lock()  # one message on the wire at a time
        self._hb_stop = threading.Event()
        self._hb: threading.Thread | None = None
        self.drop_acks = 0  # pretend this many ACKs were lost on the line

    def encode(self, qualifier: str, code: int, group: int = 1, zone: int = 0) -> bytes:
        raw = format_raw(self.account, qualifier, code, group, zone)
        text = raw if self.framing == "raw" else line_form(raw)
        return text.encode("ascii") + self.terminator

    def report(self, code: int, qualifier: str = "1", group: int = 1, zone: int = 0) -> bool:
        """Send one event until acknowledged; True if it was."""
        return self.send_bytes(self.encode(qualifier, code, group, zone))

    def alarm(self, code: int, zone: int, group: int = 1) -> bool:
        return self.report(code, "1", group, zone)

    def restore(self, code: int, zone: int, group: int = 1) -> bool:
        return self.report(code, "3", group, zone)

    def send_bytes(self, frame: bytes, attempts: int | None = None) -> bool:
        """Transmit ``frame`` as a host would, with retries; True when ACKed."""
        with self._lock:
            self.stats.messages += 1
            for _ in range(attempts or self.attempts):
                self.stats.transmissions += 1
                self.line.write(frame)
                reply = self._await_reply()
                if reply == ACK and self.drop_acks > 0:
                    self.drop_acks -= 1
                    reply = b""
                if reply == ACK:
                    self.stats.acked += 1
                    return True
                if reply == NAK:
                    self.stats.naked += 1
                else:
                    self.stats.timeouts += 1
            self.stats.gave_up += 1
            return False

    def send_once(self, frame: bytes) -> bytes:
        """Transmit once and return the reply byte (b"" if none): for fault tests."""
        with self._lock:
            self.line.write(frame)
            return self._await_reply()

    def _await_reply(self) -> bytes:
        deadline = time.monotonic() + self.ack_timeout_s
        while (left := deadline - time.monotonic()) > 0:
            data = self.line.read(left)
            for b in data:
                if bytes([b]) in (ACK, NAK):
                    return bytes([b])
        return b""

    @staticmethod
    def bad_checksum(frame: bytes) -> bytes:
        """The same frame with a check digit that breaks the rule."""
        text = frame.rstrip(b"\r\n").decode("ascii")
        digits = text.replace(" ", "")
        good = checksum_digit(digits[:15])
        wrong = "1" if good != "1" else "2"
        return (text[:-1] + wrong).encode("ascii") + frame[len(text) :]

    def heartbeat(self, period_s: float) -> None:
        """Send 602 periodic test reports every ``period_s`` until ``stop_heartbeat``."""
        self._hb_stop.clear()

        def run() -> None:
            while not self._hb_stop.wait(period_s):
                self.report(602, "1", 0, 0)

        self._hb = threading.Thread(target=run, name="sim-host-heartbeat", daemon=True)
        self._hb.start()

    def stop_heartbeat(self) -> None:
        self._hb_stop.set()
        if self._hb is not None:
            self._hb.join(5)
            self._hb = None

    def close(self) -> None:
        self.stop_heartbeat()
        self.line.close()

    def __enter__(self) -> SimulatedAlarmHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
