"""Signed model bundles: one file a county builds once and sends to many boxes.

A bundle is an uncompressed tar (a model compresses poorly and tar needs no
index at the end, so a truncated file is told apart from a damaged one):

- ``bundle.json``: ``{"header": {...}, "kid": ..., "sig": ...}``. The header
  holds the manifest (the ``models/*.yaml`` format, labels inlined so the
  signature covers them), the model's size and sha256, the bundle version,
  the created time and the target (``model``). ``sig`` is the county's
  Ed25519 signature (core/signing.py, the command channel's machinery) over
  the canonical JSON of the header.
- ``model.tflite``: the model, whose size and sha256 the header names.

``build`` writes one; ``open_bundle`` checks one and extracts its model.
Every refusal is a ``BundleError`` with a code (docs/mqtt.md#model-updates)
and a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from shaobing.core.model import Strict
from shaobing.core.signing import KEY_ID_PATTERN, SIGNATURE_PATTERN, Keyring, PrivateKey, canonical

from .manifest import ModelManifest, load_manifest_text

HEADER_MEMBER = "bundle.json"
MODEL_MEMBER = "model.tflite"
MAX_HEADER_BYTES = 256 * 1024
FORMAT = 1


class BundleError(ValueError):
    """A refused bundle; ``code`` is what ``status.update`` reports as the verdict."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class BundleHeader(Strict):
    format: Literal[1] = Field(description="bundle format version")
    target: Literal["model"] = Field(description="what the bundle replaces")
    version: int = Field(ge=1, description="county's bundle version, increasing per model line")
    created: str = Field(description="UTC time the bundle was signed, ISO 8601")
    size: int = Field(gt=0, description="bytes of model.tflite")
    manifest: ModelManifest = Field(description="models/*.yaml format; sha256 is the model's")


class SignedHeader(Strict):
    header: dict[str, Any] = Field(description="the signed document (BundleHeader)")
    kid: str = Field(pattern=KEY_ID_PATTERN, description="the county key that signed it")
    sig: str = Field(pattern=SIGNATURE_PATTERN, description="Ed25519, unpadded base64url")


@dataclass(frozen=True)
class VerifiedBundle:
    header: BundleHeader
    kid: str
    signed: dict[str, Any]  # bundle.json as read, kept beside the installed model

    @property
    def manifest(self) -> ModelManifest:
        return self.header.manifest


def _labels_inline(manifest: ModelManifest, manifest_path: Path, labels: Path | None) -> dict:
    data = manifest.model_dump(mode="json", exclude_none=True)
    source = labels or (
        manifest_path.parent / manifest.labels_file if manifest.labels_file else None
    )
    if source is not None:
        lines = source.read_text(encoding="utf-8").splitlines()
        data["labels"] = [line.strip() for line in lines]
        data.pop("labels_file", None)
    return data


def build(
    model: Path,
    manifest_path: Path,
    key: PrivateKey,
    out: Path,
    *,
    version: int,
    labels: Path | None = None,
) -> VerifiedBundle:
    """Sign ``model`` with its manifest into one bundle file at ``out``."""
    manifest = load_manifest_text(manifest_path.read_text(encoding="utf-8"), str(manifest_path))
    blob = model.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.sha256:
        raise BundleError(
            "bad_sha256",
            f"model {model} has sha256 {digest}, but manifest {manifest_path} says "
            f"{manifest.sha256}",
        )
    data = _labels_inline(manifest, manifest_path, labels)
    data["file"] = MODEL_MEMBER
    header = BundleHeader(
        format=FORMAT,
        target="model",
        version=version,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        size=len(blob),
        manifest=ModelManifest.model_validate(data),
    )
    doc = header.model_dump(mode="json", exclude_none=True)
    signed = {"header": doc, "kid": key.kid, "sig": key.sign(canonical(doc))}
    raw = json.dumps(signed, indent=1, ensure_ascii=False).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, payload in ((HEADER_MEMBER, raw), (MODEL_MEMBER, blob)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(payload), 0o644, int(time.time())
            tf.addfile(info, io.BytesIO(payload))
    os.replace(part, out)
    return VerifiedBundle(header, key.kid, signed)


def check_signed(raw: bytes, keyring: Keyring, where: str) -> VerifiedBundle:
    """The header's signature and form; the model is checked by ``open_bundle``."""
    try:
        signed = SignedHeader.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise BundleError(
            "bad_bundle", f"{where}: {HEADER_MEMBER} is not a signed header ({first})"
        ) from None
    if signed.kid not in keyring.kids:
        known = ", ".join(keyring.kids) or "none configured"
        raise BundleError(
            "unknown_key",
            f"{where}: signed by key {signed.kid}, not one this box trusts ({known})",
        )
    if not keyring.verify(canonical(signed.header), signed.kid, signed.sig):
        raise BundleError("bad_signature", f"{where}: the signature does not match its header")
    try:
        header = BundleHeader.model_validate(signed.header)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        raise BundleError("bad_bundle", f"{where}: header {path}: {err['msg']}") from None
    return VerifiedBundle(header, signed.kid, signed.model_dump(mode="json"))


def open_bundle(path: Path, keyring: Keyring, model_out: Path) -> VerifiedBundle:
    """Check ``path`` (signature, size, sha256) and write its model to ``model_out``.

    Nothing is left at ``model_out`` unless every check passed.
    """
    where = f"bundle {path}"
    part = model_out.with_name(model_out.name + ".part")
    try:
        with tarfile.open(path, "r:") as tf:
            members = {m.name: m for m in tf.getmembers()}
            head = members.get(HEADER_MEMBER)
            body = members.get(MODEL_MEMBER)
            if head is None or body is None or not head.isfile() or not body.isfile():
                raise BundleError(
                    "bad_bundle",
                    f"{where}: expected members {HEADER_MEMBER} and {MODEL_MEMBER}, "
                    f"found {sorted(members) or 'none'}",
                )
            if head.size > MAX_HEADER_BYTES:
                raise BundleError("bad_bundle", f"{where}: {HEADER_MEMBER} over {MAX_HEADER_BYTES}")
            fh = tf.extractfile(head)
            assert fh is not None
            bundle = check_signed(fh.read(), keyring, where)
            if body.size != bundle.header.size:
                raise BundleError(
                    "truncated",
                    f"{where}: {MODEL_MEMBER} has {body.size} bytes, header says "
                    f"{bundle.header.size}",
                )
            digest = hashlib.sha256()
            got = 0
            src = tf.extractfile(body)
            assert src is not None
            model_out.parent.mkdir(parents=True, exist_ok=True)
            with part.open("wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    dst.write(chunk)
                    got += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
    except (tarfile.ReadError, EOFError, OSError) as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, FileNotFoundError):
            raise BundleError("bad_bundle", f"{where}: no such file") from None
        raise BundleError("truncated", f"{where}: truncated or not a bundle ({exc})") from None
    except BundleError:
        part.unlink(missing_ok=True)
        raise
    if got != bundle.header.size:
        part.unlink(missing_ok=True)
        raise BundleError("truncated", f"{where}: model ends after {got} of {bundle.header.size}")
    if digest.hexdigest() != bundle.manifest.sha256:
        part.unlink(missing_ok=True)
        raise BundleError(
            "bad_sha256",
            f"{where}: model sha256 {digest.hexdigest()}, header says {bundle.manifest.sha256}",
        )
    os.replace(part, model_out)
    return bundle
