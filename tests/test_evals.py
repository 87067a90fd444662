"""Report card and probe scoring."""

import json
import math

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from minimind_lib.evals import (
    RECORD_ENV,
    ReportCard,
    before_after_table,
    heldout_loss,
    in_range,
    item_is_right,
    qa_scores,
    text_bytes,
    verdict,
)
from minimind_lib.model import MiniMindConfig, MiniMindForCausalLM
from minimind_lib.stats import Score
from minimind_lib.tokenizer import ENDOFTEXT, train_tokenizer


def rate(*values, groups=None) -> Score:
    return Score.of(values, groups=groups)


def test_report_card_round_trip_and_markdown(tmp_path):
    card = ReportCard(tmp_path / "report.json")
    loss_before, loss_after = Score.of([7.0, 6.8], den=[1, 1]), Score.of([0.7, 0.5], den=[1, 1])
    card.record("pretrain", {"heldout_loss": (loss_before, loss_after)}, steps=10)
    card.record("sft", {"qa_accuracy": (rate(0, 0, 0, 0), rate(1, 1, 0, 1))})
    again = ReportCard(tmp_path / "report.json")
    entry = again.data["pretrain"]["metrics"]["heldout_loss"]
    assert entry["n"] == 2 and entry["before"] == pytest.approx(6.9) and entry["after"] == pytest.approx(0.6)
    assert entry["change"] == pytest.approx(-6.3) and entry["change_ci"][1] < 0
    assert entry["before_ci"][0] <= 6.9 <= entry["before_ci"][1]
    assert again.data["pretrain"]["facts"] == {"steps": 10}
    sft = again.data["sft"]["metrics"]["qa_accuracy"]
    assert sft["after_ci"] == pytest.approx([0.3006, 0.9544], abs=1e-4)  # Wilson, 3 of 4
    md = (tmp_path / "report.md").read_text()
    assert "| pretrain | heldout loss ↓ | ✓ | 2 | 6.900 [" in md
    assert md.index("pretrain") < md.index("| sft")


def test_guards_are_recorded_apart_and_marked(tmp_path):
    card = ReportCard(tmp_path / "report.json")
    card.record("grpo", {"fact_qa_sampled_accuracy": (rate(0, 1, 0), rate(1, 1, 0))},
                guards={"sums_greedy_accuracy": (rate(1, 0), rate(1, 0))}, steps=5)
    again = ReportCard(tmp_path / "report.json")
    assert again.data["grpo"]["guards"]["sums_greedy_accuracy"]["change_ci"] == [0.0, 0.0]
    assert again.data["grpo"]["facts"] == {"steps": 5}
    assert [e[1] for e in again.entries()] == ["fact_qa_sampled_accuracy", "sums_greedy_accuracy"]
    assert again.role("grpo", "sums_greedy_accuracy") == "guard"
    assert again.role("grpo", "fact_qa_sampled_accuracy") == "target"
    assert "| grpo | sums greedy accuracy (guard) | ✓ | 2 |" in again.to_markdown()
    card.record("sft", {"b": (rate(0, 1), rate(1, 1))})  # no guards: no empty entry either
    assert "guards" not in card.data["sft"]


def test_observed_probes_are_shown_and_never_judged(tmp_path):
    card = ReportCard(tmp_path / "report.json")
    longer = (Score.of([10.0, 12.0, 11.0]), Score.of([30.0, 32.0, 31.0]))
    card.record("dpo", {"preference_accuracy": (rate(0, 0, 1), rate(0, 0, 0))}, observed={"reply_length": longer})
    again = ReportCard(card.path)
    assert again.role("dpo", "reply_length") == "observed"
    assert [(v["metric"], v["ok"]) for v in again.verdicts()] == [("preference_accuracy", False), ("reply_length", None)]
    assert again.failures("dpo") == [again.failures("dpo")[0]] and "preference_accuracy" in again.failures("dpo")[0]
    assert "| dpo | reply length (observed) | · | 3 | 11.000 [" in again.to_markdown()
    assert again.data["dpo"]["observed"]["reply_length"]["change"] == pytest.approx(20.0)


def test_rerunning_a_stage_drops_later_stages(tmp_path):
    card = ReportCard(tmp_path / "report.json")
    pair = (rate(0, 1), rate(1, 1))
    card.record("pretrain", {"a": pair})
    card.record("sft", {"b": pair})
    card.record("dpo", {"c": pair})
    card.record("sft", {"b": pair})
    assert list(card.data) == ["pretrain", "sft"]


