"""Report card and probe scoring."""

from transformers import PreTrainedTokenizerFast

from minimind_lib.evals import ReportCard, contains_answer, qa_scores
from minimind_lib.tokenizer import train_tokenizer


def test_report_card_round_trip_and_markdown(tmp_path):
    card = ReportCard(tmp_path / "report.json")
    card.record("pretrain", {"heldout_loss": (6.9, 0.6)}, steps=10)
    card.record("sft", {"qa_accuracy": (0.0, 0.5)})
    again = ReportCard(tmp_path / "report.json")
    assert again.data["pretrain"]["metrics"]["heldout_loss"] == {"before": 6.9, "after": 0.6}
    assert again.data["pretrain"]["facts"] == {"steps": 10}
    md = (tmp_path / "report.md").read_text()
    assert "| pretrain | heldout_loss | 6.900 | 0.600 |" in md
    assert md.index("pretrain") < md.index("| sft")


def test_guards_are_recorded_apart_and_marked(tmp_path):
    card = ReportCard(tmp_path / "report.json")
    card.record("grpo", {"fact_qa_sampled_accuracy": (0.3, 0.4)},
                guards={"sums_greedy_accuracy": (0.12, 0.10)}, steps=5)
    again = ReportCard(tmp_path / "report.json")
    assert again.data["grpo"]["guards"] == {"sums_greedy_accuracy": {"before": 0.12, "after": 0.10}}
    assert again.data["grpo"]["facts"] == {"steps": 5}
    assert [r[1] for r in again.rows()] == ["fact_qa_sampled_accuracy", "sums_greedy_accuracy"]
    assert again.role("grpo", "sums_greedy_accuracy") == "guard"
    assert again.role("grpo", "fact_qa_sampled_accuracy") == "target"
    assert "| grpo | sums_greedy_accuracy (guard) | 0.120 | 0.100 |" in again.to_markdown()
    card.record("sft", {"b": (0, 1)})  # no guards: no empty entry either
    assert "guards" not in card.data["sft"]


def test_rerunning_a_stage_drops_later_stages(tmp_path):
    card = ReportCard(tmp_path / "report.json")
    card.record("pretrain", {"a": (1, 0)})
    card.record("sft", {"b": (0, 1)})
    card.record("dpo", {"c": (0, 1)})
    card.record("sft", {"b": (0, 0.9)})
    assert list(card.data) == ["pretrain", "sft"]


def test_numbers_must_stand_alone():
    assert contains_answer("3 + 4 = 7.", "7")
    assert not contains_answer("the answer is 17", "7")
    assert contains_answer("七加三等于10。", "10")
    assert not contains_answer("0 + 5 = 7", "5")  # an operand is not the answer
    assert contains_answer("The capital is Vomere.", "Vomere")


def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(["The capital is Vomere. 首都是沃梅尔。 1 2 3 4 5 6 7 8 9 0"] * 20, vocab_size=300)


def test_qa_scores_accuracy_and_template_compliance():
    tok = tokenizer()
    items = [
        {"answer": "7"},
        {"answer": "Vomere", "answers": {"en": "Vomere", "zh": "沃梅尔"}},
        {"answer": "9"},
        {"answer": "5"},
    ]
    replies = ["3 + 4 = 7.<|im_end|>", "首都是沃梅尔。<|im_end|>", "9<|im_end|><|im_start|>user", "it is 15"]
    scores = qa_scores(tok, items, replies)
    assert scores["accuracy"] == 3 / 4  # "15" does not contain the answer 5; zh answer accepted
    assert scores["template_compliance"] == 2 / 4  # text after the end marker, and no end marker
