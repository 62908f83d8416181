"""The keys that name files and settings: a streamed file digest for cache keys and run records that name a
file by its content, a file stamp for those that name it by size and time, and a short key of JSON-able settings."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's content, read in 1 MiB blocks (``algorithm``: any :mod:`hashlib` name)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike) -> list[int]:
    """[size, modification time in ns] of a file: a cheap stand-in for its content in a run key."""
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def json_key(value: Any, length: int = 10) -> str:
    """A short SHA-1 key of a JSON-able value (keys sorted, anything else by ``str``): runs with other settings
    or inputs get another key, so they train into another folder instead of resuming."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]
