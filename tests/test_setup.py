"""The set-up files agree with each other: one pinned list, used by both pip and conda."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_requirements_are_all_pinned_and_torch_has_no_audio():
    pins = _requirements()
    assert pins["torch"] == "2.13.0"
    assert "torchaudio" not in pins and "torchvision" not in pins
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+]*", line), line


def test_environment_yml_installs_the_same_list():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    dependencies = environment["dependencies"]
    assert any(str(item).startswith("python=3.11") for item in dependencies)
    assert "pip" in dependencies
    pip_section = next(item["pip"] for item in dependencies if isinstance(item, dict))
    assert "-r requirements.txt" in pip_section and "-e ." in pip_section
    # no second source of versions: conda pins nothing but python
    assert all(isinstance(item, dict) or item in ("pip",) or str(item).startswith("python=") for item in dependencies)


def test_installed_versions_match_the_pins():
    from importlib.metadata import PackageNotFoundError, version

    mismatched = {}
    for name, pinned in _requirements().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            mismatched[name] = "missing"
            continue
        if installed.split("+")[0] != pinned:
            mismatched[name] = installed
    assert not mismatched, f"installed packages differ from requirements.txt: {mismatched}"


def test_reproduce_help_lists_the_options():
    result = subprocess.run([str(ROOT / "reproduce.sh"), "--help"], capture_output=True, text=True, check=True)
    for option in ("--profile", "--only", "--data-root", "--device", "test"):
        assert option in result.stdout
