"""A clip index: every video of a folder or list file, probed once, cached beside the data.

``build_index(source)`` probes each file with :func:`avlib.io.probe` and keeps the result in
``<root>/.avlib-index.json``. The cache is keyed by each file's relative path, size and
modification time, so an edited, added or removed file is re-probed or dropped on the next
build while the others are read from the cache.

A file that cannot be probed stops the build with its :class:`~avlib.io.MediaError`, unless
``skip_bad=True``: then it is skipped, counted, and listed in the log and in ``index.bad``.

A prepared tree (:mod:`avlib.data.prepare`: the same layout, videos re-encoded small with short keyframe
intervals) is indexed like a raw one; its settings, from the ``.avlib-prepared.json`` at its root, are
in ``index.prepared`` and in the log.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from avlib.files import write_text
from avlib.io import MediaError, VideoInfo, probe

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
CACHE_NAME = ".avlib-index.json"
_CACHE_VERSION = 2  # 2: VideoInfo.rotation, width and height as displayed
#: The manifest at the root of a tree written by :mod:`avlib.data.prepare`.
PREPARED_MANIFEST = ".avlib-prepared.json"


@dataclass
class ClipIndex:
    """The probed videos under ``root`` (paths relative to it) and the ones that failed."""

    root: Path
    videos: list[VideoInfo]
    bad: list[tuple[str, str]] = field(default_factory=list)  # (relative path, problem)
    probed: int = 0  # files probed in this build (the rest came from the cache)
    prepared: dict | None = None  # a prepared tree's settings (and its "root"); None for raw data

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, item: int) -> VideoInfo:
        return self.videos[item]

    def with_audio(self) -> list[VideoInfo]:
        return [video for video in self.videos if video.has_audio]

    def longer_than(self, seconds: float) -> list[VideoInfo]:
        return [video for video in self.videos if video.usable_duration >= seconds]


def _list_files(source: Path) -> tuple[Path, list[Path]]:
    """(root, files) for a folder (searched recursively) or a list file (one path a line, relative to it)."""
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder or list file")
    if source.is_dir():
        files = sorted(path for path in source.rglob("*") if path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith("."))
        return source, files
    root = source.parent
    files = []
    for line in source.read_text().splitlines():
        entry = line.split()[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if entry:
            files.append((root / entry) if not os.path.isabs(entry) else Path(entry))
    return root, files


def find_prepared(path: str | os.PathLike) -> dict | None:
    """The settings of the prepared tree holding ``path`` (its manifest in ``path`` or a folder above) and
    that tree's ``root``; None when ``path`` lies in no prepared tree."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        manifest = folder / PREPARED_MANIFEST
        if manifest.is_file():
            try:
                settings = json.loads(manifest.read_text())["settings"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{manifest}: not a readable manifest of a prepared tree ({error})") from error
            return {**settings, "root": str(folder)}
    return None


def _signature(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _read_cache(cache: Path) -> dict:
    try:
        data = json.loads(cache.read_text())
        return data["files"] if data.get("version") == _CACHE_VERSION else {}
    except (OSError, ValueError, KeyError):
        return {}


def build_index(source: str | os.PathLike, *, skip_bad: bool = False, cache: bool = True) -> ClipIndex:
    """Probe every video under a folder (or named in a list file), re-using the cache where valid."""
    root, files = _list_files(Path(source))
    prepared = find_prepared(root)
    if prepared is not None:
        log.info("%s is a prepared tree: %s", root, ", ".join(f"{key} {value}" for key, value in prepared.items()))
    cache_path = root / CACHE_NAME
    cached = _read_cache(cache_path) if cache else {}
    entries: dict[str, dict] = {}
    videos: list[VideoInfo] = []
    bad: list[tuple[str, str]] = []
    probed = 0
    for path in files:
        relative = os.path.relpath(path, root)
        try:
            signature = _signature(path)
        except FileNotFoundError:
            signature = None
        hit = cached.get(relative)
        if signature is not None and hit and hit["signature"] == signature:
            info = VideoInfo(**{**hit["info"], "path": str(path)})
        else:
            probed += 1
            try:
                info = probe(path)
            except MediaError as error:
                if not skip_bad:
                    raise
                bad.append((relative, error.problem))
                log.warning("skipping %s: %s", relative, error.problem)
                continue
        entries[relative] = {"signature": signature, "info": {**info.to_dict(), "path": relative}}
        videos.append(info)
    if bad:
        log.warning("skipped %d unreadable file(s) of %d under %s: %s", len(bad), len(files), root,
                    ", ".join(name for name, _ in bad))
    if cache and (probed or set(entries) != set(cached)):
        try:
            write_text(cache_path, json.dumps({"version": _CACHE_VERSION, "files": entries}, sort_keys=True))
        except OSError as error:  # a read-only dataset still indexes, just without a cache
            log.warning("cannot write the index cache %s: %s", cache_path, error)
    return ClipIndex(root=root, videos=videos, bad=bad, probed=probed, prepared=prepared)
