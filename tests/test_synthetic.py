"""The embedded synthetic dataset (minimind_lib.synthetic)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from minimind_lib import data, synthetic
from minimind_lib.data import DataError, read_jsonl, validate_file
from minimind_lib.profiles import DATA_FILES
from minimind_lib.synthetic import generate, reply_language

TRAINING = tuple(DATA_FILES)  # pretrain, sft, dpo, rlaif


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("synthetic"), seed=42)


@pytest.fixture(scope="module")
def world():
    return synthetic.build_world(42)


@pytest.fixture(scope="module")
def training_text(generated) -> str:
    kinds = (*TRAINING, "sft_tools")  # the tool chats are training data too (scripts/tool_sft.py)
    return "\n".join(generated[kind].read_text(encoding="utf-8") for kind in kinds)


def user_turns(path: Path) -> list[str]:
    rows = read_jsonl(path)
    conversations = [r.get("conversations") or r["chosen"] for r in rows]
    return [m["content"] for conv in conversations for m in conv if m["role"] == "user"]


def occurs_after_non_digit(text: str, needle: str) -> bool:
    """`needle` in `text`, not as the tail of a longer number ("0 + 5" inside "10 + 5")."""
    start = text.find(needle)
    while start != -1:
        if start == 0 or not text[start - 1].isdigit():
            return True
        start = text.find(needle, start + 1)
    return False


def test_same_seed_gives_byte_identical_files(generated, tmp_path):
    again = generate(tmp_path / "again", seed=42)
    assert set(again) == set(generated)
    for kind, path in generated.items():
        assert again[kind].read_bytes() == path.read_bytes(), kind


def test_another_seed_gives_other_files(generated, tmp_path):
    other = generate(tmp_path / "other", seed=7)
    for kind in (*TRAINING, "eval_qa", "eval_math"):
        assert other[kind].read_bytes() != generated[kind].read_bytes(), kind


def test_every_training_file_passes_the_validator(generated):
    for kind in TRAINING:
        assert data.infer_kind(generated[kind]) == kind
        report = validate_file(generated[kind])
        assert report.ok, report.problems[:3]
        assert report.kind == kind and report.rows > 1000


def test_sizes_stay_small(generated):
    assert 2_000 <= len(read_jsonl(generated["pretrain"])) <= 20_000
    assert generated["pretrain"].stat().st_size < 5 * 2**20
    assert sum(p.stat().st_size for p in generated.values()) < 10 * 2**20


def test_world_has_unique_bilingual_names(world):
    names = [c[key] for c in world.countries for key in ("name", "capital")]
    assert len(world.countries) == 24
    for lang in ("en", "zh"):
        assert len({n[lang] for n in names}) == len(names)
    assert all(re.fullmatch(r"[\u4e00-\u9fff]+", n.zh) and n.en.isascii() for n in names)


def test_sft_answers_in_the_users_language_about_half_the_time(generated):
    same = total = 0
    for row in read_jsonl(generated["sft"]):
        turns = row["conversations"]
        for question, answer in zip(turns, turns[1:], strict=False):
            if question["role"] == "user" and answer["role"] == "assistant":
                total += 1
                same += reply_language(answer["content"]) == reply_language(question["content"])
    assert 0.4 < same / total < 0.6


def test_dpo_prefers_the_users_language(generated):
    pairs = data.load_dpo(generated["dpo"], cache_dir=generated["dpo"].parent / "cache")
    for pair in pairs.select(range(200)):
        lang = reply_language(pair["prompt"][-1]["content"])
        assert reply_language(pair["chosen"][0]["content"]) == lang
        assert reply_language(pair["rejected"][0]["content"]) != lang
    for pair in read_jsonl(generated["eval_dpo"]):
        assert reply_language(pair["chosen"][0]["content"]) == pair["lang"]
        assert reply_language(pair["rejected"][0]["content"]) != pair["lang"]


def test_rlaif_is_minimind_shaped_with_aligned_answers(generated, world):
    rows = read_jsonl(generated["rlaif"])
    answers = read_jsonl(generated["rlaif_answers"])
    assert len(rows) == len(answers)
    for row, answer in zip(rows, answers, strict=True):
        user, placeholder = row["conversations"]
        assert user["role"] == "user" and placeholder == {"role": "assistant", "content": "无"}
        assert answer["lang"] == reply_language(user["content"])
        numbers = re.findall(r"\d+", user["content"])
        if numbers:  # a two-step sum
            assert answer["answer"] == [str(sum(map(int, numbers)))]
            assert answer["operands"] == [int(n) for n in numbers]
        assert not numbers or answer["mentions"] == []
    facts = {(f.value.en, f.value.zh) for f in world.rl_facts}
    countries = {(f.country.en, f.country.zh) for f in world.rl_facts}
    for a in answers:
        if a["mentions"]:
            assert tuple(a["mentions"]) in countries or tuple(a["mentions"][::-1]) in countries
    fact_answers = [tuple(a["answer"]) for a in answers if not a["answer"][0].isdigit()]
    assert 0.4 < len(fact_answers) / len(answers) < 0.6
    assert {a if a in facts else a[::-1] for a in fact_answers} <= facts


def test_rl_facts_are_asked_only_in_rlaif_and_only_in_some_phrasings(generated, world, training_text):
    assert not {f.key for f in world.rl_facts} & {f.key for f in world.held_out_facts}
    phrasings = range(len(synthetic.QUESTIONS["capital"]["en"]))
    rl_questions = {f.question(lang, t) for f in world.rl_facts for lang in ("en", "zh") for t in phrasings}
    asked = set(user_turns(generated["sft"]) + user_turns(generated["dpo"]) + user_turns(generated["sft_tools"]))
    assert not asked & rl_questions
    rlaif = set(user_turns(generated["rlaif"]))
    used = {f.question(lang, t) for f in world.rl_facts for lang in ("en", "zh") for t in synthetic.RL_QUESTIONS}
    assert rl_questions & rlaif == used  # every RL phrasing is used, and no other
    probe = read_jsonl(generated["eval_rl_qa"])
    assert len(probe) == len(world.rl_facts) * 2 * (len(phrasings) - len(synthetic.RL_QUESTIONS)) >= 200
    for item in probe:
        question = item["messages"][0]["content"]
        assert question in rl_questions and question not in training_text, question


def test_fact_probes_in_a_seen_and_in_unseen_phrasings(generated, world, training_text):
    pretrain = generated["pretrain"].read_text(encoding="utf-8")
    probes = read_jsonl(generated["eval_facts"])
    seen = [p for p in probes if p["phrasing"] == "seen"]
    unseen = [p for p in probes if p["phrasing"] == "unseen"]
    assert len(seen) == 2 * len(world.facts) and len(unseen) == 2 * len(seen)
    for probe in probes:
        joiner = " " if probe["lang"] == "en" else ""
        # the canonical sentence is in the pretraining text; the other phrasings are in no training file
        assert (probe["prompt"] + joiner + probe["answer"] in pretrain) == (probe["phrasing"] == "seen"), probe
        assert (probe["prompt"] in training_text) == (probe["phrasing"] == "seen"), probe
    assert sum(p["qa_held_out"] for p in seen) == 2 * len(world.held_out_facts)
    assert len({p["group"] for p in probes}) == len(world.facts)


def test_pretraining_documents_are_all_different(generated):
    from minimind_lib.heldout import normalise

    texts = [row["text"] for row in read_jsonl(generated["pretrain"])]
    assert len({normalise(t) for t in texts}) == len(texts) == synthetic.N_PRETRAIN


def test_held_out_facts_are_never_asked_in_training(generated, world, training_text):
    assert 0.15 < len(world.held_out_facts) / len(world.facts) < 0.25
    for fact in world.held_out_facts:
        for lang in ("en", "zh"):
            for template in range(len(fact.questions[lang])):
                assert fact.question(lang, template) not in training_text
    asked = set(user_turns(generated["sft"]) + user_turns(generated["dpo"]) + user_turns(generated["sft_tools"]))
    eval_questions = [item["messages"][0]["content"] for item in read_jsonl(generated["eval_qa"])]
    assert len(eval_questions) >= 200 and not asked & set(eval_questions)
    eval_prompts = {pair["prompt"][0]["content"] for pair in read_jsonl(generated["eval_dpo"])}
    assert not asked & eval_prompts


def test_held_out_sums_never_appear_in_training(generated, world, training_text):
    # The whole addition table is taught: every pair a + b = s is stated somewhere.
    table = {tuple(map(int, m)) for m in re.findall(r"(?<!\+ )(?<!\d)(\d+) \+ (\d+) = (\d+)", training_text)}
    assert {(a, b, a + b) for a in range(10) for b in range(10)} <= table
    assert all(a + b == s for a, b, s in table)
    held_triples = {s.operands for s in world.held_out_sums}
    assert held_triples and all(len(t) == 3 for t in held_triples)
    triples = re.findall(r"(\d+)\s*(?:\+|plus|加)\s*(\d+)\s*(?:\+|plus|加)\s*(\d+)", training_text)
    assert triples and not {tuple(map(int, t)) for t in triples} & held_triples
    # Worked replies "a + b = x, then x + c = s" only for trained two-step sums.
    worked = re.findall(r"(\d+) (?:\+|加) (\d+) (?:=|等于) (\d+)(?:, then |，)\3 (?:\+|加) (\d+) (?:=|等于) (\d+)",
                        training_text)
    assert len(worked) > 100
    assert not {(int(a), int(b), int(c)) for a, b, _, c, _ in worked} & held_triples
    math = read_jsonl(generated["eval_math"])
    assert {item["steps"] for item in math} == {2} and len(math) == 2 * len(held_triples) >= 190
    for item in math:
        question = item["messages"][0]["content"]
        assert not occurs_after_non_digit(training_text, question), question
        operands = [int(n) for n in re.findall(r"\d+", question)]
        assert item["operands"] == operands and 0 not in operands  # no one-step sum in disguise
        assert item["answer"] == str(sum(operands))
    assert {item["lang"] for item in math} == {"en", "zh"}


def test_reply_language():
    assert reply_language("瓦洛里亚的首都是诺维克。") == "zh"
    assert reply_language("瓦洛里亚的首都是Norvik。") == "zh"
    assert reply_language("The capital of Valoria is Norvik.") == "en"
    assert reply_language("3 加 5 等于 8。") == "zh"
    assert reply_language("3 plus 5 equals 8.") == "en"
    assert reply_language("The capital of 瓦洛里亚 is Norvik, as everyone knows.") == "en"


class FakeProfile:
    """The parts of a Profile that ensure_dataset reads, pointing into a temp dir."""

    def __init__(self, data_dir: Path, data_kind: str = "synthetic", seed: int = 42):
        self.data_dir, self.data, self.data_seed = data_dir, data_kind, seed

    def data_file(self, kind: str) -> Path:
        return self.data_dir / DATA_FILES[kind]


def test_ensure_dataset_generates_once_and_again_when_stale(tmp_path):
    profile = FakeProfile(tmp_path / "synthetic")
    assert synthetic.ensure_dataset(profile) == profile.data_dir
    sft = profile.data_file("sft")
    first = sft.stat().st_mtime_ns
    synthetic.ensure_dataset(profile)
    assert sft.stat().st_mtime_ns == first  # up to date: not rewritten

    (profile.data_dir / synthetic.VERSION_FILE).write_text("an older version\n")
    synthetic.ensure_dataset(profile)
    assert sft.stat().st_mtime_ns != first
    assert (profile.data_dir / synthetic.VERSION_FILE).read_text().startswith("minimind synthetic")


def test_ensure_dataset_on_real_data_only_checks_files(tmp_path):
    profile = FakeProfile(tmp_path, data_kind="real")
    with pytest.raises(DataError, match=r"python -m minimind_lib\.data download"):
        synthetic.ensure_dataset(profile)
    for kind in DATA_FILES:
        profile.data_file(kind).write_text(json.dumps({"text": "x"}) + "\n")
    assert synthetic.ensure_dataset(profile) == tmp_path
    assert not (tmp_path / synthetic.VERSION_FILE).exists()
