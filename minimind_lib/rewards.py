"""Rewards for reinforcement learning (06_grpo): verifiable checks and reward-model scores.

Every reward here has trl's reward-function signature, `f(completions, **kwargs) -> list[float]`:
`completions` are conversational (`[{"role": "assistant", "content": ...}]`) or plain strings,
and the dataset's other columns (e.g. `answer`) arrive as keyword lists, one item per completion.

- `math_reward`: 1.0 when the reply's final answer equals the reference answer (math-verify).
- `answer_reward`: the same for numbers (and a sum's operands, where it restates them), and
  for names (facts) in either language; `is_right` is its rule for one reply, which the
  probes (evals.py) grade with too.
- `language_reward`: 1.0 when the reply is in the language of the question.
- `format_reward`: 1.0 when the reply is one closed sentence that ends with its number.
- `rule_rewards(tokenizer)`: rules for any prompt, with no answer to check (the real data):
  the reply is closed by `<|im_end|>` within the length budget, in the language of the
  question, and does not repeat itself.
- `RewardModelScorer`: scores whole conversations with a reward model, either
  internlm/internlm2-1_8b-reward (the one MiniMind uses; remote code, `get_scores`) or any
  `AutoModelForSequenceClassification` such as `MiniMindForSequenceClassification`.

Nothing is downloaded here. Get the reward model once, on a machine that is online:

    hf download internlm/internlm2-1_8b-reward --revision main --local-dir model/internlm2-1_8b-reward
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from .profiles import ROOT
from .runtime import MissingArtifact

REWARD_MODEL_ID = "internlm/internlm2-1_8b-reward"
# The Hub revision the course is written against: the download command above uses it, so a
# later change of the model's remote code cannot change what the course runs.
REWARD_MODEL_REVISION = "main"
REWARD_MODEL_DIR = ROOT / "model" / "internlm2-1_8b-reward"
DOWNLOAD_COMMAND = (
    f"hf download {REWARD_MODEL_ID} --revision {REWARD_MODEL_REVISION} --local-dir {REWARD_MODEL_DIR}"
)
SCORE_RANGE = (-3.0, 3.0)  # MiniMind clips the reward model's scores to [-3, 3] as well

_CJK = "\u4e00-\u9fff"


# ---------------------------------------------------------------------------------------------
# Verifiable rewards
# ---------------------------------------------------------------------------------------------
def completion_text(completion) -> str:
    """The reply's text: a string as is, or the content of a conversational completion's last message."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""


def _parse(text: str):
    from math_verify import parse

    # Digits glued to Chinese characters ("3加4等于7。") are not found as numbers: space them out.
    text = re.sub(rf"(?<=[{_CJK}])(?=\d)|(?<=\d)(?=[{_CJK}])", " ", text)
    # math-verify's timeout uses signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    return parse(text, parsing_timeout=timeout)


def _matches(reference, reply: str) -> bool:
    from math_verify import verify

    gold, pred = _parse(str(reference)), _parse(reply)
    if not gold or not pred:
        return False
    # A reply that only restates the question ("3 + 4") parses to an unevaluated sum that
    # math-verify counts as equal to 7: a numeric answer must be stated as a number.
    if getattr(gold[0], "is_Number", False) and not getattr(pred[0], "is_Number", False):
        return False
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    return verify(gold, pred, timeout_seconds=timeout)


def math_reward(completions: Sequence, answer: Sequence, **kwargs) -> list[float]:
    """1.0 when the reply's final answer (its last number or expression) equals `answer`, else 0.0.

    Works in both languages: "3 + 4 = 7." and "3 加 4 等于 7。" both give 7. Only the last
    answer counts, so "... = 7. ... = 8." is read as 8.
    """
    return [float(_matches(ref, completion_text(c))) for c, ref in zip(completions, answer, strict=True)]


def _states(reply: str, answer: str) -> bool:
    """A name must occur in the reply: as a whole word in Latin script, anywhere in Chinese."""
    if re.search(rf"[{_CJK}]", answer):
        return answer in reply
    return re.search(rf"(?<![A-Za-z]){re.escape(answer)}(?![A-Za-z])", reply, re.IGNORECASE) is not None


