"""The real-data code path: all seven notebooks headless on the `full` profile's settings, on a
small dataset in MiniMind's real formats (tests/real_format.py), with the model shrunk and a few
steps (profile overrides). About 4 minutes on 2 CPU cores."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import real_format

from minimind_lib import profiles
from minimind_lib.data import validate_file

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# The full profile's settings, with a model and batches small enough for a CPU in seconds.
SMALL = {
    "model": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 2048},
    "pretrain": {"batch_size": 4, "grad_accum": 1, "seq_len": 128},
    "sft": {"batch_size": 4, "seq_len": 256},
    "dpo": {"batch_size": 4, "seq_len": 256},
    "grpo": {"batch_size": 8, "seq_len": 32},
}
RUNS = [  # notebook, its -p parameters
    ("01_tokenizer", []),
    ("02_model", []),
    ("03_pretrain", ["MAX_STEPS=2"]),
    ("04_sft", ["MAX_STEPS=2"]),
    ("07_chat", []),  # with pretraining and SFT only: DPO and GRPO are optional
    ("05_dpo", ["MAX_STEPS=2"]),
    ("06_grpo", ["MAX_STEPS=2", "REWARD=trained_reward_model"]),  # 05's reward model
    ("06_grpo", ["MAX_STEPS=2", "REWARD=rules"]),
    ("07_chat", []),
]


def test_overrides_replace_settings_and_name_unknown_ones(monkeypatch):
    small = profiles.with_overrides(profiles.FULL, SMALL)
    assert small.model.hidden_size == 64 and small.model.vocab_size == profiles.FULL.model.vocab_size
    assert small.pretrain.seq_len == 128 and small.pretrain.learning_rate == profiles.FULL.pretrain.learning_rate
    assert small.name == "full" and small.data == "real" and "overrides" in small.table()
    with pytest.raises(ValueError, match=r"unknown model setting\(s\) \['hidden'\]"):
        profiles.with_overrides(profiles.FULL, {"model": {"hidden": 1}})
    monkeypatch.setenv(profiles.OVERRIDES_ENV, "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        profiles.get_profile("full")
    monkeypatch.setenv(profiles.OVERRIDES_ENV, json.dumps({"seed": 5}))
    assert profiles.get_profile("full").seed == 5


def test_the_fixture_is_valid_and_has_the_real_files_quirks(tmp_path):
    paths = real_format.write(tmp_path)
    for kind, path in paths.items():
        report = validate_file(path)
        assert report.ok and report.kind == kind, report.problems[:3]
    text = paths["pretrain"].read_text(encoding="utf-8")
    assert "<|im_start|>" in text and "𠀀" in text and max(len(line) for line in text.splitlines()) > 2000
    assert real_format.write(tmp_path / "again")["sft"].read_bytes() == paths["sft"].read_bytes()


def printed(notebook: Path) -> str:
    """Everything an executed notebook's cells printed."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o["output_type"] == "stream")


@pytest.mark.slow
def test_all_seven_notebooks_run_on_the_real_data_path(tmp_path):
    real_format.write(tmp_path / "dataset")
    env = dict(os.environ, MINIMIND_ROOT=str(tmp_path), HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"),
               MINIMIND_FAST="0", TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               **{profiles.OVERRIDES_ENV: json.dumps(SMALL)})

    def run(name: str, params: list[str]) -> str:
        """Run one notebook headless on the full profile; what its cells printed."""
        cmd = [sys.executable, "-m", "minimind_lib.run", str(NOTEBOOKS / f"{name}.ipynb"), "--profile", "full"]
        for p in params:
            cmd += ["-p", p]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{name} {params}: {done.stderr[-3000:]}"
        return printed(tmp_path / "out" / "full" / "executed" / f"{name}.ipynb")

    outputs = [run(name, params) for name, params in RUNS]
    assert "dpo: not trained (run 05_dpo.ipynb" in outputs[4] and "grpo: not trained" in outputs[4]
    assert "dpo: not trained" not in outputs[-1]
    out = tmp_path / "out" / "full"
    for stage in ("pretrain", "sft", "dpo", "grpo"):
        assert (out / stage / "model.safetensors").is_file(), stage
    card = json.loads((out / "report.json").read_text(encoding="utf-8"))
    # every stage measured something before and after, with n and intervals; short runs are marked
    assert list(card) == ["pretrain", "sft", "dpo", "grpo"] and all(card[s]["facts"]["short_run"] for s in card)
    assert all(card[s]["metrics"] for s in card)
    assert "knowledge_accuracy" in card["pretrain"]["metrics"] and "knowledge_accuracy" in card["sft"]["guards"]
    # the fixture asks two of the probe's English questions word for word: both are left out
    assert card["pretrain"]["metrics"]["knowledge_accuracy"]["n"] == card["sft"]["guards"]["knowledge_accuracy"]["n"] == 236
    assert {"heldout_assistant_loss", "heldout_closed_reply_rate"} <= set(card["sft"]["metrics"])
    assert "reply_length" in card["dpo"]["observed"] and "implicit_reward_accuracy" in card["dpo"]["facts"]
    assert set(card["grpo"]["observed"]) == {"reply_length", "repetition_rate", "kl_to_reference"}
    assert card["grpo"]["facts"]["reward"] == "rules"
    entries = [e for s in card.values() for part in ("metrics", "guards", "observed") for e in s.get(part, {}).values()]
    assert all(math.isfinite(x) for e in entries for x in (e["before"], e["after"], *e["change_ci"]))
    assert "nan" not in (out / "report.md").read_text(encoding="utf-8")
    assert (out / "grpo-llama" / "config.json").is_file()  # 07 exported the final model

    # Your own data, Chinese only, with LoRA: the SFT stage on a file outside dataset/
    own = tmp_path / "mine" / "sft_zh.jsonl"
    own.parent.mkdir()
    own.write_text("".join(
        json.dumps({"conversations": [{"role": "user", "content": f"{a}加{b}等于几？"},
                                      {"role": "assistant", "content": f"{a}加{b}等于{a + b}。"}]},
                   ensure_ascii=False) + "\n"
        for a in range(8) for b in range(8)), encoding="utf-8")
    shown = run("04_sft", ["MAX_STEPS=2", "LORA=True", "DATA_FILE=mine/sft_zh.jsonl"])
    assert f"own (sft: {own})" in shown and "58 conversations; one of them" in shown  # 6 held out
    assert "this run trains LoRA adapters" in shown
    sft = json.loads((out / "report.json").read_text(encoding="utf-8"))["sft"]
    assert sft["facts"]["lora_rank"] == 16 and sft["facts"]["short_run"]
    assert {"heldout_assistant_loss", "heldout_closed_reply_rate"} <= set(sft["metrics"])
    # the merged adapters: a plain checkpoint, which the export turns into one transformers loads
    from transformers import AutoModelForCausalLM

    from minimind_lib.export import export

    merged = AutoModelForCausalLM.from_pretrained(export(out / "sft", tmp_path / "sft-llama"))
    assert not any("lora" in name for name, _ in merged.named_parameters())
