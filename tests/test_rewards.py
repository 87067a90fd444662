"""Rewards: math-verify and format checks in zh and en, the reward-model wrapper, the missing model."""

from __future__ import annotations

import pytest
import torch

from minimind_lib.model import MiniMindConfig, MiniMindForSequenceClassification
from minimind_lib.rewards import (
    REWARD_MODEL_DIR,
    RewardModelMissing,
    RewardModelScorer,
    answer_reward,
    format_reward,
    is_right,
    language_reward,
    math_reward,
    repeated_ngram_share,
    restates_operands,
    rule_rewards,
)
from minimind_lib.tokenizer import train_tokenizer


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# ---- math_reward ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply, answer, expected",
    [
        ("3 + 4 = 7.", "7", 1.0),
        ("3 plus 4 equals 7.", "7", 1.0),
        ("3 加 4 等于 7。", "7", 1.0),
        ("3加4等于7。", "7", 1.0),  # digits glued to Chinese characters
        ("把 12 和 5 加起来得到 17。", "17", 1.0),
        ("The sum of 12 and 5 is 17.", 17, 1.0),  # an int answer column works too
        ("3 + 4 = 8.", "7", 0.0),
        ("3 加 4 等于 8。", "7", 0.0),
        ("The answer is 17.", "7", 0.0),  # 7 inside 17 is not 7
        ("3 + 4 = 7. 3 + 4 = 8.", "7", 0.0),  # the last answer counts
        ("3 + 4", "7", 0.0),  # restating the question is not an answer
        ("我不知道。", "7", 0.0),
        ("", "7", 0.0),
    ],
)
def test_math_reward(reply, answer, expected):
    assert math_reward([chat(reply)], answer=[answer]) == [expected]


def test_math_reward_takes_strings_and_batches():
    rewards = math_reward(["1 + 1 = 2.", "1 + 2 = 4.", "2 加 2 等于 4。"], answer=["2", "3", "4"], lang=["en"] * 3)
    assert rewards == [1.0, 0.0, 1.0]


def test_math_reward_needs_one_answer_per_completion():
    with pytest.raises(ValueError):
        math_reward([chat("1 + 1 = 2.")], answer=["2", "3"])


# ---- format_reward -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "accepted", "expected"),
    [
        ("The national animal of Dalaland is the panda.", ["panda", "熊猫"], 1.0),
        ("达拉兰的国兽是熊猫。", ["panda", "熊猫"], 1.0),  # the other language counts too
        ("达拉兰的国兽是熊猫。", "熊猫", 1.0),  # one answer as a plain string
        ("The national animal of Dalaland is the Panda.", ["panda"], 1.0),
        ("The national animal of Dalaland is the tiger.", ["panda", "熊猫"], 0.0),
        ("Dalaland likes pandas.", ["panda"], 0.0),  # a word, not a piece of one
        ("达拉兰的国兽是老虎。", ["panda", "熊猫"], 0.0),
        ("3 + 4 + 5 = 12.", ["12"], 1.0),  # numbers go through math-verify
        ("3 + 4 = 7，7 + 5 = 12。", ["12"], 1.0),
        ("12 + 1 = 13.", ["12"], 0.0),  # only the final answer counts
        ("", ["panda"], 0.0),
    ],
)
def test_answer_reward(reply, accepted, expected):
    assert answer_reward([[{"role": "assistant", "content": reply}]], [accepted]) == [expected]