def restates_operands(reply: str, operands: Sequence[int]) -> bool:
    """Whether the numbers a reply writes before its final answer are the question's operands.

    A reply may give the answer alone ("12."), restate the sum with the operands in any order
    ("3 + 4 + 5 = 12.") or write the steps out ("3 + 4 = 7, then 7 + 5 = 12.", each step
    right). Any other numbers make it wrong: "0 + 3 + 3 = 6" does not answer 0 + 2 + 4, even
    though it ends with 6.
    """
    written = [int(n) for n in re.findall(r"\d+", reply)][:-1]  # the last number is the answer
    want = sorted(int(o) for o in operands)
    if not written or sorted(written) == want:
        return True
    if len(written) == 2 * len(want) - 1:  # steps: a + b = x, then x + c (= the answer)
        a, b, first, again, *rest = written
        return a + b == first == again and sorted([a, b, *rest]) == want
    return False


def is_right(reply: str, answers: str | Sequence[str], mentions: Sequence[str] | None = None,
             operands: Sequence[int] | None = None) -> bool:
    """The rule of `answer_reward` for one reply (see there)."""
    accepted = [answers] if isinstance(answers, str) else list(answers)
    ok = any(_matches(a, reply) if _is_number(a) else _states(reply, a) for a in accepted)
    ok = ok and (not mentions or any(_states(reply, n) for n in mentions))
    return ok and (not operands or restates_operands(reply, operands))


def answer_reward(completions: Sequence, answer: Sequence, mentions: Sequence | None = None,
                  operands: Sequence | None = None, **kwargs) -> list[float]:
    """1.0 when the reply gives one of the accepted answers, else 0.0.

    Each `answer` is one accepted answer or a list of them (e.g. ["panda", "熊猫"]: either
    language counts). A number is checked like `math_reward` (the reply's final answer), and
    with `operands` (a sum's, e.g. [3, 4, 5]) every number the reply writes before it must be
    one of them or a right step (`restates_operands`). A name must occur in the reply as a
    word, so "pandas" does not answer "panda". `mentions`, when given, lists names of which the
    reply must also contain one (the country asked about), so "The national animal of Sadavia
    is the panda." does not answer a question about Dalaland. A reply listing several names
    would pass: the synthetic replies are one statement, and `format_reward` rewards exactly
    that shape.
    """
    mentions = mentions if mentions is not None else [[]] * len(completions)
    operands = operands if operands is not None else [[]] * len(completions)
    return [float(is_right(completion_text(c), accepted, names, ops))
            for c, accepted, names, ops in zip(completions, answer, mentions, operands, strict=True)]


def language_reward(completions: Sequence, lang: Sequence, **kwargs) -> list[float]:
    """1.0 when the reply is written in the language of the question (`lang`: "zh" or "en"),
    judged by its script (see `synthetic.reply_language`), else 0.0."""
    from .synthetic import reply_language

    return [float(reply_language(completion_text(c)) == want) for c, want in zip(completions, lang, strict=True)]


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?", str(text).strip()) is not None


# One sentence end: Chinese full-width marks anywhere, ASCII marks before a space or the end
# (so the point in "3.5" does not end a sentence).
_SENTENCE_END = re.compile(r"[。！？]|[.!?](?=\s|$)")
_ENDS_WITH_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?\s*[。.]$")


def _well_formed(text: str) -> bool:
    text = text.strip()
    ends = list(_SENTENCE_END.finditer(text))
    return len(ends) == 1 and ends[0].end() == len(text) and _ENDS_WITH_NUMBER.search(text) is not None


def format_reward(completions: Sequence, **kwargs) -> list[float]:
    """1.0 when the reply is exactly one sentence, closed by "." or "。", whose last word is its
    number ("3 + 4 = 7." / "3 加 4 等于 7。"), else 0.0.

    It rewards the shape of an answer, not its correctness: a reply cut off by the length
    limit, one that rambles on into a second sentence, or one that gives no final number
    earns 0. (trl decodes completions without special tokens, so whether the reply ended with
    `<|im_end|>` is not visible here; `GRPOConfig(mask_truncated_completions=True)` covers that.)
    """
    return [float(_well_formed(completion_text(c))) for c in completions]


# ---------------------------------------------------------------------------------------------
# Rules for prompts without a checkable answer
# ---------------------------------------------------------------------------------------------
def repeated_ngram_share(ids: Sequence, n: int = 4) -> float:
    """Among all runs of `n` consecutive tokens, the share that equal an earlier run (0: none)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def repetition_reward(completions: Sequence, completion_ids: Sequence, **kwargs) -> list[float]:
    """1 - the reply's repeated 4-gram share: 1.0 for a reply that never repeats itself."""
    return [1.0 - repeated_ngram_share(list(ids)) for ids in completion_ids]