def test_improved_means_beyond_the_interval(tmp_path):
    card = ReportCard(tmp_path / "report.json")
    n = 200
    big = (rate(*[0] * n), rate(*[1] * 60 + [0] * (n - 60)))  # 0% -> 30%
    tiny_gain = (rate(*[1] * 50 + [0] * 150), rate(*[1] * 52 + [0] * 148))  # 25% -> 26%: within noise
    fall = (rate(*[1] * 100 + [0] * 100), rate(*[1] * 90 + [0] * 110))  # 50% -> 45%
    card.record("sft", {"big": big, "tiny_gain": tiny_gain}, guards={"fall": fall})
    ok = {v["metric"]: v["ok"] for v in card.verdicts()}
    assert ok == {"big": True, "tiny_gain": False, "fall": True}
    assert not ReportCard(card.path).verdicts(guard_margin=0.05)[-1]["ok"]  # -5 points: not ruled out
    failures = card.failures("sft")
    assert len(failures) == 1 and failures[0].startswith("tiny_gain (target): 0.250 -> 0.260, change +0.010 [")
    # a loss improves when it falls: the interval's upper end must be below 0
    assert verdict("heldout_loss", {"change_ci": [-2.0, -0.1]}, "target")
    assert not verdict("heldout_loss", {"change_ci": [-2.0, 0.1]}, "target")
    assert not verdict("accuracy", {"change_ci": [0.0, 0.3]}, "target")


def test_before_after_table_shows_n_and_intervals():
    table = before_after_table({"fact_qa_accuracy": (rate(0, 0, 1, 0), rate(1, 1, 1, 0))}, "SFT")
    head, _, row, _, note = table.splitlines()
    assert "before SFT" in head and "change" in head and "95% interval" in note
    assert row.startswith("| fact qa accuracy | 4 | 25.0% [4.6%, 69.9%] | 75.0% [30.1%, 95.4%] | +50.0 pt [")


def test_in_range_names_the_number_and_the_range():
    in_range("x", 0.5, 0.4, 0.6)
    with pytest.raises(AssertionError, match=r"x = 0.7000 is outside the range the text quotes, \[0.4, 0.6\]"):
        in_range("x", 0.7, 0.4, 0.6)


def test_in_range_records_instead_of_asserting_when_asked(tmp_path, monkeypatch):
    record = tmp_path / "quoted.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(record))
    in_range("x", 0.7, 0.4, 0.6)  # outside, recorded: the seeds' runs go on
    in_range("y", 0.5, 0.4, 0.6)
    lines = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"what": "x", "value": 0.7, "quoted": [0.4, 0.6], "inside": False},
                     {"what": "y", "value": 0.5, "quoted": [0.4, 0.6], "inside": True}]


# ---- grading replies ----------------------------------------------------------------------------
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(["The capital is Vomere. 首都是沃梅尔。 1 2 3 4 5 6 7 8 9 0"] * 20, vocab_size=300)


def test_items_are_graded_by_the_rewards_rule():
    fact = {"answer": "Vomere", "answers": {"en": "Vomere", "zh": "沃梅尔"}, "mentions": ["Dalaland", "达拉兰"]}
    assert item_is_right(fact, "The capital of Dalaland is Vomere.")
    assert item_is_right(fact, "达拉兰的首都是沃梅尔。")  # either language
    assert not item_is_right(fact, "The capital of Sadavia is Vomere.")  # not about the country asked
    total = {"answer": "6", "operands": [0, 2, 4]}
    assert item_is_right(total, "0 + 2 + 4 = 6.")
    assert not item_is_right(total, "0 加 3 加 3 等于 6。")  # the right total from the wrong operands
    assert not item_is_right({"answer": "7"}, "the answer is 17")
    assert not item_is_right({"answer": "5"}, "0 + 5 = 7")  # an operand is not the answer


def test_qa_scores_accuracy_and_template_compliance():
    tok = tokenizer()
    items = [
        {"answer": "7", "operands": [3, 4]},
        {"answer": "Vomere", "answers": {"en": "Vomere", "zh": "沃梅尔"}},
        {"answer": "9"},
        {"answer": "5"},
    ]
    replies = ["3 + 4 = 7.<|im_end|>", "首都是沃梅尔。<|im_end|>", "9<|im_end|><|im_start|>user", "it is 15"]
    scores = qa_scores(tok, items, replies)
    assert scores["accuracy"].value == 3 / 4  # "15" does not answer 5; the zh answer is accepted
    assert scores["template_compliance"].value == 2 / 4  # text after the end marker, and no end marker
    assert scores["accuracy"].n == 4


# ---- held-out loss and bits per byte ------------------------------------------------------------
def small_model(tok) -> MiniMindForCausalLM:
    torch.manual_seed(0)
    config = MiniMindConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64)
    return MiniMindForCausalLM(config).eval()


