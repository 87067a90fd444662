"""pyproject.toml and environment.yml pin the same versions."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins |= set(extra)
    env = set(re.findall(r"^\s+- ([A-Za-z0-9_.-]+==[^\s]+)$", (ROOT / "environment.yml").read_text(), re.M))
    assert all("==" in p for p in pins), "every dependency is pinned exactly"
    assert pins == env, f"only in pyproject: {pins - env}; only in environment.yml: {env - pins}"