def closed_reward(eos_token_id: int):
    """A reward function: 1.0 when the reply has text and ends with `eos_token_id` (`<|im_end|>`),
    that is, it stopped by itself instead of being cut at the length budget."""

    def closed_reward(completions: Sequence, completion_ids: Sequence, **kwargs) -> list[float]:
        return [float(len(ids) > 1 and int(ids[-1]) == eos_token_id and bool(completion_text(c).strip()))
                for c, ids in zip(completions, completion_ids, strict=True)]

    return closed_reward


def rule_rewards(tokenizer) -> list:
    """The rules GRPO can reward on any prompt: a closed reply (`closed_reward`), in the language
    of the question (`language_reward`, from a `lang` column), that does not repeat itself
    (`repetition_reward`). None checks that the reply is right: that needs an answer to compare
    with, or a reward model."""
    return [closed_reward(tokenizer.eos_token_id), language_reward, repetition_reward]


# ---------------------------------------------------------------------------------------------
# A reward model
# ---------------------------------------------------------------------------------------------
class RewardModelMissing(MissingArtifact):
    """The reward model's directory is absent."""


def _conversation(prompt, completion) -> list[dict]:
    """prompt + completion as one chat; plain strings become a user and an assistant message."""
    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    if prompt is None:
        return list(completion)
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return list(prompt) + list(completion)


class RewardModelScorer:
    """Scores conversations with a reward model; the scores are clipped to `score_range`.

    Two kinds of model:
    - one with remote code that exposes `get_scores(tokenizer, chats)`, as
      internlm2-1_8b-reward does (its model card's way to call it);
    - any `AutoModelForSequenceClassification` with one label: the conversation is rendered
      with the tokenizer's chat template and the head's score on the last token is taken.

    An instance is a trl reward function: `scorer(completions, prompts=...)`.
    """

    def __init__(self, model, tokenizer, score_range: tuple[float, float] = SCORE_RANGE, batch_size: int = 8):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.score_range = score_range
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path = REWARD_MODEL_DIR, dtype: torch.dtype | None = None,
                        device: str | None = None, **kwargs) -> RewardModelScorer:
        """Load a reward model from a local directory (never from the network)."""
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            hint = f"download it with `{DOWNLOAD_COMMAND}`" if path == REWARD_MODEL_DIR else "check the path"
            raise RewardModelMissing(f"no reward model at {path}: {hint}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or (torch.float16 if device == "cuda" else torch.float32)
        # internlm2's reward head lives in the Python files shipped with it (`auto_map`), loaded
        # through AutoModel; only then is that code trusted and run.
        auto_map = json.loads((path / "config.json").read_text(encoding="utf-8")).get("auto_map") or {}
        remote = "AutoModel" in auto_map
        auto = AutoModel if remote else AutoModelForSequenceClassification
        model = auto.from_pretrained(path, dtype=dtype, trust_remote_code=remote, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote, local_files_only=True)
        return cls(model.to(device), tokenizer, **kwargs)

    @torch.no_grad()
    def _raw_scores(self, chats: list[list[dict]]) -> list[float]:
        if hasattr(self.model, "get_scores"):
            return [float(s) for s in self.model.get_scores(self.tokenizer, chats)]
        texts = [self.tokenizer.apply_chat_template(c, tokenize=False) for c in chats]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        device = next(self.model.parameters()).device
        return self.model(**enc.to(device)).logits[:, 0].float().tolist()

    def score(self, chats: Sequence[list[dict]]) -> list[float]:
        """One clipped score per conversation (a list of {"role", "content"} messages)."""
        low, high = self.score_range
        scores: list[float] = []
        for start in range(0, len(chats), self.batch_size):
            scores += self._raw_scores([list(c) for c in chats[start : start + self.batch_size]])
        return [min(max(s, low), high) for s in scores]

    def __call__(self, completions: Sequence, prompts: Sequence | None = None, **kwargs) -> list[float]:
        prompts = prompts if prompts is not None else [None] * len(completions)
        return self.score([_conversation(p, c) for p, c in zip(prompts, completions, strict=True)])
