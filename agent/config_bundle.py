"""Signed settings bundles: a county's config patch, signed like a model bundle.

A settings bundle is ``{"header": {...}, "kid", "sig"}`` with the header
``{"format": 1, "target": "config", "version", "created", "patch"}``: an RFC
7386 merge patch, signed with the county's Ed25519 key (core/signing.py) over
the canonical JSON of the header. The ``config_update`` command carries it;
once the signature checks and its version is newer than the last one taken,
the patch goes through ``ConfigEditor.change`` (agent/config_commands.py), the
one config-write path: protected settings (broker, keys, identity) are refused
there exactly as for ``set_config``, and ``set_config rollback`` goes back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from shaobing.core.atomic import atomic_write, read_json
from shaobing.core.model import Strict
from shaobing.core.signing import Keyring, PrivateKey, canonical
from shaobing.models.bundle import BundleError, SignedHeader


class ConfigBundleHeader(Strict):
    format: Literal[1] = Field(description="bundle format version")
    target: Literal["config"] = Field(description="what the bundle changes")
    version: int = Field(ge=1, description="county's settings version; each must be newer")
    created: str = Field(description="UTC time the bundle was signed, ISO 8601")
    patch: dict[str, Any] = Field(description="RFC 7386 merge patch on the config")


def sign(patch: dict[str, Any], key: PrivateKey, version: int) -> dict[str, Any]:
    header = ConfigBundleHeader(
        format=1,
        target="config",
        version=version,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        patch=patch,
    ).model_dump(mode="json")
    return {"header": header, "kid": key.kid, "sig": key.sign(canonical(header))}


def verify(doc: dict[str, Any], keyring: Keyring) -> ConfigBundleHeader:
    """The checked header; ``BundleError`` with the same codes as a model bundle."""
    try:
        signed = SignedHeader.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "<top>"
        raise BundleError("bad_bundle", f"settings bundle {where}: {err['msg']}") from None
    if signed.kid not in keyring.kids:
        raise BundleError("unknown_key", f"settings bundle signed by untrusted key {signed.kid}")
    if not keyring.verify(canonical(signed.header), signed.kid, signed.sig):
        raise BundleError("bad_signature", "settings bundle: the signature does not match")
    try:
        return ConfigBundleHeader.model_validate(signed.header)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BundleError("bad_bundle", f"settings bundle header {where}: {err['msg']}") from None


class AppliedVersions:
    """The newest settings bundle version taken, on disk: an older one is a replay.

    ``in_service`` is the bundle whose settings the box runs (``status.health``
    ``versions.config_bundle``): a rolled-back bundle stays taken (a replay of
    it is still refused) but is no longer in service."""

    def __init__(self, path: Path):
        self.path = path

    def _read(self) -> dict[str, Any]:
        data, _ = read_json(self.path)
        return data if isinstance(data, dict) else {}

    def last(self) -> int:
        return int(self._read().get("version", 0))

    def in_service(self) -> int | None:
        data = self._read()
        return data.get("in_service", data.get("version"))

    def record(self, version: int) -> None:
        doc = {"version": version, "in_service": version, "previous": self.in_service()}
        atomic_write(self.path, json.dumps(doc).encode(), mode=0o644)

    def rolled_back(self) -> None:
        data = self._read()
        if data:
            doc = {**data, "in_service": data.get("previous"), "previous": None}
            atomic_write(self.path, json.dumps(doc).encode(), mode=0o644)
