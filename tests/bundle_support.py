"""Signed model bundles for the update tests: the shared COCO model as payload, real keys."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import yaml
from detection_support import V1, need_shared

from shaobing.core.signing import PrivateKey, write_keypair
from shaobing.models.bundle import build

REPO = Path(__file__).resolve().parent.parent
COCO_MANIFEST = REPO / "models" / "coco-ssd-mobilenet-v1-quant.yaml"
COCO_LABELS = V1.parent / "labels.txt"


def county_key(directory: Path, name: str = "county") -> tuple[PrivateKey, Path]:
    """A county key pair; returns the private key and the public PEM path a box trusts."""
    public = directory / f"{name}.pub"
    return write_keypair(directory / f"{name}.key", public), public


def post_trusting_county(directory: Path) -> tuple[PrivateKey, Path]:
    """The linkage test post whose `control.command_keys` trusts a new county key, written
    as an owner-only config file; returns the county's private key and the file."""
    from linkage_helpers import linkage_config

    key, public = county_key(directory)
    config = linkage_config(directory, 1)
    config = config.model_copy(
        update={"control": config.control.model_copy(update={"command_keys": [public]})}
    )
    path = directory / "shaobing.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    path.chmod(0o600)
    return key, path


def coco_bundle(directory: Path, key: PrivateKey, version: int = 1) -> Path:
    need_shared()
    out = directory / f"coco-v{version}.bundle"
    build(V1, COCO_MANIFEST, key, out, version=version, labels=COCO_LABELS)
    return out


def bundle_of(directory: Path, model: bytes, key: PrivateKey, version: int = 1) -> Path:
    """A correctly signed bundle of arbitrary model bytes (COCO manifest, their sha256)."""
    import hashlib

    data = yaml.safe_load(COCO_MANIFEST.read_text())
    data.update(name="county-custom", sha256=hashlib.sha256(model).hexdigest())
    manifest = directory / "custom.yaml"
    manifest.write_text(yaml.safe_dump(data))
    blob = directory / "custom.tflite"
    blob.write_bytes(model)
    out = directory / f"custom-v{version}.bundle"
    build(blob, manifest, key, out, version=version, labels=COCO_LABELS)
    return out


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]


def rewrite(path: Path, out: Path, **replace: bytes) -> Path:
    """The same bundle with some members' bytes replaced (signature untouched)."""
    parts = {**members(path), **replace}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, payload in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return out


def with_header(path: Path, out: Path, **header) -> Path:
    doc = json.loads(members(path)["bundle.json"])
    doc["header"].update(header)
    return rewrite(path, out, **{"bundle.json": json.dumps(doc).encode()})


CHUNK = 256 * 1024


def announce(platform, bundle: Path, update_id: str, key: PrivateKey, chunk: int = CHUNK) -> dict:
    """The county's signed model_update command; returns the box's answer."""
    import hashlib

    raw = bundle.read_bytes()
    args = {
        "update_id": update_id,
        "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "chunk_size": chunk,
        "kid": key.kid,
    }
    return platform.command("model_update", args)


def send_chunks(platform, bundle: Path, update_id: str, numbers, chunk: int = CHUNK) -> None:
    raw = bundle.read_bytes()
    for n in numbers:
        platform.client.publish(
            f"{platform.base}/bundle/{update_id}/{n}", raw[n * chunk : (n + 1) * chunk], qos=1
        )


def missing(answer: dict) -> list[int]:
    assert answer["ok"], answer
    return [n for a, b in answer["result"]["missing"] for n in range(a, b + 1)]
