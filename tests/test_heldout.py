"""No evaluation item occurs in a training file (minimind_lib.heldout over the synthetic set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset

from minimind_lib import heldout, synthetic
from minimind_lib.data import load_pretrain, read_jsonl
from minimind_lib.profiles import TINY


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return synthetic.generate(tmp_path_factory.mktemp("synthetic"), seed=TINY.data_seed)


@pytest.fixture(scope="module")
def split(files):
    """03's split of the pretraining file: (training documents, held-out documents)."""
    docs = load_pretrain(files["pretrain"], cache_dir=files["pretrain"].parent / "cache")
    train, test, dropped = heldout.split_pretraining(docs, seed=TINY.data_seed)
    assert dropped == 0  # the generator writes no document twice
    return train["text"], test["text"]


@pytest.fixture(scope="module")
def units(files, split) -> list[str]:
    """Everything any stage trains on: 03's training documents and every SFT/DPO/RLAIF message."""
    return heldout.training_units(files, pretrain_texts=split[0])


def completion(item: dict) -> str:
    return item["prompt"] + (" " if item["lang"] == "en" else "") + item["answer"]


def eval_items(files, split) -> dict[str, list[str]]:
    """Each stage's evaluation set as the texts a model is asked or scored on."""
    facts = read_jsonl(files["eval_facts"])
    return {
        "pretraining held-out documents": list(split[1]),
        "fact completion, unseen phrasing": [completion(f) for f in facts if f["phrasing"] == "unseen"],
        "fact QA": [it["messages"][-1]["content"] for it in read_jsonl(files["eval_qa"])],
        "RL fact QA": [it["messages"][-1]["content"] for it in read_jsonl(files["eval_rl_qa"])],
        "sums": [it["messages"][-1]["content"] for it in read_jsonl(files["eval_math"])],
        "preference pairs": [p["prompt"][-1]["content"] for p in read_jsonl(files["eval_dpo"])],
    }


def test_normalise_ignores_case_spaces_and_punctuation():
    assert heldout.normalise("The capital of X is  Y.") == heldout.normalise("the capital of x is y")
    assert heldout.normalise("3 + 4 = 7。") == "3 4 7"
    assert heldout.normalise("巴玛兰的首都是科塔维克。") == heldout.normalise("巴玛兰的首都是科塔维克")
    assert heldout.normalise("ａｂｃ！") == "abc"  # full-width forms (NFKC)
    assert heldout.normalise("a b") != heldout.normalise("ab")


def test_deduplicate_keeps_the_first_copy():
    docs = Dataset.from_dict({"text": ["One doc.", "Two docs!", "one DOC", "Three.", "two docs"]})
    unique, dropped = heldout.deduplicate(docs)
    assert dropped == 2 and unique["text"] == ["One doc.", "Two docs!", "Three."]


def test_a_repeated_document_never_lands_on_both_sides_of_the_split():
    texts = [f"Document {i}." for i in range(50)] * 4 + [f"document {i}" for i in range(50)]
    train, test, dropped = heldout.split_pretraining(Dataset.from_dict({"text": texts}), seed=0, test_size=0.2)
    assert dropped == 200 and len(train) + len(test) == 50
    assert not {heldout.normalise(t) for t in train["text"]} & {heldout.normalise(t) for t in test["text"]}


def test_every_evaluation_set_is_disjoint_from_every_training_file(files, split, units):
    sets = eval_items(files, split)
    assert {k: len(v) for k, v in sets.items()} == {
        "pretraining held-out documents": 240, "fact completion, unseen phrasing": 384, "fact QA": 200,
        "RL fact QA": 200, "sums": 194, "preference pairs": 394}
    for name, items in sets.items():
        # a held-out document is compared whole; a prompt or question must not occur anywhere in training
        found = heldout.leaks(items, units, inside=name != "pretraining held-out documents")
        assert not found, f"{name}: {len(found)} of {len(items)} occur in training, e.g. {found[:2]}"


def test_knowledge_questions_found_in_training_files_are_named(units, tmp_path):
    import real_format

    from minimind_lib import knowledge

    questions = knowledge.statements(knowledge.items())
    # the fixture's SFT file asks two of the probe's questions, word for word
    assert heldout.leaks(questions, heldout.training_units(real_format.write(tmp_path))) == [
        "What is the capital of France?", "How many legs does a spider have?"]
    # the synthetic SFT file asks small sums in the probe's own words
    kept, leaked = knowledge.heldout_items(units)
    assert "What is 2 plus 3?" in leaked and len(kept) + len(leaked) == len(questions)
    assert all(q.startswith("What is ") or "等于多少" in q for q in leaked)


def test_the_seen_phrasing_is_labelled_as_a_sentence_pretraining_contains(files, units):
    seen = [completion(f) for f in read_jsonl(files["eval_facts"]) if f["phrasing"] == "seen"]
    assert len(seen) == 192 and heldout.leaks(seen, units) == seen


def test_a_deliberately_leaked_item_is_found(files, split, units):
    question = read_jsonl(files["eval_qa"])[0]["messages"][0]["content"]
    document = split[1][0]
    # the question quoted in a training chat, and the document trained on in another spelling
    leaked = [*units, f"Teacher: {question.upper()} Student: I do not know.", document.lower().replace(".", " !")]
    assert heldout.leaks([question, "an item nobody trained on"], leaked) == [question]
    assert heldout.leaks([document], leaked, inside=False) == [document]
    assert heldout.leaks([document], units, inside=False) == []


def test_training_units_read_every_message_of_every_file(files, tmp_path):
    paths = {kind: tmp_path / f"{kind}.jsonl" for kind in ("pretrain", "sft", "dpo", "rlaif")}
    rows = {
        "pretrain": [{"text": "a document"}],
        "sft": [{"conversations": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]}],
        "dpo": [{"chosen": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "good"}],
                 "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "bad"}]}],
        "rlaif": [{"conversations": [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "无"}]}],
    }
    for kind, path in paths.items():
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[kind]), encoding="utf-8")
    assert heldout.training_units(paths) == ["a document", "q1", "a1", "q2", "good", "q2", "bad", "q3"]
