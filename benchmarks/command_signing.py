"""What signing costs a box: the command checks up to and including the signature.

Run: .venv/bin/python benchmarks/command_signing.py [--n 3000]
Per command: parse the JSON, validate the envelope, check the signature
(agent/command_signature.py), for the three policies a box can have. The
county's signing cost is shown too. Medians of single calls (µs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from shaobing.agent.command_envelope import Envelope, parse_body, sign, validated
from shaobing.agent.command_signature import CommandVerifier, signed_command
from shaobing.core.signing import Keyring, generate

DEVICE = "sb-130521-dongguan-01"
ARGS = {"zones": ["crossing"]}


def median_us(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=3000)
    n = p.parse_args().n
    county = generate()
    hmac_key = b"per-box-shared-secret-0123456789"
    ed25519 = signed_command(county, DEVICE, "disarm", ARGS)
    plain = {k: v for k, v in ed25519.items() if k not in ("kid", "sig")}
    hmac_signed = {**plain, "sig": sign(plain, "disarm", DEVICE, hmac_key)}
    cases = {
        "unsigned (insecure_unsigned)": (
            CommandVerifier(Keyring([]), None, insecure_unsigned=True),
            plain,
        ),
        "per-box HMAC-SHA256": (CommandVerifier(Keyring([]), hmac_key, False), hmac_signed),
        "county Ed25519": (CommandVerifier(Keyring([county.public]), None, False), ed25519),
    }
    rows = {}
    for name, (verifier, body) in cases.items():
        payload = json.dumps(body).encode()

        def check(verifier=verifier, payload=payload) -> None:
            parsed = parse_body(payload)
            envelope = validated(Envelope, parsed, "bad_envelope", ())
            verifier.check(parsed, "disarm", DEVICE, envelope)

        rows[name] = median_us(check, n)
    base = rows["unsigned (insecure_unsigned)"]
    print(f"{'policy':<30} {'check p50 (µs)':>15} {'x unsigned':>11}")
    for name, us in rows.items():
        print(f"{name:<30} {us:>15.1f} {us / base:>11.2f}")
    sign_us = median_us(lambda: signed_command(county, DEVICE, "disarm", ARGS), n)
    print(f"county signs one command (signed_command): {sign_us:.1f} µs p50")


if __name__ == "__main__":
    main()
