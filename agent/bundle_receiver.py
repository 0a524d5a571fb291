"""A bundle arriving over MQTT in chunks, resumable across reconnects and restarts.

The signed ``model_update`` command announces it (update id, size, sha256,
chunk size, the signing key id); the county then publishes chunk ``n`` (bytes
``n*chunk_size`` onwards) on ``{base}/bundle/{update_id}/{n}``. Chunks are
written where they belong in a preallocated staging file and fsynced before
the bitmap of received chunks is replaced (core/atomic.py), so a power cut
or SIGKILL loses at most the chunk in flight. After a reconnect or restart
the county announces the same update again (a new command id): the answer,
and the ``status.update`` ``receiving`` event, list the chunks still missing.

One transfer at a time: a new update id replaces the staged one. paho's
thread only queues chunks (bounded; a dropped chunk is simply missing); the
``updates`` thread writes them and, once whole and matching the announced
sha256, hands the file to ``ModelUpdates.install`` (verify, check, switch).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from shaobing.agent.model_updates import ModelUpdates, UpdateRefused
from shaobing.agent.updates_config import UpdatesConfig
from shaobing.core.atomic import atomic_write, read_json
from shaobing.core.worker import ThreadWorker

log = logging.getLogger("shaobing.updates")

FETCH = ("", -1, b"")  # queue item: fetch the transfer's url
FETCH_TIMEOUT_S = 30.0
MAX_RANGES = 32  # missing chunks are reported as at most this many [first, last] ranges
PROGRESS_STEPS = 10  # receiving reports per transfer


class OfferRefused(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def ranges(missing: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for n in missing:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out[:MAX_RANGES]


class Transfer:
    """The staged update: offer.json, bundle.part (preallocated), have.bin (one byte a chunk)."""

    def __init__(self, directory: Path, offer: dict[str, Any]):
        self.dir = directory
        self.offer = offer
        self.id: str = offer["update_id"]
        self.size: int = offer["size"]
        self.chunk: int = offer["chunk_size"]
        self.count = -(-self.size // self.chunk)
        self.part = directory / "bundle.part"
        self._have_path = directory / "have.bin"
        raw = self._have_path.read_bytes() if self._have_path.exists() else b""
        self.have = bytearray(raw if len(raw) == self.count else bytes(self.count))
        self.reported = sum(self.have) * PROGRESS_STEPS // self.count

    @classmethod
    def create(cls, directory: Path, offer: dict[str, Any]) -> Transfer:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "bundle.part", "wb") as fh:
            fh.truncate(offer["size"])
        atomic_write(directory / "offer.json", json.dumps(offer).encode())
        return cls(directory, offer)

    @property
    def received(self) -> int:
        return sum(self.have)

    @property
    def bytes(self) -> int:
        last = self.size - (self.count - 1) * self.chunk
        return (self.received - self.have[-1]) * self.chunk + self.have[-1] * last

    def missing(self) -> list[int]:
        return [n for n, got in enumerate(self.have) if not got]

    def expected_len(self, n: int) -> int:
        return self.chunk if n < self.count - 1 else self.size - n * self.chunk

    def write(self, n: int, payload: bytes) -> bool:
        """Store chunk ``n``; False when it is a duplicate."""
        if self.have[n]:
            return False
        fd = os.open(self.part, os.O_WRONLY)
        try:
            os.pwrite(fd, payload, n * self.chunk)
            os.fsync(fd)  # data first, then the bitmap that says it is there
        finally:
            os.close(fd)
        self.have[n] = 1
        atomic_write(self._have_path, bytes(self.have))
        return True

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.part.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def status(self) -> dict[str, Any]:
        return {
            "update_id": self.id,
            "bytes": self.bytes,
            "size": self.size,
            "chunks": self.count,
            "received": self.received,
            "missing": ranges(self.missing()),
        }


class BundleReceiver:
    def __init__(self, root: Path, updates: ModelUpdates, base_topic: str):
        self.root = root
        self.updates = updates
        self.prefix = f"{base_topic}/bundle/"
        self.topic_filter = f"{self.prefix}+/+"
        self._queue: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue(maxsize=64)
        self._lock = threading.Lock()
        self.dropped = 0
        self.transfer: Transfer | None = self._resume()
        self._stop = threading.Event()
        self.worker = ThreadWorker("updates", self._run, self._stop, wake=self._wake)

    @property
    def cfg(self) -> UpdatesConfig:
        return self.updates.cfg  # `updates` is a live config section

    def _resume(self) -> Transfer | None:
        for directory in sorted(self.root.glob("*/")) if self.root.is_dir() else []:
            offer, _ = read_json(directory / "offer.json")
            if isinstance(offer, dict) and (directory / "bundle.part").exists():
                transfer = Transfer(directory, offer)
                self.updates.report("receiving", **{**transfer.status(), "resumed": True})
                return transfer
            shutil.rmtree(directory, ignore_errors=True)
        return None

    # ---- control thread: the model_update command ---------------------------------
    def offer(self, offer: dict[str, Any]) -> dict[str, Any]:
        if offer["size"] > self.cfg.max_bundle_bytes:
            raise OfferRefused(
                "too_large", f"{offer['size']} bytes; this box takes {self.cfg.max_bundle_bytes}"
            )
        if offer["chunk_size"] > self.cfg.max_chunk_bytes:
            raise OfferRefused(
                "bad_args",
                f"chunk_size {offer['chunk_size']} over this box's {self.cfg.max_chunk_bytes}",
            )
        keys = {k for k in self.updates.trusted_kids()}
        if offer.get("kid") is not None and offer["kid"] not in keys:
            raise OfferRefused("unknown_key", f"bundle key {offer['kid']} is not trusted here")
        with self._lock:
            current = self.transfer
            same = current is not None and all(
                current.offer[k] == offer[k] for k in ("update_id", "size", "sha256", "chunk_size")
            )
            if not same:
                if current is not None:
                    shutil.rmtree(current.dir, ignore_errors=True)
                self.transfer = current = Transfer.create(self.root / offer["update_id"], offer)
            assert current is not None
            status = {**current.status(), "topic": f"{self.prefix}{current.id}/{{n}}"}
        self.updates.report("receiving", **current.status())
        if not current.missing():
            self._queue.put(None)  # complete already (a restart before the check): finish
        elif offer.get("url"):
            self._queue.put(FETCH)
        return status

    # ---- paho's thread ---------------------------------------------------------
    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        tail = msg.topic[len(self.prefix) :].split("/")
        if len(tail) != 2 or not tail[1].isdigit():
            return
        try:
            self._queue.put_nowait((tail[0], int(tail[1]), bytes(msg.payload)))
        except queue.Full:
            self.dropped += 1  # it stays missing; the county sends it again

    # ---- updates thread --------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if self._stop.is_set():
                return
            with self._lock:
                transfer = self.transfer
            if transfer is None:
                continue
            if item == FETCH:
                self._fetch(transfer)
            elif item is not None:
                with self._lock:  # an offer may replace the transfer meanwhile
                    if self.transfer is transfer:
                        self._chunk(transfer, *item)
            if not transfer.missing() and self.transfer is transfer:
                self._finish(transfer)

    def _chunk(self, transfer: Transfer, update_id: str, n: int, payload: bytes) -> None:
        if update_id != transfer.id or not 0 <= n < transfer.count:
            return
        if len(payload) != transfer.expected_len(n):
            log.warning(
                "bundle chunk of the wrong size ignored",
                extra={"fields": {"update_id": update_id, "n": n, "bytes": len(payload)}},
            )
            return
        if transfer.write(n, payload):
            step = transfer.received * PROGRESS_STEPS // transfer.count
            if step > transfer.reported and transfer.missing():
                transfer.reported = step
                self.updates.report("receiving", **transfer.status())

    def _fetch(self, transfer: Transfer) -> None:
        """Download the missing part from the command's URL, chunk by chunk, size-bounded."""
        first = transfer.missing()[0]
        request = urllib.request.Request(transfer.offer["url"])
        if first:
            request.add_header("Range", f"bytes={first * transfer.chunk}-")
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
                n = first if response.status == 206 else 0  # a server may ignore Range
                while n < transfer.count and not self._stop.is_set():
                    block = response.read(transfer.expected_len(n))
                    if len(block) != transfer.expected_len(n):
                        raise OSError(f"the download ended at chunk {n} of {transfer.count}")
                    self._chunk(transfer, transfer.id, n, block)
                    n += 1
                if response.read(1):
                    raise OSError(f"the download is longer than the announced {transfer.size}")
        except (OSError, ValueError) as exc:  # urllib's errors are OSErrors
            # What arrived stays; the county announces again to resume (with Range).
            self.updates.report(
                "receiving", **transfer.status(), message=f"download failed: {exc}"[:300]
            )

    def _finish(self, transfer: Transfer) -> None:
        with self._lock:
            self.transfer = None
        try:
            digest = transfer.sha256()
            if digest != transfer.offer["sha256"]:
                self.updates.report(
                    "refused",
                    transfer.id,
                    bytes=transfer.size,
                    verdict="bad_sha256",
                    message=f"bundle sha256 {digest}, announced {transfer.offer['sha256']}",
                )
                return
            with contextlib.suppress(UpdateRefused):
                self.updates.install(transfer.part, transfer.id)
        finally:
            shutil.rmtree(transfer.dir, ignore_errors=True)

    def start(self) -> None:
        if self.transfer is not None and not self.transfer.missing():
            self._queue.put(None)
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def alive(self) -> bool:
        return self.worker.alive()