def test_answer_reward_checks_what_the_reply_is_about():
    replies = ["The national animal of Dalaland is the panda.", "The national animal of Sadavia is the panda.",
               "达拉兰的国兽是熊猫。", "3 + 4 = 7."]
    answers = [["panda", "熊猫"]] * 3 + [["7"]]
    mentions = [["Dalaland", "达拉兰"]] * 3 + [[]]
    assert answer_reward(replies, answers, mentions=mentions) == [1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("reply", "operands", "expected"),
    [
        ("0 加 3 加 3 等于 6。", [0, 2, 4], 0.0),  # the right total from the wrong operands
        ("0 加 1 等于 1", [0, 0, 1], 0.0),  # an operand dropped
        ("0 + 2 + 4 = 6.", [0, 2, 4], 1.0),
        ("4 + 0 + 2 = 6.", [0, 2, 4], 1.0),  # any order
        ("3 + 4 = 7, then 7 + 5 = 12.", [3, 4, 5], 1.0),  # the steps written out
        ("3 加 4 等于 7，7 加 5 等于 12。", [3, 4, 5], 1.0),
        ("3 + 4 = 8, then 8 + 4 = 12.", [3, 4, 5], 0.0),  # a wrong step
        ("12。", [3, 4, 5], 1.0),  # the answer alone
        ("The sum of 3 and 9 is 12.", [3, 4, 5], 0.0),
        ("3 加 4 加 5 等于 13。", [3, 4, 5], 0.0),  # a wrong total
    ],
)
def test_a_sum_must_restate_its_own_operands(reply, operands, expected):
    total = str(sum(operands))
    assert answer_reward([reply], [[total]], operands=[operands]) == [expected]
    assert is_right(reply, total, operands=operands) == bool(expected)
    assert restates_operands(reply, operands) == (expected == 1.0 or reply.endswith("13。"))


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("3 + 4 = 7.", 1.0),
        ("3 + 4 = 8.", 1.0),  # the shape is right even when the sum is wrong
        ("3 加 4 等于 7。", 1.0),
        ("The sum of 1.5 and 2 is 3.5.", 1.0),  # decimal points do not end the sentence
        ("3 + 4 = 7", 0.0),  # not closed
        ("3 加 4 等于", 0.0),  # cut off
        ("3 + 4 = 7. 3 + 4 = 7.", 0.0),  # a second sentence
        ("3 加 4 等于 7。3 加", 0.0),
        ("The answer is seven.", 0.0),  # no final number
        ("7 是答案。", 0.0),  # the number is not last
        ("", 0.0),
    ],
)
def test_format_reward(reply, expected):
    assert format_reward([chat(reply)]) == [expected]
    assert format_reward([reply]) == [expected]  # plain-string completions too


# ---- the reward-model wrapper on a tiny random model -------------------------------------------
@pytest.fixture(scope="module")
def scorer() -> RewardModelScorer:
    tokenizer = train_tokenizer(["The capital is Vomere. 首都是沃梅尔。 1 2 3 4 5 6 7 8 9 0"] * 20, vocab_size=300)
    torch.manual_seed(0)
    config = MiniMindConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, max_position_embeddings=128, num_labels=1,
                            pad_token_id=tokenizer.pad_token_id)
    model = MiniMindForSequenceClassification(config)
    with torch.no_grad():  # a bigger head, so that scores spread beyond the clip range
        model.score.weight.mul_(200)
    return RewardModelScorer(model, tokenizer, score_range=(-1.0, 1.0), batch_size=2)


PROMPTS = [[{"role": "user", "content": q}] for q in ("What is 3 + 4?", "3 加 4 等于几？", "Capital?")]
REPLIES = [chat("3 + 4 = 7."), chat("3 加 4 等于 7。"), chat("The capital is Vomere, I think, yes.")]


def test_scores_are_one_float_per_completion_and_clipped(scorer):
    scores = scorer(REPLIES, prompts=PROMPTS)
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    raw = scorer._raw_scores([p + r for p, r in zip(PROMPTS, REPLIES, strict=True)])
    assert max(abs(r) for r in raw) > 1.0  # so the clip was really needed
    assert scores == [min(max(r, -1.0), 1.0) for r in raw]


def test_scores_are_deterministic_and_independent_of_batching(scorer):
    first = scorer(REPLIES, prompts=PROMPTS)
    assert scorer(REPLIES, prompts=PROMPTS) == first
    one_by_one = [scorer([r], prompts=[p])[0] for p, r in zip(PROMPTS, REPLIES, strict=True)]
    assert one_by_one == pytest.approx(first, abs=1e-5)  # right padding does not change a score


def test_scores_depend_on_the_reply(scorer):
    scorer_wide = RewardModelScorer(scorer.model, scorer.tokenizer, score_range=(-1e9, 1e9))
    a, b = scorer_wide([chat("3 + 4 = 7."), chat("3 + 4 = 8.")], prompts=PROMPTS[:1] * 2)
    assert a != b


def test_plain_string_prompts_and_completions(scorer):
    as_strings = scorer(["3 + 4 = 7."], prompts=["What is 3 + 4?"])
    as_chats = scorer([chat("3 + 4 = 7.")], prompts=PROMPTS[:1])
    assert as_strings == as_chats


def test_a_saved_classifier_loads_from_its_directory(scorer, tmp_path):
    scorer.model.save_pretrained(tmp_path)
    scorer.tokenizer.save_pretrained(tmp_path)
    again = RewardModelScorer.from_pretrained(tmp_path, device="cpu", score_range=(-1.0, 1.0))
    assert isinstance(again.model, MiniMindForSequenceClassification)
    assert again(REPLIES, prompts=PROMPTS) == pytest.approx(scorer(REPLIES, prompts=PROMPTS), abs=1e-5)


