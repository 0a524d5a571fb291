"""What `shaobing config check` sees past the file itself.

The config model checks one file's shape and its cross-section rules; a post
also fails when what the file points at is wrong: a client certificate that
does not match its key or has expired, a model that is not there, labels the
model does not know (`persn`, `汽车`). Each finding is a ``Problem`` naming
the setting, with what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shaobing.agent.config import Config, Problem
from shaobing.agent.security_policy import key_problems
from shaobing.agent.tls import client_cert_findings


def _public(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def tls_problems(config: Config) -> list[Problem]:
    tls = config.mqtt.tls
    if tls is None:
        return []
    found = [Problem("mqtt.tls.cert", text) for text in client_cert_findings(tls)]
    if tls.cert and tls.key:
        try:
            cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
            key = serialization.load_pem_private_key(tls.key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            found.append(Problem("mqtt.tls.key", f"{tls.key}: not a readable PEM key ({exc})"))
        else:
            if _public(cert.public_key()) != _public(key.public_key()):
                found.append(
                    Problem(
                        "mqtt.tls.key",
                        f"{tls.key} is not the key of the certificate {tls.cert}: the broker "
                        "would refuse the connection; install the key the CSR was made with",
                    )
                )
    return found


def _unknown(label: str, known: list[str]) -> str:
    close = difflib.get_close_matches(label, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if not label.isascii():
        hint = f"; labels are the model's English names ({', '.join(known[:4])}, ...)"
    return f"label {label!r} is not one the model knows{hint}"


def model_problems(config: Config) -> list[Problem]:
    if not any(c.enabled for c in config.cameras):
        return []
    from shaobing.agent.detection.detector import model_labels, resolve_model
    from shaobing.agent.detection.runtime import ModelError

    det = config.detector
    try:
        path, manifest = resolve_model(det.model, det.model_dir)
        labels = model_labels(path, manifest, det.labels)
    except ModelError as exc:
        return [Problem("detector.model", str(exc))]
    if not labels:
        return []
    known = [label for label in labels if label and label != "???"]
    found = []
    for i, cam in enumerate(config.cameras):
        for j, zone in enumerate(cam.zones):
            for label in zone.labels or []:
                if label not in known:
                    where = f"cameras[{i}].zones[{j}].labels"
                    found.append(Problem(where, _unknown(label, known)))
        for label in cam.filters:
            if label not in known:
                found.append(Problem(f"cameras[{i}].filters.{label}", _unknown(label, known)))
    verify = config.linkage.verify
    # The default list names vehicles too; with a people-only model they never match,
    # which is harmless: only labels an installer wrote are held against the model.
    written = verify.labels if "labels" in verify.model_fields_set else []
    for label in written:
        if label not in known:
            found.append(Problem("linkage.verify.labels", _unknown(label, known)))
    return found


def deep_problems(config: Config) -> list[Problem]:
    keys = [Problem(path, text) for path, text in key_problems(config)]
    return [*tls_problems(config), *keys, *model_problems(config)]


def summary(config: Config, path: Path, _: Callable[[str], str] = str) -> str:
    """The one line ``config check`` prints for a good file, in the installer's language."""
    serial = len(config.serial.modbus) + len(config.serial.contact_id)
    cameras = sum(c.enabled for c in config.cameras)
    return _(
        "{path}: ok (device {device}, village {code} {village}, {zones} zone(s), "
        "{inputs} input(s), {outputs} output(s), {cameras} camera(s), {serial} serial device(s))"
    ).format(
        path=path,
        device=config.device.id,
        code=config.site.village_code,
        village=config.site.village_name,
        zones=len(config.zones),
        inputs=len(config.inputs),
        outputs=len(config.outputs),
        cameras=cameras,
        serial=serial,
    )
