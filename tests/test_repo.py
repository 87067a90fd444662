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
    assert PROFILES["laptop"].data_file("pretrain") == PROFILES["full"].data_file("pretrain")


def test_the_laptop_profile_is_a_small_model_on_a_sample_of_the_real_files():
    from minimind_lib.model import config_from_profile
    from minimind_lib.plan import parameter_count

    laptop, full = PROFILES["laptop"], PROFILES["full"]
    assert laptop.data == "real" and laptop.model.vocab_size == full.model.vocab_size
    assert 4e6 < parameter_count(config_from_profile(laptop)) < parameter_count(config_from_profile(full)) / 4
    for stage in ("pretrain", "sft", "dpo", "grpo"):
        budget = getattr(laptop, stage)
        # a finite budget, and a sample with more rows than the steps read
        assert budget.max_steps > 0 and budget.max_rows > budget.max_steps * budget.batch_size, stage
    assert "3000 steps x batch 16 x 256 tokens, lr 0.001, a sample of 200,000 rows" in laptop.table()
