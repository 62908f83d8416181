"""Checkpoints: one file holds the model, the optimizer, the step, the config and where the code came from.

A checkpoint is a plain dict saved with ``torch.save`` and read back with ``weights_only=True``, so it
holds only tensors and JSON-like values::

    model           the model's state_dict
    optimizer       the optimizer's state_dict, or None
    step            optimizer steps taken
    config          JSON-able dict: the caller's config plus 'model_class' and 'model_config'
    extra           the caller's additional state (tensors and plain values), or None
    git_commit      ``git rev-parse HEAD`` of the avlib checkout, 'unknown' outside git
    dirty           whether that checkout had local changes (None when unknown)
    avlib_version, torch_version, format_version

Files are written atomically (temporary file in the same folder, fsync, ``os.replace``), so a run killed
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import avlib
from avlib.files import atomic_write
from avlib.provenance import git_commit, git_dirty

FORMAT_VERSION = 1
_REQUIRED_KEYS = ("model", "optimizer", "step", "config", "format_version")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: truncated, corrupt, or made for another model."""


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    """The model's config as a JSON-able dict: ``model.config`` when it is a dataclass (the project's
    convention, as in nanoGPT), else empty."""
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return _json_normalised(dataclasses.asdict(config), "model.config")
    return {}


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    step: int,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save a checkpoint atomically to ``path``.

    ``config`` is the run's JSON-able config (e.g. ``{'train': asdict(train_config), 'run': {...}}``);
    ``'model_class'`` and ``'model_config'`` are added from ``model`` so that a load can check them.
    """
    stored_config = _json_normalised(dict(config), "config")
    stored_config["model_class"] = type(model).__name__
    stored_config["model_config"] = model_config_dict(model)
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "step": int(step),
        "config": stored_config,
        "extra": None if extra is None else dict(extra),
        "git_commit": git_commit(),
        "dirty": git_dirty(),
        "avlib_version": avlib.__version__,
        "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-loadable
        "format_version": FORMAT_VERSION,
    }
    atomic_write(path, lambda file: torch.save(checkpoint, file))


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expected_model_class: type[nn.Module] | str | None = None,
    expected_config: Mapping[str, Any] | Any | None = None,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU, ``weights_only=True``).

    ``expected_model_class`` (a class or its name) and ``expected_config`` (the model's config, a dict or
    a dataclass) are compared with what the checkpoint was made for; a difference raises
    :class:`CheckpointError` listing it. Raises FileNotFoundError for a missing file and CheckpointError
    for a truncated or corrupt one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not a checkpoint of ours
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt, or not a PyTorch checkpoint: it is not the zip archive "
                              "torch.save writes")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Weights only" in str(error):
            # torch's own message advises loading without weights_only: unsafe for a file of unknown origin, so only its cause is kept
            cause = re.search(r"Unsupported global: GLOBAL [\w.]+|Unsupported [^.\n]*", str(error))
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain values, which an avlib checkpoint "
                f"never does; it was not loaded ({cause.group(0) if cause else 'refused by weights_only loading'})"
            ) from None
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {error}") from error
    except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile, OSError, struct.error) as error:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {error}") from error

    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in _REQUIRED_KEYS):
        raise CheckpointError(
            f"checkpoint {path} is not an avlib checkpoint: it lacks one of the keys {_REQUIRED_KEYS}"
        )
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {checkpoint['format_version']}, newer than this "
            f"avlib reads ({FORMAT_VERSION}); update avlib"
        )

    stored_config = checkpoint["config"]
    if expected_model_class is not None:
        expected_name = (
            expected_model_class if isinstance(expected_model_class, str) else expected_model_class.__name__
        )
        if stored_config.get("model_class") != expected_name:
            raise CheckpointError(
                f"checkpoint {path} holds a {stored_config.get('model_class')}, not a {expected_name}"
            )
    if expected_config is not None:
        if dataclasses.is_dataclass(expected_config) and not isinstance(expected_config, type):
            expected_config = dataclasses.asdict(expected_config)
        expected = _flatten(_json_normalised(dict(expected_config), "expected_config"))
        stored = _flatten(stored_config.get("model_config", {}))
        differing = sorted(
            key for key in expected.keys() | stored.keys() if expected.get(key) != stored.get(key)
        )
        if differing:
            details = "; ".join(
                f"{key}: checkpoint {stored.get(key)!r}, expected {expected.get(key)!r}" for key in differing
            )
            raise CheckpointError(f"checkpoint {path} was made for another model config ({details})")
    return checkpoint


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load ``state`` into ``model`` strictly; any missing, unexpected or differently shaped tensor raises
    CheckpointError naming ``path`` and the tensors, before anything is copied."""
    own = model.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    mismatched = [
        f"{key} {tuple(state[key].shape)} in the checkpoint, {tuple(own[key].shape)} in the model"
        for key in sorted(own.keys() & state.keys())
        if state[key].shape != own[key].shape
    ]
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + _first(mismatched))
    if missing:
        problems.append("missing from the checkpoint: " + _first(missing))
    if unexpected:
        problems.append("not in the model: " + _first(unexpected))
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit this {type(model).__name__}: " + "; ".join(problems)
        )
    model.load_state_dict(state)


def _first(items: list[str], shown: int = 8) -> str:
    """A comma-separated list of the first ``shown`` items and how many more there are."""
    more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _json_normalised(config: dict[str, Any], what: str) -> dict[str, Any]:
    """``config`` as JSON would read it back (tuples become lists), so stored and expected configs compare
    equal; raises ValueError for values JSON cannot hold."""
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be JSON-able (numbers, strings, lists, dicts): {error}") from error


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys, so a difference is reported by its full name."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "", *,
                       added_off_ok: bool = False) -> list[str]:
    """Dotted keys whose values differ between two nested dicts (a key on one side only differs);
    lists and tuples compare alike, as JSON stores tuples as lists. ``added_off_ok``: a key only in ``current``
    that holds an off value (False or None: every new switch defaults to off) is no difference, as a setting
    added after ``stored`` was written computes what it did."""
    keys = []
    for name in sorted(set(stored) | set(current), key=str):
        key = f"{prefix}.{name}" if prefix else str(name)
        left, right = stored.get(name, _MISSING), current.get(name, _MISSING)
        if isinstance(left, Mapping) and isinstance(right, Mapping):
            keys += config_differences(left, right, key, added_off_ok=added_off_ok)
        elif _is_list(left) and _is_list(right) and len(left) == len(right):
            keys += config_differences(dict(enumerate(left)), dict(enumerate(right)), key, added_off_ok=added_off_ok)
        elif added_off_ok and left is _MISSING and (right is False or right is None):
            continue
        elif _as_lists(left) != _as_lists(right):
            keys.append(key)
    return keys


_MISSING = object()


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _as_lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_lists(item) for item in value]
    return value
