"""Fetch source files by URL into a verified cache; a mirror folder may stand in for the network.

``SIDBENCH_CACHE`` (default ``~/.cache/sidbench``) holds downloads and processed
datasets. ``SIDBENCH_MIRROR=DIR`` maps ``https://HOST/PATH`` to ``DIR/HOST/PATH``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from bench.core.errors import DataError


@dataclass(frozen=True)
class SourceFile:
    url: str
    sha256: str
    size: int | None = None

    @property
    def filename(self) -> str:
        return Path(urlparse(self.url).path).name


def cache_dir() -> Path:
    return Path(os.environ.get("SIDBENCH_CACHE", Path.home() / ".cache" / "sidbench")).expanduser()


def mirror_path(url: str, mirror: str | os.PathLike) -> Path:
    """Where ``url`` lives inside a mirror folder laid out by URL."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DataError(f"expected an http(s) URL, found {url!r}")
    return Path(mirror) / parsed.netloc / parsed.path.lstrip("/")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, source: SourceFile, origin: str) -> None:
    actual = sha256_of(path)
    if actual != source.sha256:
        raise DataError(
            f"checksum mismatch for {source.filename} (from {origin}): expected sha256 "
            f"{source.sha256}, found {actual}. The file is corrupt or not the pinned version; "
            f"delete it and fetch again, or fix the mirror."
        )


def fetch(source: SourceFile, mirror: str | os.PathLike | None = None) -> Path:
    """Return a verified local copy of ``source``, downloading or copying it into the cache once."""
    mirror = mirror if mirror is not None else os.environ.get("SIDBENCH_MIRROR")
    target = cache_dir() / "downloads" / source.sha256[:16] / source.filename
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if mirror:
            origin = str(mirror_path(source.url, mirror))
            if not Path(origin).is_file():
                raise DataError(
                    f"missing mirror file: {source.filename} was expected at {origin} "
                    f"(SIDBENCH_MIRROR={mirror}). Add the file there or unset SIDBENCH_MIRROR "
                    f"to download {source.url}."
                )
            shutil.copyfile(origin, tmp)
        else:
            origin = source.url
            try:
                with urllib.request.urlopen(source.url, timeout=60) as resp, open(tmp, "wb") as out:
                    shutil.copyfileobj(resp, out)
            except OSError as exc:
                raise DataError(
                    f"could not download {source.url} ({exc}). Without network, set "
                    f"SIDBENCH_MIRROR to a folder laid out as HOST/PATH."
                ) from exc
        _verify(tmp, source, origin)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
