"""The multiple-choice knowledge probe: its items, and its scoring checked by hand."""

import pytest
import torch
from test_evals import small_model, tokenizer

from minimind_lib import knowledge
from minimind_lib.heldout import normalise


def test_items_are_bilingual_questions_with_four_distinct_choices():
    items = knowledge.items()
    assert len(items) >= 200
    by_group = {}
    for it in items:
        by_group.setdefault(it["group"], []).append(it)
        assert len(set(it["choices"])) == 4 and 0 <= it["answer"] < 4
        assert it["prompt"] == knowledge.PROMPTS[it["lang"]].format(question=it["question"])
    assert all(sorted(it["lang"] for it in group) == ["en", "zh"] for group in by_group.values())
    assert len({normalise(it["question"]) for it in items}) == len(items)  # no question twice
    assert {it["category"] for it in items} == {"fact", "common_sense", "arithmetic"}
    positions = [it["answer"] for it in items]
    assert max(positions.count(k) for k in range(4)) < 0.3 * len(items)  # the right choice moves around
    sums = [it for it in items if it["category"] == "arithmetic" and it["lang"] == "en"]
    assert all(eval(it["question"][8:-1].replace("plus", "+").replace("minus", "-").replace("times", "*"))
               == int(it["choices"][it["answer"]]) for it in sums)


def test_a_question_found_in_training_text_is_left_out():
    items = knowledge.items()
    kept, leaked = knowledge.heldout_items(["Some text.", "Q: how many legs does a SPIDER have?  A: 8", "无关"])
    assert leaked == ["How many legs does a spider have?"]
    assert len(kept) == len(items) - 1 and all(it["question"] != leaked[0] for it in kept)


def test_choice_scores_by_hand_and_the_pick_per_byte():
    tok = tokenizer()
    model = small_model(tok)
    item = {"prompt": "Question: What is 3 plus 4?\nAnswer:", "choices": ["7", "8", "Vomere", "1 2"], "answer": 0,
            "lang": "en", "group": 0}
    logps = knowledge.choice_logps(model, tok, [item, {**item, "lang": "zh", "prompt": "问题：首都是？\n答案："}],
                                   batch_size=3)  # rows of both items share batches
    prompt = tok(item["prompt"], add_special_tokens=False)["input_ids"]
    for choice, got in zip(item["choices"], logps[0], strict=True):
        ids = prompt + tok(" " + choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
        assert got == pytest.approx(sum(lp[t - 1, ids[t]].item() for t in range(len(prompt), len(ids))), rel=1e-5)
    # per byte: -3 over " 7" (2 bytes) loses to -4 over " Vomere" (7 bytes)
    assert knowledge.picks([item], [[-3.0, -9.0, -4.0, -9.0]]) == [2]
    score = knowledge.accuracy(model, tok, [item] * 3)
    assert score.n == 3 and score.value in (0.0, 1.0) and score.groups == (0, 0, 0)
