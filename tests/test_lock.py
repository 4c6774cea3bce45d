"""requirements.lock: the one install of ./run demo, ./run test, CI and environment.yml."""
from __future__ import annotations

import importlib.metadata as metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", line)
        assert m, f"requirements.lock: {line!r} is not an exact pin"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = m.group(2)
    return pins


def test_every_dependency_of_the_project_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: run ./run lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}")


def test_the_installed_packages_are_the_locked_versions():
    wrong = {}
    for name, version in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed differently from requirements.lock (locked, installed): {wrong}; rerun ./run test"


def test_every_install_route_reads_the_lock():
    assert '-r requirements.lock -e ".[dev]"' in (ROOT / "run").read_text()
    assert "-r requirements.lock" in (ROOT / "environment.yml").read_text()
    assert "./run test" in (ROOT / ".ci" / "run").read_text()