# ---- a missing reward model ----------------------------------------------------------------------
def test_missing_directory_is_one_clear_line(tmp_path):
    with pytest.raises(RewardModelMissing) as err:
        RewardModelScorer.from_pretrained(tmp_path / "nowhere")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message
    assert err.value._render_traceback_() == [f"RewardModelMissing: {message}"]


def test_missing_default_model_names_the_download_command(monkeypatch, tmp_path):
    import minimind_lib.rewards as rewards

    monkeypatch.setattr(rewards, "REWARD_MODEL_DIR", tmp_path / "internlm2-1_8b-reward")
    with pytest.raises(RewardModelMissing, match="hf download internlm/internlm2-1_8b-reward --revision"):
        rewards.RewardModelScorer.from_pretrained(rewards.REWARD_MODEL_DIR)
    assert REWARD_MODEL_DIR.parts[-2:] == ("model", "internlm2-1_8b-reward")


# ---- DPO's implicit reward as a probe (evals.preference_scores) ---------------------------------
def test_preference_scores_sum_reply_log_probs(scorer):
    from minimind_lib.evals import completion_logps, language_match_rate, preference_scores
    from minimind_lib.model import MiniMindForCausalLM

    tokenizer = scorer.tokenizer
    torch.manual_seed(1)
    config = MiniMindConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, max_position_embeddings=128)
    policy, reference = MiniMindForCausalLM(config), MiniMindForCausalLM(config)
    pairs = [{"prompt": PROMPTS[i], "chosen": REPLIES[i], "rejected": REPLIES[2 - i]} for i in range(3)]

    # One pair by hand: the log-probabilities of the tokens after the rendered prompt, summed.
    prompt_ids = tokenizer.apply_chat_template(PROMPTS[0], add_generation_prompt=True)["input_ids"]
    ids = tokenizer.apply_chat_template(PROMPTS[0] + REPLIES[0])["input_ids"]
    with torch.no_grad():
        logps = policy(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
    by_hand = sum(logps[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids)))
    batched = completion_logps(policy, tokenizer, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    assert batched.shape == (3,) and batched[0].item() == pytest.approx(by_hand, abs=1e-4)

    plain = preference_scores(policy, tokenizer, pairs)
    rejected = completion_logps(policy, tokenizer, [p["prompt"] for p in pairs], [p["rejected"] for p in pairs])
    assert plain["accuracy"].value == pytest.approx((batched > rejected).float().mean().item())
    assert plain["accuracy"].n == 3 and plain["margins"].shape == (3,)
    itself = preference_scores(policy, tokenizer, pairs, reference=policy)
    assert itself["accuracy"].value == 0.0 and itself["margin"] == 0.0  # a model is its own reference: no margin
    assert preference_scores(policy, tokenizer, pairs, reference=reference)["margin"] != plain["margin"]

    items = [{"lang": "en"}, {"lang": "zh"}, {"lang": "zh"}]
    rate = language_match_rate(tokenizer, items, ["3 + 4 = 7.<|im_end|>", "3 加 4 等于 7。", "It is 7."])
    assert rate.value == 2 / 3 and rate.n == 3


def test_language_reward_judges_the_script():
    replies = ["达拉兰的国兽是熊猫。", "The national animal of Dalaland is the panda.", "3 + 4 = 7。", "熊猫 panda"]
    assert language_reward(replies, ["zh", "zh", "zh", "zh"]) == [1.0, 0.0, 0.0, 1.0]
    assert language_reward(replies, ["en", "en", "en", "en"]) == [0.0, 1.0, 1.0, 0.0]


# ---- rules for prompts without an answer ---------------------------------------------------------
def test_rule_rewards_close_speak_the_language_and_do_not_repeat():
    tok = train_tokenizer(["The capital is Vomere. 首都是沃梅尔。"] * 20, vocab_size=300)
    closed, language, repetition = rule_rewards(tok)
    eos = tok.eos_token_id
    replies = ["The capital is Vomere.", "首都是沃梅尔。", "The capital", ""]
    ids = [tok.encode(r) + [eos] for r in replies[:2]] + [tok.encode(replies[2]), [eos]]
    assert closed(replies, completion_ids=ids) == [1.0, 1.0, 0.0, 0.0]  # cut off; empty
    assert language(replies, lang=["en", "en", "en", "zh"]) == [1.0, 0.0, 1.0, 0.0]
    looping = [1, 2, 3, 4] * 5
    scores = repetition(["x", "y"], completion_ids=[looping, list(range(20))])
    assert scores[1] == 1.0 and scores[0] == pytest.approx(1 - 13 / 17)  # 17 4-grams, 4 different
    assert repeated_ngram_share([1, 2, 3]) == 0.0  # too short for a 4-gram
