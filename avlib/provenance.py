"""Where a result came from: the git commit of the avlib checkout, whether it had local changes, and the CPU.

Kept free of torch so that ``avlib.report.results`` can stamp tables without importing it.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

# The checkout that holds this package; an installed copy outside git reports 'unknown'.
_REPO_DIR = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    """Output of ``git <args>`` in the avlib checkout, or None where git or the repository is missing."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=_REPO_DIR, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> str:
    """The checkout's ``HEAD`` commit hash; ``'unknown'`` outside a repository or before its first commit."""
    return _git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> bool | None:
    """True when the checkout has uncommitted or untracked files, so ``git_commit()`` alone does not
    reproduce it; None when that cannot be told (no git, no repository)."""
    status = _git("status", "--porcelain")
    return None if status is None else bool(status)


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
