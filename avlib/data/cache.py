"""A disk cache of whole decoded clips (frames and audio), for the small profiles' in-memory sources."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from avlib.files import atomic_path

Item = TypeVar("Item")


def cached_decode(path: Path, cache_dir: Path | None, settings: dict[str, Any],
                  decode: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``decode()``'s (frames, audio) for ``path``, kept in ``cache_dir`` under a key of the file's
    path, size and modification time and the decoding ``settings``; a changed file or setting
    decodes again. Written atomically, so an interrupted run leaves no half entry."""
    if cache_dir is None:
        return decode()
    stat = path.stat()
    key_fields = dict(path=str(path.resolve()), size=stat.st_size, mtime=stat.st_mtime_ns, **settings)
    key = hashlib.sha1(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    cached = cache_dir / f"{path.stem}-{key}.npz"
    if cached.exists():
        with np.load(cached) as data:
            return data["frames"], data["audio"]
    frames, audio = decode()
    with atomic_path(cached) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, frames=frames, audio=audio)
    return frames, audio


def decode_all(items: Sequence[Item], path_of: Callable[[Item], Path], decode: Callable[[Item], tuple[np.ndarray, np.ndarray]],
               settings: dict[str, Any], cache_dir: str | Path | None = None, progress: bool = False,
               description: str = "decoding") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every item's (frames, audio) through :func:`cached_decode`, as two lists, with a progress bar."""
    from tqdm.auto import tqdm

    cache = Path(cache_dir) if cache_dir else None
    frames, audio = [], []
    for item in tqdm(items, desc=description, disable=not progress):
        item_frames, item_audio = cached_decode(path_of(item), cache, settings, lambda: decode(item))
        frames.append(item_frames)
        audio.append(item_audio)
    return frames, audio
