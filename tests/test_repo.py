"""Repository hygiene: notebooks are committed clean, profiles behave."""

import json
from pathlib import Path

import pytest

from minimind_lib.profiles import PROFILES, get_profile

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_parameters_cell(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "PROFILE" in "".join(tagged[0]["source"]), path.name


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("MINIMIND_PROFILE", "full")
    assert get_profile().name == "full"
    monkeypatch.setenv("MINIMIND_PROFILE", "nope")
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        get_profile()


def test_profiles_never_share_artifacts():
    dirs = [p.out_dir for p in PROFILES.values()]
    assert len(set(dirs)) == len(dirs)
    assert PROFILES["full"].data_file("sft").name == "sft_mini_512.jsonl"
    assert PROFILES["tiny"].data_dir != PROFILES["full"].data_dir