def test_bits_per_byte_by_hand_on_a_fixed_string():
    tok = tokenizer()
    model = small_model(tok)
    text = "首都是沃梅尔。 The capital is 7."
    ids = tok(ENDOFTEXT + text + ENDOFTEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    # every token after the leading end marker is predicted, the closing marker included
    nats = sum(-torch.log_softmax(logits[t], -1)[ids[t + 1]].item() for t in range(len(ids) - 1))
    n_bytes = len(text.encode("utf-8"))  # the closing marker is not text: 0 bytes
    result = heldout_loss(model, tok, [text], max_length=64)
    assert result["loss"].value == pytest.approx(nats / (len(ids) - 1), rel=1e-5)
    assert result["bits_per_byte"].value == pytest.approx(nats / (math.log(2) * n_bytes), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nats / (len(ids) - 1)), rel=1e-5)
    assert result["bits_per_byte"].den == (n_bytes,)


def test_bits_per_byte_counts_no_bytes_for_special_tokens_and_follows_batching():
    tok = tokenizer()
    nbytes = text_bytes(tok)
    assert [nbytes[tok.convert_tokens_to_ids(t)].item() for t in tok.all_special_tokens] == [0] * 3
    assert sum(nbytes[i].item() for i in tok("沃梅尔", add_special_tokens=False)["input_ids"]) == 9
    model = small_model(tok)
    texts = ["The capital is Vomere.", "首都是沃梅尔。", "1 2 3"]
    together = heldout_loss(model, tok, texts, max_length=64, batch_size=3)
    apart = heldout_loss(model, tok, texts, max_length=64, batch_size=1)  # no padding
    assert together["bits_per_byte"].den == tuple(float(len(t.encode())) for t in texts)
    assert together["bits_per_byte"].value == pytest.approx(apart["bits_per_byte"].value, rel=1e-5)
    cut = heldout_loss(model, tok, ["The capital is Vomere. " * 10], max_length=8)
    assert cut["bits_per_byte"].den[0] < len(("The capital is Vomere. " * 10).encode())  # only what is predicted


def test_assistant_loss_by_hand_on_one_conversation():
    from minimind_lib.evals import assistant_loss

    tok = tokenizer()
    model = small_model(tok)
    chat = [{"role": "user", "content": "首都是？"}, {"role": "assistant", "content": "The capital is Vomere."}]
    enc = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    by_hand = [-logp[t - 1, ids[t]].item() for t in range(1, len(ids)) if mask[t]]
    score = assistant_loss(model, tok, [chat, chat[:1] + [{"role": "assistant", "content": "7"}]], max_length=64)
    assert score.n == 2 and score.num[0] == pytest.approx(sum(by_hand), rel=1e-5)
    assert score.den[0] == len(by_hand) == sum(mask)  # the reply and its <|im_end|>
    with pytest.raises(ValueError, match="no assistant token within the first 3 tokens"):
        assistant_loss(model, tok, [chat], max_length=3)


def test_reply_length_repetition_and_kl_to_the_reference_by_hand():
    from minimind_lib.evals import kl_to_reference, repetition_rate, reply_lengths

    tok = tokenizer()
    replies = ["The capital is Vomere.<|im_end|><|im_start|>user", "1 2 1 2 1 2", "", "\n" * 9]
    lengths = [len(tok("The capital is Vomere.", add_special_tokens=False)["input_ids"]),
               len(tok("1 2 1 2 1 2", add_special_tokens=False)["input_ids"]), 0,
               len(tok("\n" * 9, add_special_tokens=False)["input_ids"])]
    assert reply_lengths(tok, replies).num == tuple(float(n) for n in lengths) and lengths[3] > 0
    rates = repetition_rate(tok, replies).num
    assert rates[0] == 0.0 and rates[1] > 0.3 and rates[2] == 0.0
    assert not reply_lengths(tok, ["", "a"]).is_rate  # a mean: a bootstrap interval, not Wilson's
    model, other = small_model(tok), small_model(tok)
    torch.manual_seed(1)
    for p in other.parameters():
        p.data += 0.05 * torch.randn_like(p)
    prompt, reply = "首都是？", "The capital is 7."
    assert kl_to_reference(model, small_model(tok), tok, [prompt], [reply]).value == 0.0  # the same weights
    ids = tok(prompt, add_special_tokens=False)["input_ids"] + tok(reply, add_special_tokens=False)["input_ids"]
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
        logq = other(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    by_hand = [(logp[t].exp() * (logp[t] - logq[t])).sum().item() for t in range(n_prompt - 1, len(ids) - 1)]
    score = kl_to_reference(model, other, tok, [prompt, "1 2"], [reply, "3"], batch_size=2)  # padded batch
    assert score.den[0] == len(by_hand) and score.num[0] == pytest.approx(sum(by_hand), rel=1e-4)
    assert score.value > 0
