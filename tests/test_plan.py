"""The training plan (minimind_lib.plan) and the quick data check before training (data.check_file)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from minimind_lib import plan
from minimind_lib.data import DataError, check_file, sample_file
from minimind_lib.profiles import FULL, TINY

TEST_GPU = plan.DeviceSpeed("test GPU", 1e14, "test")


class WordTokenizer:
    """One token a word; a chat template that adds 3 tokens a message (role, start, end)."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}

    def apply_chat_template(self, conversations, tokenize=True, return_dict=True, **kwargs):
        lengths = [sum(3 + len(m["content"].split()) for m in conv) for conv in conversations]
        extra = 2 if kwargs.get("add_generation_prompt") else 0
        return {"input_ids": [[0] * (n + extra) for n in lengths]}


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows are objects (dumped as JSON) or raw strings (written as they are), one a line."""
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def texts(n: int, words=(3, 5)) -> list[dict]:
    """Pretraining rows whose word counts cycle through `words`."""
    return [{"text": " ".join(["w"] * words[i % len(words)])} for i in range(n)]


# ---- arithmetic -------------------------------------------------------------------------------
def test_flops_are_6_n_t_for_training_and_2_n_t_for_a_forward_pass():
    assert plan.training_flops(25_000_000, 1_000_000) == 6 * 25e6 * 1e6
    assert plan.training_flops(10, 100, factor=2) == 2_000


def test_steps_from_rows_and_global_batch_or_the_cap():
    assert plan.optimizer_steps(1000, 32, None) == 32  # 31.25 -> the last partial batch counts
    assert plan.optimizer_steps(1024, 32, -1) == 32  # -1: no cap, one epoch
    assert plan.optimizer_steps(1000, 32, None, epochs=2) == 64
    assert plan.optimizer_steps(10**9, 32, 50) == 50


# ---- the device -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device_name", "label", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756),
        ("NVIDIA H100 NVL", "H100 NVL", 835),
        ("NVIDIA H200", "H200 SXM", 989),
        ("NVIDIA H200 NVL", "H200 NVL", 835),
        ("NVIDIA A100-SXM4-80GB", "A100", 312),
        ("NVIDIA A100 80GB PCIe", "A100", 312),
        ("NVIDIA A10", "A10", 125),
        ("NVIDIA L4", "L4", 121),
        ("NVIDIA L40S", "L40S", 362),
        ("Tesla T4", "T4", 65),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 165.2),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090", 71),
    ],
)
def test_known_gpus_get_their_datasheet_peak(device_name, label, tflops):
    speed = plan.device_speed(device_name, measure=pytest.fail)  # never timed
    assert (speed.name, speed.peak_flops, speed.cuda) == (label, tflops * 1e12, True)
    assert "datasheet" in speed.source or "whitepaper" in speed.source


def test_an_unknown_gpu_or_the_cpu_is_timed_instead():
    asked = []

    def measure(device):
        asked.append(device)
        return 3e13

    for name in ("NVIDIA A10G", "NVIDIA L40", "Some Future GPU"):  # near misses of table rows
        speed = plan.device_speed(name, measure=measure)
        assert speed.peak_flops == 3e13 and "measured" in speed.source and speed.cuda
    cpu = plan.device_speed("cpu", measure=measure)
    assert not cpu.cuda and "measured" in cpu.source
    assert asked == ["cuda", "cuda", "cuda", "cpu"]


def test_the_matmul_timing_is_quick_and_positive():
    assert plan.measure_matmul("cpu", seconds=0.01) > 1e8
    assert plan.measure_matmul("cpu", seconds=0.01, bf16=True) > 1e7  # emulated where the CPU lacks bf16


def test_a_cpu_on_the_fast_path_is_timed_in_bf16(tmp_path):
    asked = []

    def measure(device, bf16=False):
        asked.append((device, bf16))
        return 4e11 if bf16 else 2e11

    fast = plan.device_speed("cpu", measure=measure, bf16=True)
    plain = plan.device_speed("cpu", measure=measure)
    assert asked == [("cpu", True), ("cpu", False)]
    assert "bf16" in fast.source and "fp32" in plain.source and not fast.cuda
    path = write_jsonl(tmp_path / "pretrain.jsonl", texts(40))
    report = check_file(path, "pretrain")
    runs = {bf16: plan.training_plan(TINY, "pretrain", report, WordTokenizer(), 1000, bf16=bf16,
                                     device=fast if bf16 else plain) for bf16 in (True, False)}
    assert runs[False].memory["activations"] == 2 * runs[True].memory["activations"]  # fp32: twice
    assert runs[False].seconds == pytest.approx(2 * runs[True].seconds)  # half the peak


# ---- the 8-bit optimizer ----------------------------------------------------------------------
def test_optim_8bit_maps_to_bitsandbytes_on_cuda_only():
    assert (
        plan.optimizer_choice(True, cuda=True, default="adamw_torch_fused")[0] == "adamw_bnb_8bit"
    )
    optim, why = plan.optimizer_choice(True, cuda=False, default="adamw_torch_fused")
    assert optim == "adamw_torch_fused" and "ignored on CPU" in why
    assert plan.optimizer_choice(False, cuda=True, default="adamw_torch")[0] == "adamw_torch"


def test_the_8bit_name_is_one_the_trainer_knows():
    from transformers.training_args import OptimizerNames

    assert OptimizerNames("adamw_bnb_8bit")
    assert OptimizerNames(plan.default_optimizer())


# ---- data: the quick check and the token estimate ---------------------------------------------
def test_sample_check_names_file_and_line_of_a_bad_row(tmp_path):
    rows = texts(50)
    rows[6] = '{"text": "unclosed'
    path = write_jsonl(tmp_path / "pretrain.jsonl", rows)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:7: invalid JSON: .*column \d+;"):
        check_file(path, "pretrain", head=10, sample=5)


def test_the_random_sample_reaches_past_the_first_rows(tmp_path):
    rows = texts(2000)
    for i in range(100, 2000, 10):
        rows[i] = {"txt": "wrong field"}
    path = write_jsonl(tmp_path / "pretrain.jsonl", rows)
    report = sample_file(path, "pretrain", head=100, sample=60, seed=1)
    assert (report.rows, report.checked, report.complete) == (2000, 160, False)
    assert report.bad_rows > 0
    first = report.problems[0]
    line = int(first.split(":")[-2])
    assert first == f"{path}:{line}: missing field (text)" and (line - 1) % 10 == 0 and line > 100


def test_validate_all_finds_what_the_sample_missed(tmp_path):
    rows = texts(3000)
    rows[2500] = {"text": ""}
    path = write_jsonl(tmp_path / "pretrain.jsonl", rows)
    report = check_file(path, "pretrain", head=10, sample=10, seed=0)  # misses line 2501 here
    assert report.ok and not report.complete
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2501: empty content \(text\)"):
        check_file(path, "pretrain", full=True, head=10, sample=10)


def test_tokens_are_exact_for_a_small_file(tmp_path):
    path = write_jsonl(tmp_path / "pretrain.jsonl", texts(30, words=(3, 5, 10)))
    report = check_file(path, "pretrain")
    assert report.complete and len(report.sample) == 30
    p = plan.training_plan(TINY, "pretrain", report, WordTokenizer(), 1000, device=TEST_GPU)
    assert p.tokens_exact
    assert p.tokens_per_row * p.rows == pytest.approx(10 * (4 + 6 + 11))  # + 1 end-of-text a row


def test_tokens_are_estimated_from_a_sample_of_a_large_file(tmp_path):
    path = write_jsonl(tmp_path / "pretrain.jsonl", texts(5000, words=(3, 5)))
    report = check_file(path, "pretrain", head=50, sample=200)
    p = plan.training_plan(FULL, "pretrain", report, WordTokenizer(), 1000, device=TEST_GPU)
    assert not p.tokens_exact and p.sample_rows == 250
    assert p.tokens_per_row == pytest.approx(5.0, rel=0.05)  # 4 and 6 tokens, alternating
    assert "≈" in p.table()


def test_conversation_rows_are_cut_at_seq_len(tmp_path):
    long = {"role": "assistant", "content": " ".join(["w"] * 1000)}
    user = {"role": "user", "content": "hi there"}
    rows = [{"chosen": [user, long], "rejected": [user, {"role": "assistant", "content": "no"}]}]
    path = write_jsonl(tmp_path / "dpo.jsonl", rows)
    report = check_file(path, "dpo")
    lengths = plan.row_tokens("dpo", report.sample, WordTokenizer(), seq_len=128)
    assert lengths == [128 + (5 + 4)]  # chosen cut at 128; rejected: 5 + 4 tokens


# ---- whole plans ---------------------------------------------------------------------------------
def test_a_budgeted_pretraining_plan(tmp_path):
    path = write_jsonl(tmp_path / "pretrain.jsonl", texts(40))
    report = check_file(path, "pretrain")
    n = 918_656
    p = plan.training_plan(TINY, "pretrain", report, WordTokenizer(), n, device=TEST_GPU)
    b = TINY.pretrain
    assert p.steps == b.max_steps and p.global_batch == b.batch_size * b.grad_accum
    assert p.tokens == b.max_steps * b.batch_size * b.seq_len
    assert p.flops == 6 * n * p.tokens
    assert p.seconds == pytest.approx(p.flops / (1e14 * plan.UTILISATION))
    assert p.memory["weights"] == p.memory["gradients"] == 4 * n and p.memory["AdamW"] == 8 * n
    short = plan.training_plan(
        TINY, "pretrain", report, WordTokenizer(), n, max_steps=7, device=TEST_GPU
    )
    assert short.steps == 7 and "MAX_STEPS = 7" in short.table()


def test_an_epoch_plan_on_several_devices_with_8bit_states(tmp_path):
    conv = [{"role": "user", "content": "a b"}, {"role": "assistant", "content": "c d e"}]
    path = write_jsonl(tmp_path / "sft.jsonl", [{"conversations": conv}] * 1000)
    report = check_file(path, "sft")
    n = 25_829_888
    p = plan.training_plan(
        FULL, "sft", report, WordTokenizer(), n, processes=4, optim_8bit=True, device=TEST_GPU
    )
    assert p.steps == math.ceil(1000 / FULL.sft.batch_size) and p.steps_note == "one epoch"
    assert p.tokens == p.steps * FULL.sft.batch_size * (5 + 6)
    assert p.seconds == pytest.approx(p.flops / (4 * 1e14 * plan.UTILISATION))
    assert p.optim == "adamw_bnb_8bit" and p.memory["AdamW 8-bit"] == 2 * n
    per_device = FULL.sft.batch_size // 4
    act = 34 * FULL.model.hidden_size * FULL.model.num_hidden_layers + 10 * FULL.model.vocab_size
    assert p.memory["activations"] == per_device * FULL.sft.seq_len * act


def test_a_packed_sft_plan_counts_packed_rows(tmp_path):
    """11 tokens a conversation: packed into rows of seq_len, an epoch takes fewer steps over
    the same tokens."""
    conv = [{"role": "user", "content": "a b"}, {"role": "assistant", "content": "c d e"}]
    path = write_jsonl(tmp_path / "sft.jsonl", [{"conversations": conv}] * 1000)
    report = check_file(path, "sft")
    padded = plan.training_plan(FULL, "sft", report, WordTokenizer(), 1000, processes=1, device=TEST_GPU)
    packed = plan.training_plan(
        FULL, "sft", report, WordTokenizer(), 1000, processes=1, packed=True, device=TEST_GPU
    )
    rows = math.ceil(1000 * 11 / (FULL.sft.seq_len * plan.PACKED_FILL))
    assert packed.steps == math.ceil(rows / FULL.sft.batch_size) < padded.steps
    assert "packed rows" in dict(packed.entries())["data"]
    # Each packed row holds its share of all 11,000 tokens.
    assert packed.tokens == pytest.approx(packed.steps * FULL.sft.batch_size * 1000 * 11 / rows)


def test_dpo_and_grpo_count_their_extra_passes(tmp_path):
    user = {"role": "user", "content": "q"}
    pair = {"chosen": [user, {"role": "assistant", "content": "yes"}],
            "rejected": [user, {"role": "assistant", "content": "no"}]}  # fmt: skip
    dpo = check_file(write_jsonl(tmp_path / "dpo.jsonl", [pair] * 10), "dpo")
    n = 1000
    d = plan.training_plan(TINY, "dpo", dpo, WordTokenizer(), n, device=TEST_GPU)
    assert d.flops == (8 + 6) * n * d.tokens  # policy 6 + reference 2, reward model 6
    d = plan.training_plan(
        TINY, "dpo", dpo, WordTokenizer(), n, device=TEST_GPU, with_reward_model=False
    )
    assert d.flops == 8 * n * d.tokens and d.memory["reference"] == 4 * n

    rl = {"conversations": [user, {"role": "assistant", "content": "无"}]}
    rlaif = check_file(write_jsonl(tmp_path / "rlaif.jsonl", [rl] * 100), "rlaif")
    full_grpo = dataclasses.replace(FULL, grpo=dataclasses.replace(FULL.grpo, batch_size=16))
    g = plan.training_plan(
        full_grpo, "grpo", rlaif, WordTokenizer(), n, num_generations=8, completion_len=20,
        device=TEST_GPU,
    )  # fmt: skip
    assert g.steps == math.ceil(100 * 8 / 16)  # every prompt G times, 16 replies a step
    assert g.tokens == g.steps * 16 * ((4 + 2) + 20)  # prompt (+ generation prompt) + reply
    assert g.flops == 8 * n * g.tokens + 2 * n * g.steps * 16 * 20


def test_parameter_count_matches_a_built_model():
    from minimind_lib.model import MiniMindForCausalLM, config_from_profile, count_parameters

    config = config_from_profile(TINY)
    assert plan.parameter_count(config) == count_parameters(MiniMindForCausalLM(config))


def test_the_table_renders_as_text_and_markdown(tmp_path):
    report = check_file(write_jsonl(tmp_path / "pretrain.jsonl", texts(10)), "pretrain")
    p = plan.training_plan(TINY, "pretrain", report, WordTokenizer(), 1000, device=TEST_GPU)
    text, markdown = p.table(), p._repr_markdown_()
    for key in ("tokens trained (T)", "compute", "time", "memory a device", "optimizer"):
        assert key in text and f"| {plan.ZH_NAMES[key]} · {key} |" in markdown  # bilingual
    assert "6·N·T" in text and "test GPU" in text


def test_cli_sample_check(tmp_path, capsys):
    from minimind_lib import data

    path = write_jsonl(tmp_path / "pretrain.jsonl", texts(3000))
    assert data.main(["validate", str(path), "--sample"]) == 0
    assert "3,000 rows, checked 1,000" in capsys.readouterr().out


def test_a_plan_leaves_the_global_random_state_alone(tmp_path):
    import torch

    from minimind_lib.model import config_from_profile

    state = torch.random.get_rng_state()
    plan.measure_matmul("cpu", seconds=0.01)
    plan.parameter_count(config_from_profile(TINY))  # model init on the meta device
    assert torch.equal(state, torch.random.get_rng_state())  # 03 builds its model after the plan
